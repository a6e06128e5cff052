"""The JAX backend: every kernel as a ``jax.jit`` function, run in float64.

Its modules: :mod:`~lenskern.backends.jax.kernels`, the likelihood's
kernels; :mod:`~lenskern.backends.jax.examples`, the seeds' small examples;
:mod:`~lenskern.backends.jax.sharding`, kernels laid over every device;
:mod:`~lenskern.backends.jax.device`, the one wrapper that runs each kernel
on its device in float64 and returns it to the host (its docstring has the
rules); :mod:`~lenskern.backends.jax.differentiable`,
:func:`log_evidence_from_offsets`, the public, pure and differentiable form
of the log evidence (for samplers and ``jax.grad``). Importing the package
registers every implementation (the registry files a submodule's
definitions under this package).
"""

from __future__ import annotations

import jax

from lenskern.backends.jax import examples, kernels, sharding  # noqa: F401  their @implements register them
from lenskern.backends.jax.device import device_memory, device_parts, lacks, on_device, unavailable
from lenskern.backends.jax.differentiable import log_evidence_from_offsets
from lenskern.registry import Backend

__all__ = ["BACKEND", "log_evidence_from_offsets"]

#: Written once, registered for two devices: here, and as ``jax_gpu``.
BACKEND = Backend(threads=("XLA_FLAGS",), unavailable=unavailable, on_device=on_device,
                  synchronize=jax.block_until_ready, device_parts=device_parts,
                  device_memory=device_memory, lacks=lacks,
                  gaps={"data_parts": "the stream sums on the CPU's NUFFT libraries (ducc0, FINUFFT); "
                        "jax-finufft serves the in-memory table and image"})  # fmt: skip
