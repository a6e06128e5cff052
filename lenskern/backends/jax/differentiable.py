"""The log evidence as a pure JAX function (:func:`log_evidence_from_offsets`),
for samplers and ``jax.grad``: the registered ``jax.offsets`` computation,
without the registry's wrapper (no placement, no float64 switch, nothing
blocked or converted).
"""

from __future__ import annotations

import jax.numpy as jnp

from lenskern.backends.jax.kernels import _dirty_image_gemv, _log_evidence_offsets


def log_evidence_from_offsets(
    w_offsets,
    native_index,
    grid,
    uv,
    noise,
    visibilities,
    pix_indexes,
    pix_weights,
    n_sources,
    neighbors,
    coefficient,
):
    """The log evidence as a pure JAX function: jit-able and differentiable.

    See reference.log_evidence for the math. The same computation as the
    registered ``jax.offsets`` (it calls the same jitted function), but the
    dirty image is computed here from the raw ``visibilities`` and the
    regularization degrees from ``neighbors``, so ``jax.grad`` reaches the
    visibilities (complex, or built from real and imaginary parts), the
    coefficient and the mapping weights. It sets no precision: call it under
    ``with jax.enable_x64(True):`` for float64. ``n_sources`` must be a
    Python int (static under ``jax.jit``); arguments and result are JAX
    values, nothing is blocked or converted.

    Cost: O(M K) for the dirty image, O(M^2 B) for the curvature from the
    table, O(S^3) for the two Cholesky factorisations; memory
    O(BLOCK_ELEMENTS + M S + S^2).
    """
    neighbors = jnp.asarray(neighbors)
    neighbors_sizes = jnp.sum(neighbors >= 0, axis=1)
    dirty_image = _dirty_image_gemv(grid, uv, noise, visibilities)
    return _log_evidence_offsets(
        w_offsets,
        native_index,
        dirty_image,
        visibilities,
        noise,
        pix_indexes,
        pix_weights,
        n_sources,
        neighbors,
        neighbors_sizes,
        coefficient,
    )
