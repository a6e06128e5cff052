"""The reference backend: SPEC section 2 as plain Python loops over scalars.

This module is the executable form of the contract and the oracle every other
implementation is tested against. It is written for clarity, not speed: it
uses only ``math`` on Python floats (no NumPy arithmetic, no JIT), so it
shares no code path with the backends it checks. The math of each kernel is
written here once; other backends' docstrings point here.

Symbols: M image pixels (unmasked), K visibilities, S source pixels, B mapping
slots per image pixel, P neighbour slots per source pixel, (Ny, Nx) the grid.
Costs are counted in the innermost operations; memory is the output's unless
stated.
"""

from __future__ import annotations

import math

import numpy as np

from lenskern.conventions import ARCSEC_TO_RADIANS, RIDGE, TWO_PI
from lenskern.registry import Backend, Cost, implements, table_size

BACKEND = Backend()  # the oracle: plain Python, on the CPU


def _phase(y: float, x: float, u: float, v: float) -> float:
    """phi = 2 pi (x u + y v): SPEC section 1's Fourier convention."""
    return TWO_PI * (x * u + y * v)


@implements("w_tilde", "direct", Cost("python", lambda M, K, **_: M * (M + 1) / 2 * K))
def w_tilde(grid, uv, noise):
    r"""The w-tilde matrix of the interferometer likelihood.

    .. math:: W_{ij} = \sum_k \cos(\phi_{ik} - \phi_{jk}) / \sigma_k^2,
       \quad \phi_{ik} = 2\pi (x_i u_k + y_i v_k)

    W is the Gram matrix of the (noise-weighted) Fourier transform: for an
    image f, ``f @ W @ f`` is the model's chi-squared energy, so W is
    symmetric positive semi-definite with ``W_ii = sum_k 1 / sigma_k^2``.

    Parameters
    ----------
    grid : (M, 2) float64, (y, x) of each unmasked pixel in radians
    uv : (K, 2) float64, (u, v) baselines in wavelengths
    noise : (K,) float64 > 0, sigma_k

    Returns
    -------
    (M, M) float64

    Cost: O(M^2 K) cosines (M(M+1)/2 K using symmetry); memory M^2 floats.
    """
    m_count, k_count = len(grid), len(uv)
    w = [[0.0] * m_count for _ in range(m_count)]
    for i in range(m_count):
        for j in range(i, m_count):
            total = 0.0
            for k in range(k_count):
                u, v = uv[k, 0], uv[k, 1]
                phase_i = _phase(grid[i, 0], grid[i, 1], u, v)
                phase_j = _phase(grid[j, 0], grid[j, 1], u, v)
                total += math.cos(phase_i - phase_j) / noise[k] ** 2
            w[i][j] = w[j][i] = total
    return np.array(w, dtype=np.float64).reshape(m_count, m_count)


@implements("w_offsets", "direct", Cost("python", lambda Ny, Nx, K, **_: table_size(Ny, Nx) * K))
def w_offsets(uv, noise, pixel_scale, shape_native):
    r"""Every distinct value of W, indexed by the pixel offset between i and j.

    On a regular grid W_ij depends only on the native-index offset
    (dr, dc) = (r_i - r_j, c_i - c_j), because x_i - x_j = dc d and
    y_i - y_j = -dr d (d the pixel scale in radians):

    .. math:: \mathrm{w\_offsets}[dr + N_y - 1, dc + N_x - 1]
       = \sum_k \cos(2\pi d (dc\, u_k - dr\, v_k)) / \sigma_k^2

    The table is even, ``w_offsets[-dr, -dc] = w_offsets[dr, dc]``, and it is
    all W needs: (2Ny-1)(2Nx-1) values instead of M^2.

    Parameters
    ----------
    uv : (K, 2) float64
    noise : (K,) float64 > 0
    pixel_scale : float > 0, arcsec
    shape_native : (Ny, Nx)

    Returns
    -------
    (2Ny-1, 2Nx-1) float64

    Cost: O(Ny Nx K) cosines with symmetry, O(4 Ny Nx K) without; memory
    4 Ny Nx floats. The direct sum over K per offset is what the seeds'
    "compact" algorithms compute.
    """
    ny, nx = shape_native
    d = pixel_scale * ARCSEC_TO_RADIANS
    table = [[0.0] * (2 * nx - 1) for _ in range(2 * ny - 1)]
    for dr in range(-(ny - 1), ny):
        for dc in range(-(nx - 1), nx):
            total = 0.0
            for k in range(len(uv)):
                total += math.cos(TWO_PI * d * (dc * uv[k, 0] - dr * uv[k, 1])) / noise[k] ** 2
            table[dr + ny - 1][dc + nx - 1] = total
    return np.array(table, dtype=np.float64).reshape(2 * ny - 1, 2 * nx - 1)


