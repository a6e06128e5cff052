"""The JAX backend on a GPU: :mod:`lenskern.backends.jax`'s kernels, written
once and registered again for the GPU (placement, float64, waiting and the
return to the host are :func:`lenskern.backends.jax.device.on_device`)."""

from __future__ import annotations

import dataclasses

from lenskern.backends import jax

BACKEND = dataclasses.replace(jax.BACKEND, device="gpu", kernels=jax.__name__)
