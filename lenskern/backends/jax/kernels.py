"""The JAX backend's likelihood kernels: each a ``jax.jit`` function,
registered once and run by :func:`~lenskern.backends.jax.device.on_device`
(float64, placement, waiting, the return to the host).

Every kernel's math is in :mod:`lenskern.backends.reference`; docstrings here
say only what is particular to the algorithm and what it costs.

Padding: ``-1`` slots of ``pix_indexes`` and ``neighbors`` are redirected to
index 0 with weight 0 by ``jnp.where`` (:func:`_safe_slots`); JAX would
otherwise wrap -1 around to the last source pixel.

Sizes that shape arrays (``n_sources``, ``shape_native``) are static jit
arguments: each new value compiles once. Loops over K and over blocks of
image rows use ``lax.scan`` / ``lax.map`` with blocks of at most
:data:`BLOCK_ELEMENTS` floats, so no temporary grows with M^2 K.

The jitted pieces (underscored) are shared with the package's sharded
kernels and differentiable form, which compose them.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np
from jax import lax
from jax.experimental import sparse as jsparse

from lenskern import conventions
from lenskern.conventions import (
    ARCSEC_TO_RADIANS,
    RIDGE,
    TWO_PI,
    nufft_operations,
    nufft_threads,
    nufft_type3_bytes,
)
from lenskern.registry import Cost, implements, table_size


def _block_size(total: int, per_item: int) -> int:
    """Items per block so that a block costs at most BLOCK_ELEMENTS floats."""
    return max(1, min(total, conventions.BLOCK_ELEMENTS // max(per_item, 1)))


def _pad_blocks(array, block: int, value=0):
    """Pad axis 0 of ``array`` to a multiple of ``block``; reshape to (n_blocks, block, ...)."""
    total = array.shape[0]
    n_blocks = -(-total // block)
    pad = [(0, n_blocks * block - total)] + [(0, 0)] * (array.ndim - 1)
    return jnp.pad(array, pad, constant_values=value).reshape((n_blocks, block) + array.shape[1:])


# ----------------------------------------------------------------- pieces


def _phases(grid, uv):
    """phi (M, K) = 2 pi (x u + y v)."""
    return TWO_PI * (grid[:, 1, None] * uv[None, :, 0] + grid[:, 0, None] * uv[None, :, 1])


def _safe_slots(indexes, weights):
    """Slots with -1 redirected to index 0 and given weight 0: they add nothing."""
    valid = indexes >= 0
    return jnp.where(valid, indexes, 0), jnp.where(valid, weights, 0.0)


def _transpose_times(pix_indexes, pix_weights, x, n_sources: int):
    """T^T x (S, n) for the sparse mapping T and a dense x (M, n).

    One segment-sum per slot b, scanned so the temporary stays M n floats
    whatever B is (B = 256 in the seeds' GPU round).
    """
    index, weight = _safe_slots(pix_indexes, pix_weights)

    def add_slot(total, slot):
        index_b, weight_b = slot
        return total + jax.ops.segment_sum(weight_b[:, None] * x, index_b, num_segments=n_sources), None

    initial = jnp.zeros((n_sources, x.shape[1]), dtype=x.dtype)
    total, _ = lax.scan(add_slot, initial, (index.T, weight.T))
    return total


@jax.jit
def _w_tilde_scan(grid, uv, noise):
    inv_var = 1.0 / (noise * noise)

    def add_visibility(w, visibility):
        u, v, weight = visibility
        phase = TWO_PI * (grid[:, 1] * u + grid[:, 0] * v)
        return w + jnp.cos(phase[:, None] - phase[None, :]) * weight, None

    m_count = grid.shape[0]
    w, _ = lax.scan(add_visibility, jnp.zeros((m_count, m_count)), (uv[:, 0], uv[:, 1], inv_var))
    return w


@jax.jit
def _w_tilde_gemm(grid, uv, noise):
    phase = _phases(grid, uv)
    c = jnp.cos(phase) / noise
    s = jnp.sin(phase) / noise
    return jnp.matmul(c, c.T, precision=lax.Precision.HIGHEST) + jnp.matmul(
        s, s.T, precision=lax.Precision.HIGHEST
    )


@partial(jax.jit, static_argnames=("shape_native",))
def _w_offsets_half(uv, noise, pixel_scale, shape_native):
    ny, nx = shape_native
    scale = TWO_PI * (pixel_scale * ARCSEC_TO_RADIANS)
    dr = jnp.arange(ny, dtype=uv.dtype)
    dc = jnp.arange(-(nx - 1), nx, dtype=uv.dtype)
    half_size = ny * (2 * nx - 1)
    block = _block_size(uv.shape[0], half_size)
    # Padded visibilities get weight 0: cos(0) * 0 adds nothing.
    us = _pad_blocks(uv[:, 0], block)
    vs = _pad_blocks(uv[:, 1], block)
    weights = _pad_blocks(1.0 / (noise * noise), block)

    def add_block(half, visibilities):
        u, v, weight = visibilities
        phase = scale * (dc[None, :, None] * u - dr[:, None, None] * v)
        return half + jnp.cos(phase) @ weight, None

    half, _ = lax.scan(add_block, jnp.zeros((ny, 2 * nx - 1), dtype=uv.dtype), (us, vs, weights))
    # Evenness: the rows dr < 0 are the rows dr > 0 with both axes reversed.
    return jnp.concatenate([half[1:][::-1, ::-1], half], axis=0)


def _offset_rows(w_offsets, rows, native_index):
    """W[rows, :] gathered from the table, for rows given as (n, 2) native indexes."""
    ny = (w_offsets.shape[0] + 1) // 2
    nx = (w_offsets.shape[1] + 1) // 2
    dr = rows[:, 0, None] - native_index[None, :, 0] + (ny - 1)
    dc = rows[:, 1, None] - native_index[None, :, 1] + (nx - 1)
    return w_offsets[dr, dc]


@jax.jit
def _w_tilde_gather(w_offsets, native_index):
    return _offset_rows(w_offsets, native_index, native_index)


@partial(jax.jit, static_argnames=("shape_native",))
def _w_tilde_offsets(uv, noise, pixel_scale, shape_native, native_index):
    return _w_tilde_gather(_w_offsets_half(uv, noise, pixel_scale, shape_native), native_index)


@jax.jit
def _dirty_image_gemv(grid, uv, noise, visibilities):
    phase = _phases(grid, uv)
    inv_var = 1.0 / (noise * noise)
    real = jnp.real(visibilities) * inv_var
    imag = jnp.imag(visibilities) * inv_var
    return jnp.cos(phase) @ real - jnp.sin(phase) @ imag


def _wrapped(angle):
    """Angles moved into [-pi, pi), as FINUFFT wants (integer modes are 2 pi periodic)."""
    return jnp.mod(angle + jnp.pi, TWO_PI) - jnp.pi


@partial(jax.jit, static_argnames=("shape_native", "eps", "nthreads"))
def _w_offsets_nufft(uv, noise, pixel_scale, shape_native, eps, nthreads):
    from jax_finufft import nufft1
    from jax_finufft.options import Opts

    ny, nx = shape_native
    d = pixel_scale * ARCSEC_TO_RADIANS
    rows = _wrapped(-TWO_PI * d * uv[:, 1])
    cols = _wrapped(TWO_PI * d * uv[:, 0])
    strengths = (1.0 / (noise * noise)).astype(jnp.complex128)
    table = nufft1((2 * ny - 1, 2 * nx - 1), strengths, rows, cols, iflag=1, eps=eps,
                   opts=Opts(nthreads=nthreads)).real  # fmt: skip
    return 0.5 * (table + table[::-1, ::-1])


@partial(jax.jit, static_argnames=("eps", "nthreads"))
def _dirty_image_nufft(grid, uv, noise, visibilities, eps, nthreads):
    from jax_finufft import nufft3
    from jax_finufft.options import Opts

    strengths = jnp.conj(visibilities) / (noise * noise)
    image = nufft3(strengths, TWO_PI * uv[:, 0], TWO_PI * uv[:, 1], grid[:, 1], grid[:, 0],
                   iflag=-1, eps=eps, opts=Opts(nthreads=nthreads))  # fmt: skip
    return image.real


@partial(jax.jit, static_argnames=("n_sources",))
def _mapping_scatter(pix_indexes, pix_weights, n_sources):
    index, weight = _safe_slots(pix_indexes, pix_weights)
    m_count = pix_indexes.shape[0]
    rows = jnp.arange(m_count)[:, None]
    return jnp.zeros((m_count, n_sources), dtype=weight.dtype).at[rows, index].add(weight)


@partial(jax.jit, static_argnames=("n_sources",))
def _data_vector_sparse(dirty_image, pix_indexes, pix_weights, n_sources):
    index, weight = _safe_slots(pix_indexes, pix_weights)
    return jax.ops.segment_sum((weight * dirty_image[:, None]).ravel(), index.ravel(), num_segments=n_sources)


@jax.jit
def _curvature_dense(w_tilde, mapping_matrix):
    return mapping_matrix.T @ (w_tilde @ mapping_matrix)


@partial(jax.jit, static_argnames=("n_sources",))
def _curvature_sparse(w_tilde, pix_indexes, pix_weights, n_sources):
    # (W T)^T = T^T W^T: the scatter of W's columns, as a segment-sum of W^T's rows.
    wt_transposed = _transpose_times(pix_indexes, pix_weights, w_tilde.T, n_sources)
    return _transpose_times(pix_indexes, pix_weights, wt_transposed.T, n_sources)


@partial(jax.jit, static_argnames=("n_sources",))
def _curvature_offsets(w_offsets, native_index, pix_indexes, pix_weights, n_sources):
    m_count = native_index.shape[0]
    block = _block_size(m_count, m_count)
    # Padded rows repeat pixel 0 (a valid gather); their results are cut off below.
    row_blocks = _pad_blocks(native_index, block, value=0)

    def wt_rows(rows):
        w_rows = _offset_rows(w_offsets, rows, native_index)  # (block, M)
        return _transpose_times(pix_indexes, pix_weights, w_rows.T, n_sources)  # (S, block)

    wt_transposed = lax.map(wt_rows, row_blocks)  # (n_blocks, S, block)
    wt = jnp.moveaxis(wt_transposed, 1, 2).reshape(-1, n_sources)[:m_count]  # W T, (M, S)
    return _transpose_times(pix_indexes, pix_weights, wt, n_sources)


@partial(jax.jit, static_argnames=("n_sources",))
def _curvature_bcoo(w_tilde, pix_indexes, pix_weights, n_sources):
    index, weight = _safe_slots(pix_indexes, pix_weights)
    m_count, b_count = pix_indexes.shape
    rows = jnp.broadcast_to(jnp.arange(m_count)[:, None], (m_count, b_count))
    coordinates = jnp.stack([rows.ravel(), index.ravel()], axis=1)
    # Duplicate (row, source) pairs and zero-weight padding are summed, as in T.
    t = jsparse.BCOO((weight.ravel(), coordinates), shape=(m_count, n_sources))
    wt_transposed = t.T @ w_tilde.T  # (W T)^T, (S, M)
    return t.T @ wt_transposed.T


@jax.jit
def _regularization_scatter(coefficient, neighbors, neighbors_sizes):
    s_count = neighbors.shape[0]
    c2 = coefficient * coefficient
    valid = neighbors >= 0
    h = jnp.diag(RIDGE + c2 * neighbors_sizes)
    # Neighbours of a row are distinct and never the row itself: add == set.
    return h.at[jnp.arange(s_count)[:, None], jnp.where(valid, neighbors, 0)].add(jnp.where(valid, -c2, 0.0))


def _factored(result, *matrices: str):
    """``result``, or numpy.linalg.LinAlgError where a Cholesky factorisation
    failed: JAX's returns NaN for a matrix that is not positive definite
    (its documented behaviour), where NumPy and Numba raise. Inputs are
    finite and bounded (lenskern.validate), so NaN here means a failed
    factorisation."""
    if bool(jnp.isnan(result).any()):
        raise np.linalg.LinAlgError(
            f"{' or '.join(matrices)} is not positive definite (JAX's Cholesky gave NaN)"
        )
    return result


@jax.jit
def _reconstruction_cholesky(curvature_matrix, regularization_matrix, data_vector):
    factor = jax.scipy.linalg.cho_factor(curvature_matrix + regularization_matrix, lower=True)
    return jax.scipy.linalg.cho_solve(factor, data_vector)


@jax.jit
def _noise_normalization(noise):
    return jnp.sum(2.0 * jnp.log(TWO_PI * noise * noise))


@partial(jax.jit, static_argnames=("n_sources",))
def _log_evidence_offsets(
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
):
    data = _data_vector_sparse(dirty_image, pix_indexes, pix_weights, n_sources)
    curvature = _curvature_offsets(w_offsets, native_index, pix_indexes, pix_weights, n_sources)
    regularization = _regularization_scatter(coefficient, neighbors, neighbors_sizes)
    chol_h = jnp.linalg.cholesky(regularization)
    chol_fh = jnp.linalg.cholesky(curvature + regularization)
    source = jax.scipy.linalg.cho_solve((chol_fh, True), data)
    inv_var = 1.0 / (noise * noise)
    chi2_data = jnp.sum((jnp.real(visibilities) ** 2 + jnp.imag(visibilities) ** 2) * inv_var)
    log_det_h = jnp.sum(jnp.log(jnp.diag(chol_h)))
    log_det_fh = jnp.sum(jnp.log(jnp.diag(chol_fh)))
    return -0.5 * (chi2_data - source @ data + _noise_normalization(noise)) + log_det_h - log_det_fh


@partial(jax.jit, static_argnames=("n_sources", "shape_native"))
def _log_evidence_raw(
    grid,
    uv,
    noise,
    visibilities,
    pixel_scale,
    shape_native,
    native_index,
    pix_indexes,
    pix_weights,
    n_sources,
    neighbors,
    neighbors_sizes,
    coefficient,
):
    return _log_evidence_offsets(
        _w_offsets_half(uv, noise, pixel_scale, shape_native),
        native_index,
        _dirty_image_gemv(grid, uv, noise, visibilities),
        visibilities,
        noise,
        pix_indexes,
        pix_weights,
        n_sources,
        neighbors,
        neighbors_sizes,
        coefficient,
    )


# -------------------------------------------------------------- registered


@implements("w_tilde", "scan", Cost("trig", lambda M, K, **_: M * M * K))
def w_tilde_scan(grid, uv, noise):
    """W by lax.scan over visibilities, accumulating the M x M matrix.

    See reference.w_tilde for the math. The seeds' JAX form: one step per
    visibility adds cos(phi_i - phi_j) / sigma^2 to the carried W, the sum
    in the reference's order.

    Cost: M^2 K cosines; memory 2 M^2 floats (the carry and one step's update).
    """
    return _w_tilde_scan(grid, uv, noise)


@implements("w_tilde", "gemm", Cost("flop", lambda M, K, **_: 4 * M * M * K))
def w_tilde_gemm(grid, uv, noise):
    """W as C C^T + S S^T, C = cos(phi) / sigma and S = sin(phi) / sigma.

    See reference.w_tilde for the math; cos(a - b) = cos a cos b + sin a sin b
    turns the M^2 K cosines into 2 M K and two rank-K matrix products.

    Cost: 2 M K sin/cos + 4 M^2 K flops; memory M^2 + 4 M K floats.
    """
    return _w_tilde_gemm(grid, uv, noise)


@implements("w_tilde", "offsets", Cost("trig", lambda Ny, Nx, K, **_: Ny * (2 * Nx - 1) * K))
def w_tilde_offsets(uv, noise, pixel_scale, shape_native, native_index):
    """W gathered from the half-computed offset table, in one jitted function.

    See reference.w_tilde and reference.w_offsets for the math: the table as
    in ``jax.half``, then the gather of ``jax.gather``.

    Cost: Ny (2Nx-1) K cosines + M^2 reads; memory M^2 + BLOCK_ELEMENTS floats.
    """
    w = _w_tilde_offsets(
        uv,
        noise,
        pixel_scale,
        shape_native=tuple(shape_native),
        native_index=native_index,
    )
    return w


@implements("w_offsets", "half", Cost("trig", lambda Ny, Nx, K, **_: Ny * (2 * Nx - 1) * K))
def w_offsets_half(uv, noise, pixel_scale, shape_native):
    """The offset table from its half dr >= 0, mirrored by evenness.

    See reference.w_offsets for the math. The seeds' "compact" table
    (dr in [0, Ny), every dc), summed by lax.scan over blocks of
    visibilities (each block's cosines times 1/sigma^2 as one product), then
    w[-dr, -dc] = w[dr, dc] fills the rows dr < 0.

    Cost: Ny (2Nx-1) K cosines, half of the full table's; memory
    4 Ny Nx + BLOCK_ELEMENTS floats.
    """
    table = _w_offsets_half(uv, noise, pixel_scale, shape_native=tuple(shape_native))
    return table


@implements("w_tilde_from_offsets", "gather", Cost("flop", lambda M, **_: M * M))
def w_tilde_from_offsets_gather(w_offsets, native_index):
    """W expanded from the offset table by one vectorised gather.

    See reference.w_tilde_from_offsets for the math.

    Cost: M^2 reads and writes, no arithmetic; memory M^2 floats plus two
    (M, M) int64 index arrays that XLA usually fuses away.
    """
    return _w_tilde_gather(w_offsets, native_index)


@implements("dirty_image", "gemv", Cost("trig", lambda M, K, **_: 2 * M * K))
def dirty_image_gemv(grid, uv, noise, visibilities):
    """The dirty image as cos(phi) @ (Re V / sigma^2) - sin(phi) @ (Im V / sigma^2).

    See reference.dirty_image for the math; the phase matrix is formed once
    and the sum over K is two matrix-vector products.

    Cost: 2 M K sin/cos + 4 M K flops; memory 3 M K floats.
    """
    image = _dirty_image_gemv(grid, uv, noise, visibilities)
    return image


@implements(
    "w_offsets", "nufft", Cost("flop", lambda Ny, Nx, K, **_: nufft_operations(K, table_size(Ny, Nx)))
)
def w_offsets_nufft(uv, noise, pixel_scale, shape_native):
    """The offset table as one type-1 NUFFT, by jax-finufft (FINUFFT's JAX
    bindings: differentiable in the weights, and on GPU with cuFINUFFT).

    See reference.w_offsets for the math and numpy.w_offsets_nufft for the
    transform; accuracy and threads as there (lenskern.conventions).

    Cost: O(K w^2) spreading + an FFT of about 4 (2Ny-1)(2Nx-1) points;
    memory: the fine grid, ~8x the table, in complex128.
    """
    table = _w_offsets_nufft(
        uv, noise, pixel_scale, shape_native=tuple(shape_native),
        eps=conventions.NUFFT_EPS, nthreads=nufft_threads(len(uv)),
    )  # fmt: skip
    return table


@implements(
    "dirty_image",
    "nufft",
    Cost("flop", lambda Ny, Nx, K, M, **_: nufft_operations(K + M, table_size(Ny, Nx))),
    memory=nufft_type3_bytes,
)
def dirty_image_nufft(grid, uv, noise, visibilities):
    """The dirty image as one type-3 NUFFT, by jax-finufft.

    See reference.dirty_image for the math and numpy.dirty_image_nufft for
    the transform; accuracy and threads as there (lenskern.conventions).

    Cost: O((K + M) w^2) spreading and interpolation + one FFT set by the
    space-bandwidth product; memory M + K + the fine grid.
    """
    image = _dirty_image_nufft(
        grid, uv, noise, visibilities,
        eps=conventions.NUFFT_EPS, nthreads=nufft_threads(len(uv) + len(grid)),
    )  # fmt: skip
    return image


@implements("mapping_matrix", "scatter", Cost("flop", lambda M, B, S, **_: M * B + M * S))
def mapping_matrix_scatter(pix_indexes, pix_weights, n_sources):
    """The dense mapping matrix by one scatter-add of the slots (.at[].add).

    See reference.mapping_matrix for the math. -1 slots add weight 0 to
    column 0; repeated indexes in a row add up.

    Cost: M B scattered adds; memory M S floats.
    """
    t = _mapping_scatter(pix_indexes, pix_weights, n_sources=n_sources)
    return t


@implements("data_vector", "sparse", Cost("flop", lambda M, B, **_: 2 * M * B))
def data_vector_sparse(dirty_image, pix_indexes, pix_weights, n_sources):
    """D = T^T d as a segment-sum of w_ib d_i over the slots, without T.

    See reference.data_vector for the math.

    Cost: M B multiply-adds; memory M B + S floats.
    """
    data = _data_vector_sparse(dirty_image, pix_indexes, pix_weights, n_sources=n_sources)
    return data


@implements("curvature_matrix", "dense", Cost("flop", lambda M, S, **_: 2 * M * M * S + 2 * M * S * S))
def curvature_matrix_dense(w_tilde, mapping_matrix):
    """F = T^T (W T) with dense matrix products.

    See reference.curvature_matrix for the math.

    Cost: 2 M^2 S + 2 M S^2 flops; memory M S + S^2 floats besides the inputs.
    """
    return _curvature_dense(w_tilde, mapping_matrix)


@implements("curvature_matrix", "sparse", Cost("flop", lambda M, B, S, **_: 2 * M * M * B + 2 * M * B * S))
def curvature_matrix_sparse(w_tilde, pix_indexes, pix_weights, n_sources):
    """F = T^T (W T) from the slots: segment-sums, never the dense T.

    See reference.curvature_matrix for the math. W T is the scatter of W's
    columns weighted by the slots (a segment-sum of W^T's rows, one lax.scan
    step per slot), then T^T (W T) is a segment-sum of its rows.

    Cost: 2 M^2 B + 2 M B S flops; memory 2 M S + M^2 floats (one step's
    weighted copy of W) besides the inputs.
    """
    f = _curvature_sparse(w_tilde, pix_indexes, pix_weights, n_sources=n_sources)
    return f


@implements("curvature_matrix", "offsets", Cost("flop", lambda M, B, S, **_: 3 * M * M * B + 2 * M * B * S))
def curvature_matrix_offsets(w_offsets, native_index, pix_indexes, pix_weights, n_sources):
    """F = T^T W T from the offset table, never forming W.

    See reference.curvature_matrix for the math. lax.map over blocks of
    image rows: each gathers its rows of W from the table and multiplies
    them by the sparse mapping (segment-sums over the slots), giving W T a
    block at a time; T^T (W T) is then a segment-sum over the slots.

    Cost: M^2 gathers + 2 M^2 B + 2 M B S flops; memory
    O(BLOCK_ELEMENTS + M S) floats: the science size's 40 GiB W is never held.
    """
    f = _curvature_offsets(
        w_offsets,
        native_index,
        pix_indexes,
        pix_weights,
        n_sources=n_sources,
    )
    return f


@implements("curvature_matrix", "bcoo", Cost("flop", lambda M, B, S, **_: 2 * M * M * B + 2 * M * B * S))
def curvature_matrix_bcoo(w_tilde, pix_indexes, pix_weights, n_sources):
    """F = T^T (W T) with T a jax.experimental.sparse BCOO matrix.

    See reference.curvature_matrix for the math. T holds the M B slots as
    (row, source) coordinates (-1 slots as weight 0 at source 0, duplicates
    summed); both products are BCOO-times-dense, (W T)^T = T^T W^T first.

    Cost: 2 M^2 B + 2 M B S flops; memory M S + 3 M B besides the inputs.
    """
    f = _curvature_bcoo(w_tilde, pix_indexes, pix_weights, n_sources=n_sources)
    return f


@implements("regularization_matrix", "scatter", Cost("flop", lambda S, P, **_: S * P + S * S))
def regularization_matrix_scatter(coefficient, neighbors, neighbors_sizes):
    """H as a diagonal plus one scatter-add of -c^2 at the neighbour slots.

    See reference.regularization_matrix for the math. -1 slots add 0 to
    column 0.

    Cost: S P scattered adds; memory S^2 floats.
    """
    h = _regularization_scatter(coefficient, neighbors, neighbors_sizes)
    return h


@implements("reconstruction", "cholesky", Cost("flop", lambda S, **_: S**3 / 3 + 2 * S * S))
def reconstruction_cholesky(curvature_matrix, regularization_matrix, data_vector):
    """s = (F + H)^-1 D by jax.scipy.linalg cho_factor / cho_solve.

    See reference.reconstruction for the math.

    Cost: S^3 / 3 + 2 S^2 flops; memory S^2 floats.
    """
    source = _reconstruction_cholesky(curvature_matrix, regularization_matrix, data_vector)
    return _factored(source, "curvature_matrix + regularization_matrix")


@implements("noise_normalization", "vector", Cost("trig", lambda K, **_: K))
def noise_normalization_vector(noise):
    """sum 2 log(2 pi sigma^2) as one vectorised reduction.

    See reference.noise_normalization for the math.

    Cost: K logarithms; memory K floats.
    """
    return _noise_normalization(noise)


@implements("log_evidence", "raw", Cost("trig", lambda Ny, Nx, K, M, **_: Ny * (2 * Nx - 1) * K + 2 * M * K))
def log_evidence_raw(
    grid,
    uv,
    noise,
    visibilities,
    pixel_scale,
    shape_native,
    native_index,
    pix_indexes,
    pix_weights,
    n_sources,
    neighbors,
    neighbors_sizes,
    coefficient,
):
    """The log evidence from raw inputs, the whole pipeline in one jitted function.

    See reference.log_evidence for the math. Composes the jitted pieces:
    the offset table (``jax.half``), the dirty image (``jax.gemv``), then
    ``jax.offsets``'s curvature from the table, regularization and Cholesky
    terms.

    Cost: Ny (2Nx-1) K cosines + 2 M K sin/cos, then as ``jax.offsets``:
    O(M^2 B + S^3); memory O(BLOCK_ELEMENTS + M K + M S + S^2) floats.
    """
    value = _log_evidence_raw(
        grid,
        uv,
        noise,
        visibilities,
        pixel_scale,
        shape_native=tuple(shape_native),
        native_index=native_index,
        pix_indexes=pix_indexes,
        pix_weights=pix_weights,
        n_sources=n_sources,
        neighbors=neighbors,
        neighbors_sizes=neighbors_sizes,
        coefficient=coefficient,
    )
    return _factored(value, "the regularization matrix H", "F + H")


@implements(
    "log_evidence", "offsets", Cost("flop", lambda M, B, S, **_: 3 * M * M * B + 2 * M * B * S + 2 * S**3 / 3)
)
def log_evidence_offsets(
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
):
    """The log evidence from the offset table and dirty image, W never formed.

    See reference.log_evidence for the math. What a sampler re-evaluates:
    the sparse data vector, the curvature from the table (as
    ``jax.offsets`` of curvature_matrix), H, and the two Cholesky factors.
    The same jitted function serves
    :func:`~lenskern.backends.jax.differentiable.log_evidence_from_offsets`,
    the differentiable form.

    Cost: O(M^2 B + M B S) for the curvature, O(S^3) for the factorisations;
    memory O(BLOCK_ELEMENTS + M S + S^2) floats.
    """
    value = _log_evidence_offsets(
        w_offsets,
        native_index,
        dirty_image,
        visibilities,
        noise,
        pix_indexes,
        pix_weights,
        n_sources=n_sources,
        neighbors=neighbors,
        neighbors_sizes=neighbors_sizes,
        coefficient=coefficient,
    )
    return _factored(value, "the regularization matrix H", "F + H")