@implements("w_tilde_from_offsets", "gather", Cost("python", lambda M, **_: M * M))
def w_tilde_from_offsets(w_offsets, native_index):
    r"""W expanded from the offset table by a gather.

    .. math:: W_{ij} = \mathrm{w\_offsets}[r_i - r_j + N_y - 1,\; c_i - c_j + N_x - 1]

    Parameters
    ----------
    w_offsets : (2Ny-1, 2Nx-1) float64
    native_index : (M, 2) int64, (row, col) of each unmasked pixel

    Returns
    -------
    (M, M) float64

    Cost: M^2 reads and writes, no arithmetic: bound by memory bandwidth
    (8 M^2 bytes written).
    """
    ny = (w_offsets.shape[0] + 1) // 2
    nx = (w_offsets.shape[1] + 1) // 2
    m_count = len(native_index)
    w = [[0.0] * m_count for _ in range(m_count)]
    for i in range(m_count):
        for j in range(m_count):
            dr = native_index[i, 0] - native_index[j, 0]
            dc = native_index[i, 1] - native_index[j, 1]
            w[i][j] = float(w_offsets[dr + ny - 1, dc + nx - 1])
    return np.array(w, dtype=np.float64).reshape(m_count, m_count)


@implements("dirty_image", "direct", Cost("python", lambda M, K, **_: M * K))
def dirty_image(grid, uv, noise, visibilities):
    r"""The noise-weighted dirty image: the adjoint Fourier transform of the data.

    .. math:: d_i = \sum_k (\mathrm{Re} V_k \cos\phi_{ik} - \mathrm{Im} V_k \sin\phi_{ik})
       / \sigma_k^2

    equivalently ``d_i = Re sum_k conj(V_k) exp(-1j phi_ik) / sigma_k^2``.

    Parameters
    ----------
    grid : (M, 2) float64, radians
    uv : (K, 2) float64
    noise : (K,) float64 > 0
    visibilities : (K,) complex128

    Returns
    -------
    (M,) float64

    Cost: O(M K) sines and cosines; memory M floats.
    """
    image = [0.0] * len(grid)
    for i in range(len(grid)):
        for k in range(len(uv)):
            phase = _phase(grid[i, 0], grid[i, 1], uv[k, 0], uv[k, 1])
            value = visibilities[k]
            image[i] += (value.real * math.cos(phase) - value.imag * math.sin(phase)) / noise[k] ** 2
    return np.array(image, dtype=np.float64)


@implements("mapping_matrix", "loop", Cost("python", lambda M, B, S, **_: M * B + M * S))
def mapping_matrix(pix_indexes, pix_weights, n_sources):
    r"""The dense mapping matrix T from image pixels to source pixels.

    .. math:: T_{is} = \sum_b [\mathrm{pix\_indexes}_{ib} = s]\, \mathrm{pix\_weights}_{ib}

    over slots with index != -1. T has at most B non-zeros per row.

    Parameters
    ----------
    pix_indexes : (M, B) int64 in [-1, S), -1 pads
    pix_weights : (M, B) float64, 0 where the index is -1
    n_sources : int S

    Returns
    -------
    (M, S) float64

    Cost: O(M B) scattered adds; memory M S floats (mostly zeros: the sparse
    forms of the other kernels never build it).
    """
    m_count, b_count = pix_indexes.shape
    t = [[0.0] * n_sources for _ in range(m_count)]
    for i in range(m_count):
        for b in range(b_count):
            s = pix_indexes[i, b]
            if s != -1:
                t[i][s] += pix_weights[i, b]
    return np.array(t, dtype=np.float64).reshape(m_count, n_sources)


@implements("data_vector", "loop", Cost("python", lambda M, S, **_: M * S))
def data_vector(mapping_matrix, dirty_image):
    r"""The data vector D = T^T d: the dirty image seen by each source pixel.

    .. math:: D_s = \sum_i T_{is} d_i

    Parameters
    ----------
    mapping_matrix : (M, S) float64
    dirty_image : (M,) float64

    Returns
    -------
    (S,) float64

    Cost: O(M S) dense, O(M B) from the sparse mapping; memory S floats.
    """
    m_count, s_count = mapping_matrix.shape
    return np.array(
        [sum(mapping_matrix[i, s] * dirty_image[i] for i in range(m_count)) for s in range(s_count)],
        dtype=np.float64,
    )


