"""The NumPy backend: vectorised kernels, with SciPy for LAPACK, sparse and FFT.

Every kernel's math is in :mod:`lenskern.backends.reference`; docstrings here
say only what is particular to the algorithm and what it costs. Loops over K
run in blocks so no temporary exceeds :data:`BLOCK_ELEMENTS` floats: the
seeds' fully broadcast (M, M, K) array is ~700 PiB at the science size.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.linalg
import scipy.sparse

from lenskern import chunk, conventions
from lenskern.conventions import (
    ARCSEC_TO_RADIANS,
    RIDGE,
    TWO_PI,
    fft_curvature_operations,
    nufft_operations,
    nufft_threads,
    nufft_type3_bytes,
    wrap_phase,
)
from lenskern.evidence import chi2_data, evidence_from_parts
from lenskern.registry import Backend, Cost, implements, table_size

#: NumPy's and SciPy's BLAS and LAPACK, and FINUFFT, size their pools from these.
BACKEND = Backend(
    threads=("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS")
)  # fmt: skip


def _blocks(total: int, per_item: int):
    """Slices of range(total) whose items cost ``per_item`` elements each."""
    step = max(1, conventions.BLOCK_ELEMENTS // max(per_item, 1))
    for start in range(0, total, step):
        yield slice(start, min(start + step, total))


def _phases(grid, uv):
    """phi (M, K) = 2 pi (x u + y v)."""
    return TWO_PI * (np.outer(grid[:, 1], uv[:, 0]) + np.outer(grid[:, 0], uv[:, 1]))


@implements("w_tilde", "blocked", Cost("trig", lambda M, K, **_: M * M * K))
def w_tilde_blocked(grid, uv, noise):
    """W by direct summation, vectorised over blocks of visibilities.

    See reference.w_tilde for the math. The seeds' NumPy form, cos of the
    (M, M, K) phase differences, computed a block of K at a time.

    Cost: M^2 K cosines; memory M^2 + BLOCK_ELEMENTS floats.
    """
    m_count = len(grid)
    dy = grid[:, None, 0] - grid[None, :, 0]
    dx = grid[:, None, 1] - grid[None, :, 1]
    inv_var = 1.0 / noise**2
    w = np.zeros((m_count, m_count))
    for block in _blocks(len(uv), m_count * m_count):
        phase = TWO_PI * (dx[..., None] * uv[block, 0] + dy[..., None] * uv[block, 1])
        w += np.cos(phase) @ inv_var[block]
    return w


@implements("w_tilde", "gemm", Cost("flop", lambda M, K, **_: 2 * M * M * K), oracle=True)
def w_tilde_gemm(grid, uv, noise):
    """W as C C^T + S S^T, C = cos(phi) / sigma and S = sin(phi) / sigma.

    See reference.w_tilde for the math; cos(a - b) = cos a cos b + sin a sin b
    turns the M^2 K cosines into 2 M K and two BLAS rank-K products.

    Cost: 2 M K sin/cos + 2 M^2 K flops (half with symmetric rank-k
    updates); memory M^2 + 2 M K_block floats.
    """
    m_count = len(grid)
    w = np.zeros((m_count, m_count))
    for block in _blocks(len(uv), 2 * m_count):
        phase = _phases(grid, uv[block])
        scale = 1.0 / noise[block]
        c, s = np.cos(phase) * scale, np.sin(phase) * scale
        w += c @ c.T + s @ s.T
    return w


def _half_offsets(uv, noise, pixel_scale, shape_native):
    """The offset table from its half (dr >= 0), mirrored by evenness."""
    ny, nx = shape_native
    d = pixel_scale * ARCSEC_TO_RADIANS
    dr, dc = np.meshgrid(np.arange(ny), np.arange(-(nx - 1), nx), indexing="ij")
    dr, dc = dr.ravel(), dc.ravel()
    inv_var = 1.0 / noise**2
    half = np.zeros(len(dr))
    for block in _blocks(len(uv), len(dr)):
        phase = (TWO_PI * d) * (np.outer(dc, uv[block, 0]) - np.outer(dr, uv[block, 1]))
        half += np.cos(phase) @ inv_var[block]
    table = np.empty((2 * ny - 1, 2 * nx - 1))
    table[ny - 1 :] = half.reshape(ny, 2 * nx - 1)
    table[: ny - 1] = table[: ny - 1 : -1, ::-1]  # w[-dr, -dc] = w[dr, dc]
    return table


@implements("w_offsets", "half", Cost("trig", lambda Ny, Nx, K, **_: Ny * (2 * Nx - 1) * K), oracle=True)
def w_offsets_half(uv, noise, pixel_scale, shape_native):
    """The offset table's half with dr >= 0, summed over K as a matrix-vector
    product of block cosines, mirrored by evenness.

    See reference.w_offsets for the math.

    Cost: Ny (2Nx-1) K cosines (about half the table); memory that half plus
    BLOCK_ELEMENTS floats.
    """
    return _half_offsets(uv, noise, pixel_scale, shape_native)


@implements(
    "w_offsets", "nufft", Cost("flop", lambda Ny, Nx, K, **_: nufft_operations(K, table_size(Ny, Nx)))
)
def w_offsets_nufft(uv, noise, pixel_scale, shape_native):
    """The offset table as one type-1 non-uniform FFT (FINUFFT).

    The table is Re sum_k (1/sigma_k^2) exp(i (dr a_k + dc b_k)) at the integer
    modes dr in [-(Ny-1), Ny-1], dc in [-(Nx-1), Nx-1], with a_k = -2 pi d v_k
    and b_k = 2 pi d u_k: a type-1 NUFFT of real strengths onto a
    (2Ny-1, 2Nx-1) grid of modes. The weights are real, so the transform is
    Hermitian and its real part is the even table the reference sums (made
    even to the last bit by averaging it with its mirror).
    FINUFFT here, because one library then serves NumPy, JAX (jax-finufft,
    differentiable) and GPUs (cuFINUFFT) with one convention; ducc0, which
    users also run, is its own backend (ducc0.nufft), and ``compute`` picks
    between the two by the order measured in recommend.RECOMMENDED.

    See reference.w_offsets for the math; accuracy: :data:`lenskern.conventions.NUFFT_EPS`.

    Cost: O(K w^2) spreading (w = conventions.nufft_width, 13 kernel points per dimension at 1e-12)
    + an FFT of about 4 (2Ny-1)(2Nx-1) points, instead of the direct
    Ny (2Nx-1) K cosines; memory: the fine grid, ~8x the table, in complex128.
    """
    import finufft  # a core dependency, imported on first use: it loads FFTW and OpenMP

    ny, nx = shape_native
    d = pixel_scale * ARCSEC_TO_RADIANS
    rows = wrap_phase(-TWO_PI * d * uv[:, 1])
    cols = wrap_phase(TWO_PI * d * uv[:, 0])
    strengths = (1.0 / noise**2).astype(np.complex128)
    table = finufft.nufft2d1(
        rows,
        cols,
        strengths,
        (2 * ny - 1, 2 * nx - 1),
        eps=conventions.NUFFT_EPS,
        isign=1,
        nthreads=nufft_threads(len(uv)),
    ).real
    # Even by construction, as the other algorithms' mirrored halves are: the
    # average also halves the odd part of the transform's error.
    return 0.5 * (table + table[::-1, ::-1])


def _gather(w_offsets, native_index):
    """W_ij = table[centre + lin_i - lin_j], with lin the pixels' linear
    positions in the table: one M^2 index array, not two."""
    ny, nx2 = (w_offsets.shape[0] + 1) // 2, w_offsets.shape[1]
    lin = native_index[:, 0] * nx2 + native_index[:, 1]
    centre = (ny - 1) * nx2 + (nx2 - 1) // 2
    return np.take(w_offsets.ravel(), (centre + lin)[:, None] - lin[None, :])


@implements("w_tilde", "offsets", Cost("trig", lambda Ny, Nx, K, M, **_: Ny * (2 * Nx - 1) * K))
def w_tilde_offsets(uv, noise, pixel_scale, shape_native, native_index):
    """W gathered from the offset table (half algorithm), which costs
    (2Ny-1)(2Nx-1)/2 K cosines instead of M^2 K.

    See reference.w_tilde and reference.w_offsets for the math.

    Cost: Ny (2Nx-1) K cosines + M^2 gathered reads; memory M^2 floats plus
    one M^2 int64 index array.
    """
    return _gather(_half_offsets(uv, noise, pixel_scale, shape_native), native_index)


@implements(
    "w_tilde",
    "nufft",
    Cost("flop", lambda Ny, Nx, K, M, **_: nufft_operations(K, table_size(Ny, Nx)) + M * M),
)
def w_tilde_nufft(uv, noise, pixel_scale, shape_native, native_index):
    """W gathered from the offset table made by one NUFFT ("nufft" w_offsets):
    the seeds' "compact expanded" with the table's K cosines sums replaced.

    See reference.w_tilde and reference.w_offsets for the math; accuracy:
    :data:`lenskern.conventions.NUFFT_EPS`.

    Cost: the NUFFT (O(K w^2) + an FFT of ~4 (2Ny-1)(2Nx-1) points) + M^2
    gathered reads; memory M^2 floats plus one M^2 int64 index array.
    """
    return _gather(w_offsets_nufft(uv, noise, pixel_scale, shape_native), native_index)


@implements("w_tilde_from_offsets", "gather", Cost("flop", lambda M, **_: M * M), oracle=True)
def w_tilde_from_offsets_gather(w_offsets, native_index):
    """W by fancy indexing of the offset table with broadcast offsets.

    See reference.w_tilde_from_offsets.

    Cost: M^2 reads and writes; memory M^2 floats plus one M^2 int64 index.
    """
    return _gather(w_offsets, native_index)


@implements("dirty_image", "gemv", Cost("trig", lambda M, K, **_: 2 * M * K), oracle=True)
def dirty_image_gemv(grid, uv, noise, visibilities):
    """The dirty image as cos(phi) @ (Re V / sigma^2) - sin(phi) @ (Im V / sigma^2),
    a block of visibilities at a time.

    See reference.dirty_image for the math.

    Cost: 2 M K sin/cos + 4 M K flops; memory M + 2 BLOCK_ELEMENTS floats.
    """
    inv_var = 1.0 / noise**2
    real, imag = visibilities.real * inv_var, visibilities.imag * inv_var
    image = np.zeros(len(grid))
    for block in _blocks(len(uv), len(grid)):
        phase = _phases(grid, uv[block])
        image += np.cos(phase) @ real[block] - np.sin(phase) @ imag[block]
    return image


@implements(
    "dirty_image",
    "nufft",
    Cost("flop", lambda Ny, Nx, K, M, **_: nufft_operations(K + M, table_size(Ny, Nx))),
    memory=nufft_type3_bytes,
)
def dirty_image_nufft(grid, uv, noise, visibilities):
    """The dirty image as one type-3 (non-uniform to non-uniform) NUFFT:
    d_i = Re sum_k (conj V_k / sigma_k^2) exp(-i (x_i 2 pi u_k + y_i 2 pi v_k)),
    sources at 2 pi (u_k, v_k), targets at the pixel centres. Type 3 needs no
    assumption about the grid (any mask, any origin).

    See reference.dirty_image for the math; accuracy: :data:`lenskern.conventions.NUFFT_EPS`.

    Cost: O((K + M) w^2) spreading and interpolation + an FFT whose size is
    set by the space-bandwidth product (max |x| max |u|, ~ the grid's pixel
    count for a Nyquist-sampled grid), instead of 2 M K sines and cosines;
    memory M + K + the fine grid.
    """
    import finufft

    strengths = np.conj(visibilities) / noise**2
    image = finufft.nufft2d3(
        TWO_PI * uv[:, 0], TWO_PI * uv[:, 1], strengths.astype(np.complex128),
        np.ascontiguousarray(grid[:, 1]), np.ascontiguousarray(grid[:, 0]),
        eps=conventions.NUFFT_EPS, isign=-1, nthreads=nufft_threads(len(uv) + len(grid)),
    )  # fmt: skip
    return np.ascontiguousarray(image.real)


@implements(
    "data_parts",
    "nufft",
    Cost("flop", lambda Ny, Nx, K, **_: 2 * nufft_operations(K, table_size(Ny, Nx))),
    oracle=True,
    memory=chunk.working_bytes,
)
def data_parts_nufft(
    uv, noise, visibilities, pixel_scale, shape_native, native_index, *, eps=None, nthreads=None, seconds=None
):
    """The data parts of the visibilities (reference.data_parts) from two
    type-1 transforms on one FINUFFT plan (lenskern.chunk: the image's
    half-pixel phase moved into its strengths), points and strengths from
    lenskern.chunk's one compiled pass, which the ducc0 implementation shares.

    Options (``eps``, ``nthreads``, ``seconds``) as ducc0.data_parts_nufft's.

    Cost: O(K w^2) spreading for each of the two transforms + an FFT of
    about 4 (2Ny-1)(2Nx-1) points each, and O(K) for the pass; memory: 48
    bytes per visibility (points, strengths) and the fine grid, ~8x the
    table per transform, in complex128.
    """
    import finufft

    eps = conventions.NUFFT_EPS if eps is None else eps
    nthreads = nufft_threads(len(uv)) if nthreads is None else nthreads
    shape = chunk.table_shape(shape_native)

    def transform(points, strengths):
        plan = finufft.Plan(1, shape, n_trans=2, eps=eps, isign=1, nthreads=nthreads)
        plan.setpts(points[0], points[1])
        return plan.execute(strengths)

    return chunk.data_parts(
        uv, noise, visibilities, pixel_scale, shape_native, native_index, transform, False, nthreads, seconds
    )


def _sparse_mapping(pix_indexes, pix_weights, n_sources) -> scipy.sparse.csr_array:
    """T as a CSR matrix (M, S), padding slots dropped."""
    m_count, b_count = pix_indexes.shape
    valid = pix_indexes >= 0
    rows = np.repeat(np.arange(m_count), b_count).reshape(m_count, b_count)[valid]
    return scipy.sparse.csr_array(
        (pix_weights[valid], (rows, pix_indexes[valid])), shape=(m_count, n_sources)
    )


@implements("mapping_matrix", "scatter", Cost("flop", lambda M, B, S, **_: M * B + M * S), oracle=True)
def mapping_matrix_scatter(pix_indexes, pix_weights, n_sources):
    """T by one unbuffered scatter-add of all valid slots (np.add.at).

    See reference.mapping_matrix.

    Cost: M B adds; memory M S floats.
    """
    m_count = len(pix_indexes)
    t = np.zeros((m_count, n_sources))
    rows, slots = np.nonzero(pix_indexes >= 0)
    np.add.at(t, (rows, pix_indexes[rows, slots]), pix_weights[rows, slots])
    return t


@implements("data_vector", "dense", Cost("flop", lambda M, S, **_: 2 * M * S), oracle=True)
def data_vector_dense(mapping_matrix, dirty_image):
    """D = T^T d as a dense matrix-vector product.

    See reference.data_vector.

    Cost: 2 M S flops.
    """
    return mapping_matrix.T @ dirty_image


@implements("data_vector", "sparse", Cost("flop", lambda M, B, **_: 2 * M * B))
def data_vector_sparse(dirty_image, pix_indexes, pix_weights, n_sources):
    """D = T^T d by a weighted bincount over the mapping slots; T is never built.

    See reference.data_vector.

    Cost: 2 M B flops; memory S floats.
    """
    valid = pix_indexes >= 0
    contributions = (pix_weights * dirty_image[:, None])[valid]
    return np.bincount(pix_indexes[valid], weights=contributions, minlength=n_sources).astype(np.float64)


@implements(
    "curvature_matrix", "dense", Cost("flop", lambda M, S, **_: 2 * M * M * S + 2 * M * S * S), oracle=True
)
def curvature_matrix_dense(w_tilde, mapping_matrix):
    """F = T^T (W T) with two dense BLAS products.

    See reference.curvature_matrix.

    Cost: 2 M^2 S + 2 M S^2 flops; memory M S + S^2 floats.
    """
    return mapping_matrix.T @ (w_tilde @ mapping_matrix)


@implements("curvature_matrix", "sparse", Cost("flop", lambda M, B, S, **_: 2 * M * M * B + 2 * M * B * S))
def curvature_matrix_sparse(w_tilde, pix_indexes, pix_weights, n_sources):
    """F = T^T (T^T W)^T with T in CSR: W in memory times the sparse mapping.

    See reference.curvature_matrix.

    Cost: 2 M^2 B + 2 M B S flops; memory M S + S^2 floats besides W.
    """
    t = _sparse_mapping(pix_indexes, pix_weights, n_sources)
    tw = t.T @ w_tilde  # (S, M); W is symmetric so this is (W T)^T
    return np.asarray(t.T @ tw.T).T.copy()


@implements("curvature_matrix", "fft", Cost("flop", fft_curvature_operations))
def curvature_matrix_fft(w_offsets, native_index, pix_indexes, pix_weights, n_sources):
    """F from the offset table by FFT convolution: W T never needs W.

    W is block Toeplitz (W_ij depends on r_i - r_j, c_i - c_j only), so each
    column of W T is the 2-d convolution of the offset table with that source
    pixel's column of T laid on the native grid. A (2Ny-1, 2Nx-1) circular
    convolution is exact for the outputs inside the grid. Source pixels go
    in blocks so the spectra stay within BLOCK_ELEMENTS.

    See reference.curvature_matrix for the math.

    Cost: O(S Ny Nx log(Ny Nx)) for the FFTs + 2 M B S for T^T (W T);
    memory M S floats plus a block of spectra.
    """
    ny = (w_offsets.shape[0] + 1) // 2
    nx = (w_offsets.shape[1] + 1) // 2
    shape = (2 * ny - 1, 2 * nx - 1)
    kernel_spectrum = scipy.fft.rfft2(w_offsets, shape)
    t = _sparse_mapping(pix_indexes, pix_weights, n_sources)
    t_columns = t.T.tocsr()  # (S, M): one row per source pixel
    rows, cols = native_index[:, 0], native_index[:, 1]
    wt = np.empty((len(native_index), n_sources))
    for block in _blocks(n_sources, shape[0] * shape[1]):
        planes = np.zeros((block.stop - block.start, ny, nx))
        planes[:, rows, cols] = t_columns[block].toarray()
        product = scipy.fft.rfft2(planes, shape) * kernel_spectrum
        convolved = scipy.fft.irfft2(product, shape)[:, ny - 1 :, nx - 1 :]
        wt[:, block] = convolved[:, rows, cols].T
    return np.asarray(t.T @ wt)


@implements("regularization_matrix", "scatter", Cost("flop", lambda S, P, **_: S * P + S * S), oracle=True)
def regularization_matrix_scatter(coefficient, neighbors, neighbors_sizes):
    """H by writing -c^2 at every (s, neighbour) pair and the diagonal at once.

    See reference.regularization_matrix.

    Cost: S P writes; memory S^2 floats.
    """
    s_count = len(neighbors)
    c2 = coefficient * coefficient
    h = np.zeros((s_count, s_count))
    rows, slots = np.nonzero(neighbors >= 0)
    h[rows, neighbors[rows, slots]] = -c2
    h[np.diag_indices(s_count)] = RIDGE + c2 * neighbors_sizes
    return h


@implements("reconstruction", "cholesky", Cost("flop", lambda S, **_: S**3 / 3 + 2 * S * S), oracle=True)
def reconstruction_cholesky(curvature_matrix, regularization_matrix, data_vector):
    """s = (F + H)^-1 D by LAPACK Cholesky (potrf) and two triangular solves.

    See reference.reconstruction.

    Cost: S^3 / 3 + 2 S^2 flops; memory S^2 floats.
    """
    factor = scipy.linalg.cho_factor(curvature_matrix + regularization_matrix, lower=True)
    return scipy.linalg.cho_solve(factor, data_vector)


@implements("noise_normalization", "vector", Cost("trig", lambda K, **_: K), oracle=True)
def noise_normalization_vector(noise):
    """sum 2 log(2 pi sigma^2), vectorised.

    See reference.noise_normalization.

    Cost: K logarithms.
    """
    return float(np.sum(2.0 * np.log(TWO_PI * noise**2)))


def _log_evidence(curvature, regularization, data, visibilities, noise):
    return evidence_from_parts(
        curvature, regularization, data, chi2_data(visibilities, noise), noise_normalization_vector(noise)
    )


@implements(
    "log_evidence",
    "raw",
    Cost(
        "flop",
        lambda Ny, Nx, K, M, S, B, **_: (
            nufft_operations(2 * K + M, table_size(Ny, Nx)) + fft_curvature_operations(S, M, B, Ny, Nx) + S**3
        ),
    ),
)
def log_evidence_raw(
    uv, noise, visibilities, grid, pixel_scale, shape_native, native_index, pix_indexes,
    pix_weights, n_sources, neighbors, neighbors_sizes, coefficient,
):  # fmt: skip
    """The whole evidence from raw inputs: offset table and dirty image by
    NUFFT (direct sums below NUFFT_MIN_TERMS), sparse data vector and FFT
    curvature, never forming W and never looping over K per pixel.

    See reference.log_evidence for the math; accuracy: :data:`lenskern.conventions.NUFFT_EPS`.

    Cost: O(K w^2 + Ny Nx log(Ny Nx)) for the NUFFTs, then
    O(S Ny Nx log(Ny Nx) + S^3); memory M S + S^2 floats.
    """
    # Direct sums below NUFFT_MIN_TERMS, as compute() chooses: faster there,
    # and exact where a nearly singular F + H would magnify a NUFFT's error.
    sizes = dict(M=len(grid), K=len(uv), Ny=shape_native[0], Nx=shape_native[1])
    table = (w_offsets_nufft if conventions.nufft_pays("w_offsets", sizes) else _half_offsets)(
        uv, noise, pixel_scale, shape_native
    )
    dirty = (dirty_image_nufft if conventions.nufft_pays("dirty_image", sizes) else dirty_image_gemv)(
        grid, uv, noise, visibilities
    )
    return log_evidence_fft(
        table, native_index, dirty, visibilities, noise, pix_indexes, pix_weights, n_sources,
        neighbors, neighbors_sizes, coefficient,
    )  # fmt: skip


@implements(
    "log_evidence",
    "fft",
    Cost("flop", lambda Ny, Nx, M, S, B, **_: fft_curvature_operations(S, M, B, Ny, Nx) + S**3),
    oracle=True,
)
def log_evidence_fft(
    w_offsets, native_index, dirty_image, visibilities, noise, pix_indexes, pix_weights,
    n_sources, neighbors, neighbors_sizes, coefficient,
):  # fmt: skip
    """The evidence from a precomputed offset table and dirty image: what a
    sampler re-evaluates for each new mapping and coefficient.

    See reference.log_evidence for the math.

    Cost: O(S Ny Nx log(Ny Nx)) (FFT curvature) + S^3 / 3 (Cholesky) + O(K)
    for chi2_data; memory M S + S^2 floats.
    """
    curvature = curvature_matrix_fft(w_offsets, native_index, pix_indexes, pix_weights, n_sources)
    regularization = regularization_matrix_scatter(coefficient, neighbors, neighbors_sizes)
    data = data_vector_sparse(dirty_image, pix_indexes, pix_weights, n_sources)
    return _log_evidence(curvature, regularization, data, visibilities, noise)


@implements("quadratic_formula", "vector", Cost("flop", lambda n, **_: 7 * n), oracle=True)
def quadratic_formula_vector(a, b, c):
    """The seeds' NumPy form; each operator makes a temporary of n floats.

    See reference.quadratic_formula.

    Cost: ~7 passes over n-element arrays (memory bound).
    """
    return (-b + np.sqrt(b**2 - 4 * a * c)) / (2 * a)


@implements("fma", "vector", Cost("flop", lambda n, W, **_: 2 * W * n), oracle=True)
def fma_vector(weights, arrays):
    """The toast form: ``out += weight * array`` per array, one temporary each.

    See reference.fma.

    Cost: W n multiply-adds in 2 W passes over n-element arrays.
    """
    out = np.zeros(arrays.shape[1])
    for weight, array in zip(weights, arrays):
        out += weight * array
    return out


@implements("fused_expression", "vector", Cost("trig", lambda n, **_: 3 * n), oracle=True)
def fused_expression_vector(x):
    """The seeds' NumPy form with its temporaries.

    See reference.fused_expression.

    Cost: n sin, exp and sqrt in ~6 passes over n-element arrays.
    """
    return np.sqrt(x**2 + np.sin(x) * np.exp(-x))