@implements("curvature_matrix", "loop", Cost("python", lambda M, S, **_: M * M * S + M * S * S))
def curvature_matrix(w_tilde, mapping_matrix):
    r"""The curvature matrix F = T^T W T of the linear source inversion.

    .. math:: F_{st} = \sum_{i,j} T_{is} W_{ij} T_{jt}

    F is symmetric positive semi-definite. With the sparse mapping (B slots
    per row) it is ``F_st = sum_{i,b,j,b'} w_ib W_ij w_jb'`` over pairs with
    ``pix_indexes_ib = s`` and ``pix_indexes_jb' = t``, and W may be read from
    the offset table instead of memory.

    Parameters
    ----------
    w_tilde : (M, M) float64
    mapping_matrix : (M, S) float64

    Returns
    -------
    (S, S) float64

    Cost: dense O(M^2 S + M S^2); with the sparse mapping O(M^2 B + M B S)
    (W T then T^T (W T)) or O(M^2 B^2) (the direct four-fold loop); memory
    S^2 floats, plus M^2 if W is formed.
    """
    m_count, s_count = mapping_matrix.shape
    wt = [[0.0] * s_count for _ in range(m_count)]  # W T, (M, S)
    for i in range(m_count):
        for t in range(s_count):
            wt[i][t] = sum(w_tilde[i, j] * mapping_matrix[j, t] for j in range(m_count))
    f = [[0.0] * s_count for _ in range(s_count)]
    for s in range(s_count):
        for t in range(s_count):
            f[s][t] = sum(mapping_matrix[i, s] * wt[i][t] for i in range(m_count))
    return np.array(f, dtype=np.float64).reshape(s_count, s_count)


@implements("regularization_matrix", "loop", Cost("python", lambda S, P, **_: S * P + S * S))
def regularization_matrix(coefficient, neighbors, neighbors_sizes):
    r"""The constant (gradient) regularization matrix H of the source.

    .. math:: H_{ss} = 10^{-8} + c^2 n_s, \qquad H_{sn} = -c^2
       \text{ for each neighbour } n \text{ of } s

    with n_s = ``neighbors_sizes[s]``. ``s^T H s = c^2 sum_edges (s_a - s_b)^2
    + 1e-8 |s|^2``: a graph Laplacian (symmetric, zero row sums) plus a ridge
    that makes it positive definite.

    Parameters
    ----------
    coefficient : float c
    neighbors : (S, P) int64 in [-1, S), -1 pads, symmetric relation
    neighbors_sizes : (S,) int64

    Returns
    -------
    (S, S) float64

    Cost: O(S P); memory S^2 floats (S + 2 E non-zeros for E edges).
    """
    s_count, p_count = neighbors.shape
    c2 = coefficient * coefficient
    h = [[0.0] * s_count for _ in range(s_count)]
    for s in range(s_count):
        h[s][s] = RIDGE + c2 * neighbors_sizes[s]
        for p in range(p_count):
            n = neighbors[s, p]
            if n != -1:
                h[s][n] = -c2
    return np.array(h, dtype=np.float64).reshape(s_count, s_count)


def _cholesky(a):
    """Lower-triangular L with L L^T = a, by the Cholesky-Banachiewicz rows."""
    size = len(a)
    lower = [[0.0] * size for _ in range(size)]
    for i in range(size):
        for j in range(i + 1):
            total = a[i][j] - sum(lower[i][k] * lower[j][k] for k in range(j))
            if i == j:
                if total <= 0.0:
                    raise np.linalg.LinAlgError("matrix is not positive definite")
                lower[i][i] = math.sqrt(total)
            else:
                lower[i][j] = total / lower[j][j]
    return lower


def _cholesky_solve(lower, rhs):
    """x with L L^T x = rhs: forward then backward substitution."""
    size = len(lower)
    y = [0.0] * size
    for i in range(size):
        y[i] = (rhs[i] - sum(lower[i][k] * y[k] for k in range(i))) / lower[i][i]
    x = [0.0] * size
    for i in reversed(range(size)):
        x[i] = (y[i] - sum(lower[k][i] * x[k] for k in range(i + 1, size))) / lower[i][i]
    return x


@implements("reconstruction", "cholesky", Cost("python", lambda S, **_: S**3 / 3 + 2 * S * S))
def reconstruction(curvature_matrix, regularization_matrix, data_vector):
    r"""The maximum a posteriori source: s = (F + H)^{-1} D, by Cholesky.

    Parameters
    ----------
    curvature_matrix : (S, S) float64 F
    regularization_matrix : (S, S) float64 H
    data_vector : (S,) float64 D

    Returns
    -------
    (S,) float64

    Cost: S^3 / 3 for the factorisation, 2 S^2 for the two triangular
    solves; memory S^2 floats. F + H must be positive definite (H is).
    """
    s_count = len(data_vector)
    a = [
        [curvature_matrix[i, j] + regularization_matrix[i, j] for j in range(s_count)] for i in range(s_count)
    ]
    return np.array(_cholesky_solve(_cholesky(a), list(data_vector)), dtype=np.float64)


@implements("noise_normalization", "loop", Cost("python", lambda K, **_: K))
def noise_normalization(noise):
    r"""The Gaussian normalisation of K complex visibilities.

    .. math:: \sum_k 2 \log(2\pi\sigma_k^2)

    (the real and the imaginary part each contribute log(2 pi sigma^2)).

    Parameters
    ----------
    noise : (K,) float64 > 0

    Returns
    -------
    float

    Cost: O(K) logarithms.
    """
    return float(sum(2.0 * math.log(TWO_PI * sigma * sigma) for sigma in noise))


@implements(
    "log_evidence", "direct", Cost("python", lambda M, K, S, **_: M * (M + 1) / 2 * K + M * M * S + S**3)
)
def log_evidence(
    grid,
    uv,
    noise,
    visibilities,
    pix_indexes,
    pix_weights,
    n_sources,
    neighbors,
    neighbors_sizes,
    coefficient,
):
    r"""The Bayesian log evidence of the pixelized source (Warren & Dye 2003;
    Suyu et al. 2006), from raw inputs, composed of the kernels above.

    .. math::
       \chi^2_\mathrm{data} = \sum_k |V_k|^2 / \sigma_k^2

       L = -\tfrac12 (\chi^2_\mathrm{data} - s \cdot D + \mathrm{noise\_normalization})
           + \sum \log\operatorname{diag}\operatorname{chol}(H)
           - \sum \log\operatorname{diag}\operatorname{chol}(F + H)

    with F = T^T W T, D = T^T d and s = (F + H)^{-1} D. This equals
    ``-0.5 (chi2(s) + s^T H s + log det(F + H) - log det H + noise_normalization)``
    with chi2(s) the residual of the model visibilities of the image T s:
    ``chi2_data - s . D`` is that residual plus the regularization term at
    the maximum a posteriori s.

    Parameters
    ----------
    grid, uv, noise, visibilities : as :func:`dirty_image`
    pix_indexes, pix_weights, n_sources : as :func:`mapping_matrix`
    neighbors, neighbors_sizes, coefficient : as :func:`regularization_matrix`

    Returns
    -------
    float

    Cost: dominated by W, O(M^2 K) here; with the offset table O(Ny Nx K)
    once, then O(M^2 B) per curvature and O(S^3) per Cholesky. A sampler
    re-evaluates only the mapping and the coefficient: the offset table and
    the dirty image do not change between its calls.
    """
    t = mapping_matrix(pix_indexes, pix_weights, n_sources)
    data = data_vector(t, dirty_image(grid, uv, noise, visibilities))
    curvature = curvature_matrix(w_tilde(grid, uv, noise), t)
    regularization = regularization_matrix(coefficient, neighbors, neighbors_sizes)
    s_count = n_sources
    h = [[regularization[i, j] for j in range(s_count)] for i in range(s_count)]
    fh = [[curvature[i, j] + h[i][j] for j in range(s_count)] for i in range(s_count)]
    chol_h, chol_fh = _cholesky(h), _cholesky(fh)
    source = _cholesky_solve(chol_fh, list(data))
    chi2_data = sum((v.real**2 + v.imag**2) / sigma**2 for v, sigma in zip(visibilities, noise))
    s_dot_d = sum(a * b for a, b in zip(source, data))
    log_det_h = sum(math.log(chol_h[i][i]) for i in range(s_count))
    log_det_fh = sum(math.log(chol_fh[i][i]) for i in range(s_count))
    return float(-0.5 * (chi2_data - s_dot_d + noise_normalization(noise)) + log_det_h - log_det_fh)


@implements(
    "data_parts",
    "direct",
    Cost("python", lambda Ny, Nx, M, K, **_: (table_size(Ny, Nx) + M + 2) * K),
)
def data_parts(uv, noise, visibilities, pixel_scale, shape_native, native_index):
    r"""The likelihood's data parts: every sum over the visibilities that
    the log evidence needs, by name.

    .. math::
       \mathrm{w\_offsets},\ d_i\ 	ext{as above};\quad
       \chi^2_\mathrm{data} = \sum_k |V_k|^2 / \sigma_k^2;\quad
       \sum_k 2 \log(2\pi\sigma_k^2)

    Each is a sum over k, so the parts of disjoint sets of visibilities add
    to the parts of their union: the stream (lenskern.stream) sums a store
    of any size chunk by chunk through this kernel, and
    ``lk.Likelihood.from_parts`` takes the total. The pixel centres are
    SPEC section 1's, from ``native_index``.

    Parameters
    ----------
    uv, noise, visibilities : as :func:`dirty_image`
    pixel_scale, shape_native : as :func:`w_offsets`
    native_index : (M, 2) int64, (row, col) of each unmasked pixel

    Returns
    -------
    dict: ``w_offsets`` (2Ny-1, 2Nx-1) float64, ``dirty_image`` (M,)
    float64, ``chi2_data`` float, ``noise_normalization`` float

    Cost: O((Ny Nx + M) K) cosines, :func:`w_offsets`' and
    :func:`dirty_image`'s; memory: the table and the image.
    """
    ny, nx = shape_native
    d = pixel_scale * ARCSEC_TO_RADIANS
    grid = np.array(
        [[-(r - (ny - 1) / 2) * d, (c - (nx - 1) / 2) * d] for r, c in native_index], dtype=np.float64
    ).reshape(len(native_index), 2)
    chi2 = sum((v.real**2 + v.imag**2) / sigma**2 for v, sigma in zip(visibilities, noise))
    return dict(
        w_offsets=w_offsets(uv, noise, pixel_scale, shape_native),
        dirty_image=dirty_image(grid, uv, noise, visibilities),
        chi2_data=float(chi2),
        noise_normalization=noise_normalization(noise),
    )


@implements("quadratic_formula", "loop", Cost("python", lambda n, **_: n))
def quadratic_formula(a, b, c):
    r"""The larger root of a x^2 + b x + c, element-wise (the seeds' example).

    .. math:: (-b + \sqrt{b^2 - 4ac}) / (2a)

    Parameters
    ----------
    a, b, c : (n,) float64, a != 0, b^2 >= 4ac

    Returns
    -------
    (n,) float64

    Cost: n square roots; 32 n bytes moved (three reads, one write): bound by
    memory bandwidth once fused, while NumPy makes ~5 temporaries.
    """
    return np.array(
        [(-b[i] + math.sqrt(b[i] ** 2 - 4 * a[i] * c[i])) / (2 * a[i]) for i in range(len(a))],
        dtype=np.float64,
    )


@implements("fma", "loop", Cost("python", lambda n, W, **_: W * n))
def fma(weights, arrays):
    r"""A weighted sum of arrays: the seeds' toast example ``out += w * array``.

    .. math:: \mathrm{out}_j = \sum_w \mathrm{weights}_w\, \mathrm{arrays}_{wj}

    Parameters
    ----------
    weights : (W,) float64
    arrays : (W, n) float64

    Returns
    -------
    (n,) float64

    Cost: W n multiply-adds; 8 (W + 1) n bytes moved when fused in one pass
    over out, 8 (3 W) n by NumPy's one temporary per term.
    """
    w_count, n = arrays.shape
    out = [0.0] * n
    for w in range(w_count):
        for j in range(n):
            out[j] += weights[w] * arrays[w, j]
    return np.array(out, dtype=np.float64)


@implements("fused_expression", "loop", Cost("python", lambda n, **_: n))
def fused_expression(x):
    r"""The seeds' fusion example, element-wise.

    .. math:: \sqrt{x^2 + \sin(x) e^{-x}}

    Parameters
    ----------
    x : (n,) float64 with a non-negative radicand (true for every x >= 0)

    Returns
    -------
    (n,) float64

    Cost: n sin, exp and sqrt; 16 n bytes moved when fused, ~4 temporaries
    of 8 n bytes each in NumPy.
    """
    return np.array(
        [math.sqrt(value * value + math.sin(value) * math.exp(-value)) for value in x],
        dtype=np.float64,
    )
