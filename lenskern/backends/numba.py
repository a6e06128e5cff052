"""The Numba backend: SPEC section 2 as nopython loops, parallel with prange.

Each registered function is a thin Python wrapper over module-level
``numba.njit(cache=True)`` kernels; the math is written once in
:mod:`lenskern.backends.reference`. Inputs arrive validated and converted
(contiguous float64 / int64 / complex128), so the kernels check nothing, but
every ``-1`` padding slot of ``pix_indexes`` and ``neighbors`` is skipped
explicitly: a negative index would silently wrap in compiled code.

Parallel loops never let two iterations write the same element: each
iteration owns a row, an offset pair or an output element. Importing this
module changes no Numba setting (threads, threading layer, config).
"""

from __future__ import annotations

import math
import mmap
from fractions import Fraction

import numba
import numpy as np

from lenskern.conventions import ARCSEC_TO_RADIANS, RIDGE, TWO_PI
from lenskern.registry import Backend, Cost, implements

BACKEND = Backend(threads=("NUMBA_NUM_THREADS",))

# ---------------------------------------------------------------------------
# w_tilde and the offset table


@numba.njit(cache=True)
def _inverse_variance(noise):
    out = np.empty(noise.shape[0])
    for k in range(noise.shape[0]):
        out[k] = 1.0 / (noise[k] * noise[k])
    return out


@numba.njit(cache=True)
def _w_tilde_triangle_row(w, scaled, uv, inverse, i):
    """Fill W[i, j >= i] and the mirror W[j, i]."""
    for j in range(i, scaled.shape[0]):
        dy = scaled[i, 0] - scaled[j, 0]
        dx = scaled[i, 1] - scaled[j, 1]
        total = 0.0
        for k in range(uv.shape[0]):
            total += math.cos(dx * uv[k, 0] + dy * uv[k, 1]) * inverse[k]
        w[i, j] = total
        w[j, i] = total


@numba.njit(cache=True, parallel=True)
def _w_tilde_direct(grid, uv, noise):
    m_count = grid.shape[0]
    scaled = TWO_PI * grid
    inverse = _inverse_variance(noise)
    w = np.empty((m_count, m_count))
    # Rows i and M-1-i together cost M+1 pairs, so prange's equal chunks get
    # equal work (row i alone costs M-i). Each row's triangle and its mirror
    # belong to one iteration, so the writes never race.
    for half in numba.prange((m_count + 1) // 2):
        i = np.int64(half)
        _w_tilde_triangle_row(w, scaled, uv, inverse, i)
        if m_count - 1 - i != i:
            _w_tilde_triangle_row(w, scaled, uv, inverse, m_count - 1 - i)
    return w


@numba.njit(cache=True, parallel=True)
def _w_tilde_k_loop(grid, uv, noise):
    m_count, k_count = grid.shape[0], uv.shape[0]
    scaled = TWO_PI * grid
    inverse = _inverse_variance(noise)
    w = np.zeros((m_count, m_count))
    # The seeds' order: one full M x M pass per visibility, so W is streamed
    # through memory K times; kept as the baseline it is.
    for k in range(k_count):
        u, v, weight = uv[k, 0], uv[k, 1], inverse[k]
        for i in numba.prange(m_count):
            for j in range(m_count):
                dy = scaled[i, 0] - scaled[j, 0]
                dx = scaled[i, 1] - scaled[j, 1]
                w[i, j] += math.cos(dx * u + dy * v) * weight
    return w


@numba.njit(cache=True)
def _offset_frequencies(uv, noise, d_rad):
    """(2 pi d u_k, 2 pi d v_k, 1 / sigma_k^2): the phase of offset (dr, dc)
    is then dc * su_k - dr * sv_k."""
    k_count = uv.shape[0]
    su = np.empty(k_count)
    sv = np.empty(k_count)
    for k in range(k_count):
        su[k] = TWO_PI * d_rad * uv[k, 0]
        sv[k] = TWO_PI * d_rad * uv[k, 1]
    return su, sv, _inverse_variance(noise)


@numba.njit(cache=True, parallel=True)
def _w_offsets_half(uv, noise, d_rad, ny, nx):
    su, sv, inverse = _offset_frequencies(uv, noise, d_rad)
    k_count = uv.shape[0]
    width = 2 * nx - 1
    table = np.empty((2 * ny - 1, width))
    centre = (ny - 1) * width + nx - 1
    # The half table is the row-major tail of the full one from its centre:
    # dr = 0 with dc >= 0, then dr > 0 with every dc. Each offset and its
    # mirror (-dr, -dc) belong to one iteration only.
    for n in numba.prange(nx + (ny - 1) * width):
        # prange indexes are unsigned: cast before any signed arithmetic.
        flat = centre + np.int64(n)
        dr = flat // width - (ny - 1)
        dc = flat % width - (nx - 1)
        total = 0.0
        for k in range(k_count):
            total += math.cos(dc * su[k] - dr * sv[k]) * inverse[k]
        table[dr + ny - 1, dc + nx - 1] = total
        table[ny - 1 - dr, nx - 1 - dc] = total
    return table


@numba.njit(cache=True, parallel=True)
def _w_offsets_quadrant(uv, noise, d_rad, ny, nx):
    su, sv, inverse = _offset_frequencies(uv, noise, d_rad)
    k_count = uv.shape[0]
    q_pp = np.empty((ny, nx))  # offsets (dr, dc)
    q_pm = np.empty((ny, nx))  # offsets (dr, -dc)
    for n in numba.prange(ny * nx):
        # prange indexes are unsigned: cast so that -dc stays negative.
        dr = np.int64(n) // nx
        dc = np.int64(n) % nx
        plus = 0.0
        minus = 0.0
        for k in range(k_count):
            plus += math.cos(dc * su[k] - dr * sv[k]) * inverse[k]
            minus += math.cos(-dc * su[k] - dr * sv[k]) * inverse[k]
        q_pp[dr, dc] = plus
        q_pm[dr, dc] = minus
    table = np.empty((2 * ny - 1, 2 * nx - 1))
    # (dr, dc) fills its four sign combinations by evenness; on the axes
    # (dr = 0 or dc = 0) two quadrants write the same, equal value.
    for dr in range(ny):
        for dc in range(nx):
            table[ny - 1 + dr, nx - 1 + dc] = q_pp[dr, dc]
            table[ny - 1 - dr, nx - 1 - dc] = q_pp[dr, dc]
            table[ny - 1 + dr, nx - 1 - dc] = q_pm[dr, dc]
            table[ny - 1 - dr, nx - 1 + dc] = q_pm[dr, dc]
    return table


@numba.njit(cache=True)
def _linear_positions(w_offsets, native_index):
    """(table, lin, centre) with W_ij = table[centre + lin_i - lin_j]: the
    offset table flattened and each pixel's linear position in it, so a pair's
    entry is one subtraction instead of two 2-d offsets. Every pair of grid
    pixels indexes inside the table."""
    nx2 = w_offsets.shape[1]
    ny = (w_offsets.shape[0] + 1) // 2
    lin = native_index[:, 0] * nx2 + native_index[:, 1]
    return w_offsets.ravel(), lin, (ny - 1) * nx2 + (nx2 - 1) // 2


@numba.njit(cache=True, parallel=True)
def _gather_into(w_offsets, native_index, w):
    # One subtraction per entry (linear table positions) instead of two 2-d
    # offsets: the inner loop is a single strided read of the table.
    table, lin, centre = _linear_positions(w_offsets, native_index)
    for i in numba.prange(lin.shape[0]):
        at = centre + lin[i]
        for j in range(lin.shape[0]):
            w[i, j] = table[at - lin[j]]
    return w


#: Outputs at least this large are allocated on transparent huge pages where
#: the kernel offers them: W's first touch then takes 2 MiB page faults
#: instead of 4 KiB ones, 512 times fewer faults for a W of many MB.
HUGE_PAGE_BYTES = 1 << 21


def _empty(shape) -> np.ndarray:
    """np.empty, on huge pages (madvise) for large arrays on Linux."""
    size = int(np.prod(shape)) * 8
    if size < HUGE_PAGE_BYTES or not hasattr(mmap, "MADV_HUGEPAGE"):
        return np.empty(shape)
    buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buffer.madvise(mmap.MADV_HUGEPAGE)
    return np.frombuffer(buffer, dtype=np.float64).reshape(shape)


def _gather(w_offsets, native_index):
    m_count = native_index.shape[0]
    return _gather_into(w_offsets, native_index, _empty((m_count, m_count)))


@implements("w_tilde", "direct", Cost("trig", lambda M, K, **_: M * (M + 1) / 2 * K))
def w_tilde_direct(grid, uv, noise):
    """Direct sum over K per pixel pair, rows in parallel, symmetric half only.

    See reference.w_tilde for the math. prange over row pairs (i, M-1-i), for
    balanced work; each row fills (i, j >= i) and the mirror (j, i). 2 pi grid
    and 1 / sigma^2 are precomputed, so the inner loop is one cosine and one
    multiply-add.

    Cost: M(M+1)/2 K cosines; memory M^2.
    """
    return _w_tilde_direct(grid, uv, noise)


@implements("w_tilde", "k_loop", Cost("trig", lambda M, K, **_: M * M * K))
def w_tilde_k_loop(grid, uv, noise):
    """The seeds' loop over K outermost, each visibility added to all of W.

    See reference.w_tilde for the math. Serial over k; for each k the rows
    of W are updated in parallel (prange over i). No symmetry is used and W
    is read and written K times, which is why it is slower than "direct".

    Cost: M^2 K cosines, K M^2 reads and writes of W; memory M^2.
    """
    return _w_tilde_k_loop(grid, uv, noise)


@implements("w_tilde", "offsets", Cost("trig", lambda Ny, Nx, K, **_: 2 * Ny * Nx * K))
def w_tilde_offsets(uv, noise, pixel_scale, shape_native, native_index):
    """W gathered from the half offset table: K cosines per offset, not per pair.

    See reference.w_tilde for the math. Computes the offset table as
    w_offsets "half" does, then expands it as w_tilde_from_offsets "gather".

    Cost: ~2 Ny Nx K cosines plus M^2 gathered reads; memory M^2 + 4 Ny Nx.
    """
    ny, nx = shape_native
    table = _w_offsets_half(uv, noise, pixel_scale * ARCSEC_TO_RADIANS, ny, nx)
    return _gather(table, native_index)


@implements("w_offsets", "half", Cost("trig", lambda Ny, Nx, K, **_: Ny * (2 * Nx - 1) * K))
def w_offsets_half(uv, noise, pixel_scale, shape_native):
    """The seeds' "compact" table: half the offsets summed over K, mirrored.

    See reference.w_offsets for the math. prange over the offsets with dr = 0,
    dc >= 0 and dr > 0, all dc; each writes its value and its mirror
    (-dr, -dc), since the table is even.

    Cost: (Nx + (Ny-1)(2Nx-1)) K ~ 2 Ny Nx K cosines; memory 4 Ny Nx.
    """
    ny, nx = shape_native
    return _w_offsets_half(uv, noise, pixel_scale * ARCSEC_TO_RADIANS, ny, nx)


@implements("w_offsets", "quadrant", Cost("trig", lambda Ny, Nx, K, **_: 2 * Ny * Nx * K))
def w_offsets_quadrant(uv, noise, pixel_scale, shape_native):
    """PyAutoArray's "preload" layout: two quadrant tables, then assembled.

    See reference.w_offsets for the math. prange over (dr, dc) in
    [0, Ny) x [0, Nx) computes the quadrants of offsets (dr, dc) and
    (dr, -dc) in one pass over K; the full centred table follows by evenness.

    Cost: 2 Ny Nx K cosines (the axes dr = 0, dc = 0 are computed twice);
    memory 4 Ny Nx + 2 Ny Nx for the quadrants.
    """
    ny, nx = shape_native
    return _w_offsets_quadrant(uv, noise, pixel_scale * ARCSEC_TO_RADIANS, ny, nx)


@implements("w_tilde_from_offsets", "gather", Cost("flop", lambda M, **_: M * M))
def w_tilde_from_offsets_gather(w_offsets, native_index):
    """W expanded from the offset table, rows in parallel.

    See reference.w_tilde_from_offsets for the math. prange over rows i;
    the table is small enough to stay in cache while W is written, and each
    entry's table index is one subtraction of precomputed linear positions.
    W is allocated on huge pages (HUGE_PAGE_BYTES): at seed-1core the write
    is then bound by first-touch page faults and the memory bus, not by
    index arithmetic.

    Cost: M^2 reads and writes, no arithmetic (bandwidth-bound); memory M^2.
    """
    return _gather(w_offsets, native_index)


# ---------------------------------------------------------------------------
# Dirty image, mapping, data vector


@numba.njit(cache=True, parallel=True)
def _dirty_image(grid, uv, noise, vis_real, vis_imag):
    m_count, k_count = grid.shape[0], uv.shape[0]
    inverse = _inverse_variance(noise)
    weighted_real = np.empty(k_count)
    weighted_imag = np.empty(k_count)
    for k in range(k_count):
        weighted_real[k] = vis_real[k] * inverse[k]
        weighted_imag[k] = vis_imag[k] * inverse[k]
    image = np.empty(m_count)
    for i in numba.prange(m_count):
        y = TWO_PI * grid[i, 0]
        x = TWO_PI * grid[i, 1]
        total = 0.0
        for k in range(k_count):
            phase = x * uv[k, 0] + y * uv[k, 1]
            total += weighted_real[k] * math.cos(phase) - weighted_imag[k] * math.sin(phase)
        image[i] = total
    return image


@numba.njit(cache=True)
def _mapping_matrix(pix_indexes, pix_weights, n_sources):
    m_count, b_count = pix_indexes.shape
    t = np.zeros((m_count, n_sources))
    for i in range(m_count):
        for b in range(b_count):
            s = pix_indexes[i, b]
            if s < 0:
                continue
            t[i, s] += pix_weights[i, b]
    return t


@numba.njit(cache=True)
def _data_vector(dirty_image, pix_indexes, pix_weights, n_sources):
    m_count, b_count = pix_indexes.shape
    d = np.zeros(n_sources)
    for i in range(m_count):
        for b in range(b_count):
            s = pix_indexes[i, b]
            if s < 0:
                continue
            d[s] += pix_weights[i, b] * dirty_image[i]
    return d


@implements("dirty_image", "direct", Cost("trig", lambda M, K, **_: 2 * M * K))
def dirty_image_direct(grid, uv, noise, visibilities):
    """Direct sum over K per pixel, pixels in parallel.

    See reference.dirty_image for the math. Re V / sigma^2 and Im V / sigma^2
    are precomputed as real arrays, so the inner loop is one sine, one cosine
    and two multiply-adds.

    Cost: M K sines and cosines; memory M + 2 K.
    """
    vis_real = np.ascontiguousarray(visibilities.real)
    vis_imag = np.ascontiguousarray(visibilities.imag)
    return _dirty_image(grid, uv, noise, vis_real, vis_imag)


@implements("mapping_matrix", "scatter", Cost("flop", lambda M, B, S, **_: M * B + M * S))
def mapping_matrix_scatter(pix_indexes, pix_weights, n_sources):
    """The dense mapping matrix by a serial scatter of the sparse slots.

    See reference.mapping_matrix for the math. Slots with index -1 are
    skipped.

    Cost: M B adds; memory M S.
    """
    return _mapping_matrix(pix_indexes, pix_weights, n_sources)


@implements("data_vector", "sparse", Cost("flop", lambda M, B, **_: 2 * M * B))
def data_vector_sparse(dirty_image, pix_indexes, pix_weights, n_sources):
    """D = T^T d from the sparse mapping, never forming T.

    See reference.data_vector for the math. A serial scatter over the valid
    (i, b) slots: it is O(M B), too little work to be worth threads.

    Cost: M B multiply-adds; memory S.
    """
    return _data_vector(dirty_image, pix_indexes, pix_weights, n_sources)


# ---------------------------------------------------------------------------
# Curvature matrix


@numba.njit(cache=True)
def _project_rows(z, pix_indexes, pix_weights, n_sources):
    """F = T^T Z for Z = W T of shape (M, S). Serial: rows of F are hit by
    many image pixels, so a parallel scatter would race."""
    m_count, b_count = pix_indexes.shape
    f = np.zeros((n_sources, n_sources))
    for i in range(m_count):
        for b in range(b_count):
            s = pix_indexes[i, b]
            if s < 0:
                continue
            weight = pix_weights[i, b]
            for t in range(n_sources):
                f[s, t] += weight * z[i, t]
    return f


@numba.njit(cache=True, parallel=True)
def _curvature_sparse(w_tilde, pix_indexes, pix_weights, n_sources):
    m_count, b_count = pix_indexes.shape
    z = np.zeros((m_count, n_sources))
    # Row i of Z = W T is private to iteration i.
    for i in numba.prange(m_count):
        for j in range(m_count):
            w_ij = w_tilde[i, j]
            for b in range(b_count):
                s = pix_indexes[j, b]
                if s < 0:
                    continue
                z[i, s] += w_ij * pix_weights[j, b]
    return _project_rows(z, pix_indexes, pix_weights, n_sources)


@numba.njit(cache=True, parallel=True)
def _curvature_offsets(w_offsets, native_index, pix_indexes, pix_weights, n_sources):
    ny = (w_offsets.shape[0] + 1) // 2
    nx = (w_offsets.shape[1] + 1) // 2
    m_count, b_count = pix_indexes.shape
    z = np.zeros((m_count, n_sources))
    for i in numba.prange(m_count):
        row = native_index[i, 0] + ny - 1
        col = native_index[i, 1] + nx - 1
        for j in range(m_count):
            w_ij = w_offsets[row - native_index[j, 0], col - native_index[j, 1]]
            for b in range(b_count):
                s = pix_indexes[j, b]
                if s < 0:
                    continue
                z[i, s] += w_ij * pix_weights[j, b]
    return _project_rows(z, pix_indexes, pix_weights, n_sources)


@numba.njit(cache=True)
def _curvature_direct(w_offsets, native_index, pix_indexes, pix_weights, n_sources):
    ny = (w_offsets.shape[0] + 1) // 2
    nx = (w_offsets.shape[1] + 1) // 2
    m_count, b_count = pix_indexes.shape
    f = np.zeros((n_sources, n_sources))
    for i in range(m_count):
        row = native_index[i, 0] + ny - 1
        col = native_index[i, 1] + nx - 1
        for j in range(m_count):
            w_ij = w_offsets[row - native_index[j, 0], col - native_index[j, 1]]
            for b in range(b_count):
                s = pix_indexes[i, b]
                if s < 0:
                    continue
                weighted = pix_weights[i, b] * w_ij
                for b2 in range(b_count):
                    t = pix_indexes[j, b2]
                    if t < 0:
                        continue
                    f[s, t] += weighted * pix_weights[j, b2]
    return f


#: Image pixels per tile of the "tiled" curvature: each entry of a source's
#: column of T is read once per tile and used by all its rows. A tile is a
#: run of consecutive pixels of one image row where it can be (then each
#: entry reads one contiguous run of the table), cut at TILE pixels; runs
#: shorter than MIN_RUN are grouped, up to TILE, and read by gathers.
#: A longer tile amortises each read of T over more rows; 64 doubles fill
#: eight AVX-512 registers' worth of accumulators per source pixel.
TILE = 64
MIN_RUN = 16


@numba.njit(cache=True)
def _tile_starts(lin):
    """Where each tile starts, plus len(lin) at the end (see TILE, MIN_RUN)."""
    starts = np.empty(lin.shape[0] + 1, np.int64)
    count = 0
    first = 0
    starts[0] = 0
    for i in range(1, lin.shape[0]):
        broken = lin[i] != lin[i - 1] + 1
        if i - first == TILE or (broken and i - first >= MIN_RUN):
            count += 1
            starts[count] = i
            first = i
    starts[count + 1] = lin.shape[0]
    return starts[: count + 2].copy()


@numba.njit(cache=True)
def _source_columns(pix_indexes, pix_weights, lin, n_sources):
    """T by columns: for each source pixel s, entries start[s]:start[s+1] of
    (pixel, lin, weight) list the image pixels that map to it, in increasing order."""
    m_count, b_count = pix_indexes.shape
    start = np.zeros(n_sources + 1, np.int64)
    for i in range(m_count):
        for b in range(b_count):
            if pix_indexes[i, b] >= 0:
                start[pix_indexes[i, b] + 1] += 1
    for s in range(n_sources):
        start[s + 1] += start[s]
    fill = start[:-1].copy()
    pixel = np.empty(start[-1], np.int64)
    position = np.empty(start[-1], np.int64)
    weight = np.empty(start[-1])
    for i in range(m_count):
        for b in range(b_count):
            s = pix_indexes[i, b]
            if s >= 0:
                e = fill[s]
                pixel[e] = i
                position[e] = lin[i]
                weight[e] = pix_weights[i, b]
                fill[s] += 1
    return start, pixel, position, weight


@numba.njit(cache=True)
def _curvature_tile(table, at, columns, pix_indexes, pix_weights, first, last, acc, z, f):
    """Add to f the rows of G = T^T (L + D / 2) T of image pixels [first, last).

    at[r] = centre + lin[first + r]; acc is TILE scratch and z (TILE, S).
    """
    start, pixel, position, weight = columns
    rows = last - first
    n_sources = f.shape[0]
    # A tile of one run of pixels reads one run of the table per pixel j:
    # contiguous loads instead of gathers.
    contiguous = at[rows - 1] - at[0] == rows - 1
    for s in range(n_sources):
        acc[:rows] = 0.0
        e = start[s]
        end = start[s + 1]
        # Pixels j before the tile: below the diagonal for every row.
        if contiguous:
            # Eight pixels j a pass: each pass loads and stores the
            # accumulators once for eight multiply-adds, not eight times.
            while e + 7 < end and pixel[e + 7] < first:
                r0 = table[at[0] - position[e] : at[0] - position[e] + rows]
                r1 = table[at[0] - position[e + 1] : at[0] - position[e + 1] + rows]
                r2 = table[at[0] - position[e + 2] : at[0] - position[e + 2] + rows]
                r3 = table[at[0] - position[e + 3] : at[0] - position[e + 3] + rows]
                r4 = table[at[0] - position[e + 4] : at[0] - position[e + 4] + rows]
                r5 = table[at[0] - position[e + 5] : at[0] - position[e + 5] + rows]
                r6 = table[at[0] - position[e + 6] : at[0] - position[e + 6] + rows]
                r7 = table[at[0] - position[e + 7] : at[0] - position[e + 7] + rows]
                w0, w1, w2, w3 = weight[e], weight[e + 1], weight[e + 2], weight[e + 3]
                w4, w5, w6, w7 = weight[e + 4], weight[e + 5], weight[e + 6], weight[e + 7]
                for r in range(rows):
                    acc[r] += ((r0[r] * w0 + r1[r] * w1) + (r2[r] * w2 + r3[r] * w3)) + (
                        (r4[r] * w4 + r5[r] * w5) + (r6[r] * w6 + r7[r] * w7)
                    )
                e += 8
            while e < end and pixel[e] < first:
                run = table[at[0] - position[e] : at[0] - position[e] + rows]
                w = weight[e]
                for r in range(rows):
                    acc[r] += run[r] * w
                e += 1
        else:
            while e < end and pixel[e] < first:
                p = position[e]
                w = weight[e]
                for r in range(rows):
                    acc[r] += table[at[r] - p] * w
                e += 1
        # Pixels inside the tile: rows i > j take W_ij, row i = j half of W_ii.
        while e < end and pixel[e] < last:
            j = pixel[e] - first
            p = position[e]
            w = weight[e]
            acc[j] += 0.5 * table[at[j] - p] * w
            for r in range(j + 1, rows):
                acc[r] += table[at[r] - p] * w
            e += 1
        for r in range(rows):
            z[r, s] = acc[r]
    for r in range(rows):
        for b in range(pix_indexes.shape[1]):
            s = pix_indexes[first + r, b]
            if s >= 0:
                w = pix_weights[first + r, b]
                for t in range(n_sources):
                    f[s, t] += w * z[r, t]


@numba.njit(cache=True, parallel=True)
def _curvature_tiled(w_offsets, native_index, pix_indexes, pix_weights, n_sources, n_workers):
    table, lin, centre = _linear_positions(w_offsets, native_index)
    columns = _source_columns(pix_indexes, pix_weights, lin, n_sources)
    starts = _tile_starts(lin)
    n_tiles = starts.shape[0] - 1
    partial = np.zeros((n_workers, n_sources, n_sources))
    # Tile t costs ~t: worker w takes tiles w, w + n_workers, ... together
    # with their mirrors from the far end, so the triangle splits evenly.
    for worker in numba.prange(n_workers):
        at = np.empty(TILE, np.int64)
        acc = np.empty(TILE)
        z = np.empty((TILE, n_sources))
        for k in range(worker, (n_tiles + 1) // 2, n_workers):
            mirror = n_tiles - 1 - k
            for half in range(2 if mirror != k else 1):
                tile = k if half == 0 else mirror
                first = starts[tile]
                last = starts[tile + 1]
                for r in range(last - first):
                    at[r] = centre + lin[first + r]
                _curvature_tile(
                    table, at, columns, pix_indexes, pix_weights, first, last, acc, z, partial[worker]
                )
    g = partial.sum(axis=0)
    return g + g.T


@implements("curvature_matrix", "sparse", Cost("flop", lambda M, B, S, **_: 2 * M * M * B + 2 * M * B * S))
def curvature_matrix_sparse(w_tilde, pix_indexes, pix_weights, n_sources):
    """F = T^T (W T) with W in memory and the sparse mapping, never forming T.

    See reference.curvature_matrix for the math. Z = W T is built with prange
    over rows of W (each row private); F = T^T Z is a serial scatter of the
    rows of Z, since several image pixels map to the same source pixel.

    Cost: M^2 B + M B S multiply-adds; memory M S (plus the given M^2 W).
    """
    return _curvature_sparse(w_tilde, pix_indexes, pix_weights, n_sources)


@implements("curvature_matrix", "offsets", Cost("flop", lambda M, B, S, **_: 2 * M * M * B + 2 * M * B * S))
def curvature_matrix_offsets(w_offsets, native_index, pix_indexes, pix_weights, n_sources):
    """As "sparse", but W_ij is read from the offset table, never formed.

    See reference.curvature_matrix for the math. Same two steps as "sparse";
    the table (4 Ny Nx floats) stays in cache where W (M^2) would not.

    Cost: M^2 B + M B S multiply-adds; memory M S.
    """
    return _curvature_offsets(w_offsets, native_index, pix_indexes, pix_weights, n_sources)


@implements("curvature_matrix", "tiled", Cost("flop", lambda M, B, S, **_: M * M * B + 2 * M * B * S))
def curvature_matrix_tiled(w_offsets, native_index, pix_indexes, pix_weights, n_sources):
    """F = G + G^T with G = T^T (L + D/2) T, W = L + D + L^T read from the offset table.

    See reference.curvature_matrix for the math. W's symmetry halves the
    work: only pairs j <= i are visited. T is regrouped by source pixel
    (CSC), and rows i go in tiles of up to TILE pixels, runs of one image
    row where they are long enough: for each source s, each pixel j mapping
    to it is read once and updates the tile's accumulators
    (Z_is = sum_j W_ij T_js) from a run of the table, contiguous when the
    tile's pixels are, so the inner loop vectorises and no two updates hit
    the same memory. A tile's rows of Z are scattered into its
    worker's own F at once, so Z (M S) and W (M^2) are never stored. Tiles go
    to workers in pairs from both ends of the triangle, which balances them.

    Cost: M^2 B / 2 + M B S multiply-adds, M^2 B / 2 table reads from a table
    of 4 Ny Nx floats; memory (workers + 1) S^2 + TILE S + 3 M B words.
    """
    workers = min(numba.get_num_threads(), max(1, len(native_index) // TILE))
    return _curvature_tiled(w_offsets, native_index, pix_indexes, pix_weights, n_sources, workers)


@implements("curvature_matrix", "direct", Cost("flop", lambda M, B, **_: 2 * M * M * B * B))
def curvature_matrix_direct(w_offsets, native_index, pix_indexes, pix_weights, n_sources):
    """The seeds' direct four-fold loop over (i, j, b, b'), serial.

    See reference.curvature_matrix for the math. F[s_ib, s_jb'] accumulates
    w_ib W_ij w_jb' with W_ij read from the offset table; serial because
    every (i, j) pair scatters into arbitrary entries of F.

    Cost: M^2 B^2 multiply-adds; memory S^2.
    """
    return _curvature_direct(w_offsets, native_index, pix_indexes, pix_weights, n_sources)


# ---------------------------------------------------------------------------
# Regularization, reconstruction, log evidence


@numba.njit(cache=True)
def _regularization_matrix(coefficient, neighbors, neighbors_sizes):
    s_count, p_count = neighbors.shape
    c2 = coefficient * coefficient
    h = np.zeros((s_count, s_count))
    for s in range(s_count):
        h[s, s] = RIDGE + c2 * neighbors_sizes[s]
        for p in range(p_count):
            n = neighbors[s, p]
            if n < 0:
                continue
            h[s, n] = -c2
    return h


@numba.njit(cache=True)
def _cholesky_solve(lower, rhs):
    """x with L L^T x = rhs: forward then backward substitution."""
    size = rhs.shape[0]
    y = np.empty(size)
    for i in range(size):
        total = rhs[i]
        for k in range(i):
            total -= lower[i, k] * y[k]
        y[i] = total / lower[i, i]
    x = np.empty(size)
    for i in range(size - 1, -1, -1):
        total = y[i]
        for k in range(i + 1, size):
            total -= lower[k, i] * x[k]
        x[i] = total / lower[i, i]
    return x


@numba.njit(cache=True)
def _reconstruction(curvature_matrix, regularization_matrix, data_vector):
    lower = np.linalg.cholesky(curvature_matrix + regularization_matrix)
    return _cholesky_solve(lower, data_vector)


@numba.njit(cache=True)
def _noise_normalization(noise):
    total = 0.0
    for k in range(noise.shape[0]):
        total += 2.0 * math.log(TWO_PI * noise[k] * noise[k])
    return total


@numba.njit(cache=True)
def _chi2_data(vis_real, vis_imag, noise):
    total = 0.0
    for k in range(noise.shape[0]):
        total += (vis_real[k] * vis_real[k] + vis_imag[k] * vis_imag[k]) / (noise[k] * noise[k])
    return total


@numba.njit(cache=True)
def _log_evidence(curvature, regularization, data, chi2_data, noise):
    """SPEC section 2's log evidence from F, H, D and chi2_data: the final step
    of this backend's two log_evidence implementations."""
    chol_h = np.linalg.cholesky(regularization)
    chol_fh = np.linalg.cholesky(curvature + regularization)
    source = _cholesky_solve(chol_fh, data)
    s_dot_d = 0.0
    log_det_h = 0.0
    log_det_fh = 0.0
    for s in range(data.shape[0]):
        s_dot_d += source[s] * data[s]
        log_det_h += math.log(chol_h[s, s])
        log_det_fh += math.log(chol_fh[s, s])
    return -0.5 * (chi2_data - s_dot_d + _noise_normalization(noise)) + log_det_h - log_det_fh


@implements("regularization_matrix", "loop", Cost("flop", lambda S, P, **_: S * P + S * S))
def regularization_matrix_loop(coefficient, neighbors, neighbors_sizes):
    """The regularization matrix by a serial loop over the neighbour lists.

    See reference.regularization_matrix for the math. Padding slots (-1) are
    skipped.

    Cost: S P writes; memory S^2.
    """
    return _regularization_matrix(coefficient, neighbors, neighbors_sizes)


@implements("reconstruction", "cholesky", Cost("flop", lambda S, **_: S**3 / 3 + 2 * S * S))
def reconstruction_cholesky(curvature_matrix, regularization_matrix, data_vector):
    """s = (F + H)^-1 D by Numba's LAPACK Cholesky and explicit substitutions.

    See reference.reconstruction for the math. np.linalg.cholesky inside njit
    (LAPACK through SciPy); the two triangular solves are plain loops.

    Cost: S^3 / 3 + 2 S^2; memory S^2.
    """
    return _reconstruction(curvature_matrix, regularization_matrix, data_vector)


@implements("noise_normalization", "loop", Cost("trig", lambda K, **_: K))
def noise_normalization_loop(noise):
    """The Gaussian normalisation as a compiled loop over K.

    See reference.noise_normalization for the math.

    Cost: K logarithms; memory O(1).
    """
    return float(_noise_normalization(noise))


@implements("log_evidence", "raw", Cost("trig", lambda Ny, Nx, K, M, **_: 2 * Ny * Nx * K + 2 * M * K))
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
    """The log evidence from raw inputs: the seeds' pipeline, half offset table then sparse.

    See reference.log_evidence for the math. Composes w_offsets "half",
    dirty_image "direct", data_vector "sparse", curvature_matrix "offsets"
    and regularization_matrix "loop"; W is never formed. Kept as the seeds'
    algorithm, the baseline that lk.Likelihood is measured against.

    Cost: ~2 Ny Nx K + M K trigonometric calls, M^2 B + M B S for F, S^3 / 3
    per Cholesky (two); memory M S + S^2.
    """
    ny, nx = shape_native
    vis_real = np.ascontiguousarray(visibilities.real)
    vis_imag = np.ascontiguousarray(visibilities.imag)
    table = _w_offsets_half(uv, noise, pixel_scale * ARCSEC_TO_RADIANS, ny, nx)
    image = _dirty_image(grid, uv, noise, vis_real, vis_imag)
    data = _data_vector(image, pix_indexes, pix_weights, n_sources)
    curvature = _curvature_offsets(table, native_index, pix_indexes, pix_weights, n_sources)
    regularization = _regularization_matrix(coefficient, neighbors, neighbors_sizes)
    return float(_log_evidence(curvature, regularization, data, _chi2_data(vis_real, vis_imag, noise), noise))


@implements(
    "log_evidence", "tiled", Cost("flop", lambda M, B, S, **_: M * M * B + 2 * M * B * S + 2 * S**3 / 3)
)
def log_evidence_tiled(
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
    """The log evidence from a precomputed offset table and dirty image.

    See reference.log_evidence for the math. What a sampler re-evaluates per
    call: the table and the dirty image do not depend on the mapping or the
    coefficient, so only data vector, curvature, regularization and the
    Cholesky factorisations remain.

    Curvature by "tiled" (W's symmetry, never Z nor W).

    Cost: M^2 B / 2 + M B S for F, S^3 / 3 per Cholesky (two), K for
    chi2_data; memory (threads + 1) S^2.
    """
    vis_real = np.ascontiguousarray(visibilities.real)
    vis_imag = np.ascontiguousarray(visibilities.imag)
    data = _data_vector(dirty_image, pix_indexes, pix_weights, n_sources)
    curvature = curvature_matrix_tiled(w_offsets, native_index, pix_indexes, pix_weights, n_sources)
    regularization = _regularization_matrix(coefficient, neighbors, neighbors_sizes)
    return float(_log_evidence(curvature, regularization, data, _chi2_data(vis_real, vis_imag, noise), noise))


# ---------------------------------------------------------------------------
# The seeds' small JIT examples
#
# Outputs are allocated here, in Python (_empty), and passed in: an array
# allocated inside a compiled function costs an extra pass over it (it is
# zero-filled), which for these memory-bound loops is most of the time.


# error_model="numpy": a / 0 gives inf instead of raising, which takes the
# zero check out of the loop so it vectorises (a != 0 is validated first).
@numba.njit(cache=True, error_model="numpy")
def _quadratic_formula_serial(a, b, c, out):
    for i in range(a.shape[0]):
        out[i] = (-b[i] + math.sqrt(b[i] * b[i] - 4.0 * a[i] * c[i])) / (2.0 * a[i])
    return out


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _quadratic_formula_parallel(a, b, c, out):
    for i in numba.prange(a.shape[0]):
        out[i] = (-b[i] + math.sqrt(b[i] * b[i] - 4.0 * a[i] * c[i])) / (2.0 * a[i])
    return out


@numba.njit(cache=True)
def _four(weights, arrays, first):
    """Arrays first..first+3 and their weights; past the end, the last array
    with weight 0 (read, adds nothing), so every pass is a fixed 4-term sum."""
    last = arrays.shape[0] - 1
    a0, a1 = arrays[first], arrays[min(first + 1, last)]
    a2, a3 = arrays[min(first + 2, last)], arrays[min(first + 3, last)]
    w0 = weights[first]
    w1 = weights[first + 1] if first + 1 <= last else 0.0
    w2 = weights[first + 2] if first + 2 <= last else 0.0
    w3 = weights[first + 3] if first + 3 <= last else 0.0
    return a0, a1, a2, a3, w0, w1, w2, w3


@numba.njit(cache=True)
def _fma_serial(weights, arrays, out):
    # Four arrays per pass over out, the innermost loop over elements so it
    # vectorises: out is written once per four arrays (once for the seeds' 4).
    for first in range(0, arrays.shape[0], 4):
        a0, a1, a2, a3, w0, w1, w2, w3 = _four(weights, arrays, first)
        if first == 0:
            for j in range(out.shape[0]):
                out[j] = w0 * a0[j] + w1 * a1[j] + w2 * a2[j] + w3 * a3[j]
        else:
            for j in range(out.shape[0]):
                out[j] += w0 * a0[j] + w1 * a1[j] + w2 * a2[j] + w3 * a3[j]
    return out


@numba.njit(cache=True, parallel=True)
def _fma_parallel(weights, arrays, out):
    for first in range(0, arrays.shape[0], 4):
        a0, a1, a2, a3, w0, w1, w2, w3 = _four(weights, arrays, first)
        if first == 0:
            for j in numba.prange(out.shape[0]):
                out[j] = w0 * a0[j] + w1 * a1[j] + w2 * a2[j] + w3 * a3[j]
        else:
            for j in numba.prange(out.shape[0]):
                out[j] += w0 * a0[j] + w1 * a1[j] + w2 * a2[j] + w3 * a3[j]
    return out


@numba.njit(cache=True)
def _fused_expression_serial(x, out):
    for i in range(x.shape[0]):
        value = x[i]
        out[i] = math.sqrt(value * value + math.sin(value) * math.exp(-value))
    return out


@numba.njit(cache=True, parallel=True)
def _fused_expression_parallel(x, out):
    for i in numba.prange(x.shape[0]):
        value = x[i]
        out[i] = math.sqrt(value * value + math.sin(value) * math.exp(-value))
    return out


# The fused expression with sin and exp as polynomials the compiler can
# vectorise (math.sin and math.exp are scalar libm calls, which keep the
# loop scalar). Constants are derived here, exactly, from pi and log 2 as
# fractions, so no digit is copied from elsewhere.


def _arctan_of_inverse(m: int, terms: int) -> Fraction:
    """arctan(1/m) by its Taylor series, to about 2 * terms * log10(m) digits."""
    return sum(Fraction((-1) ** k, (2 * k + 1) * m ** (2 * k + 1)) for k in range(terms))


#: pi by Machin's formula and log 2 as 2 artanh(1/3), both to over 40 digits.
_PI = 16 * _arctan_of_inverse(5, 40) - 4 * _arctan_of_inverse(239, 15)
_LOG_2 = 2 * sum(Fraction(1, (2 * k + 1) * 3 ** (2 * k + 1)) for k in range(45))


def _split(value: Fraction, bits: int, parts: int) -> tuple[float, ...]:
    """``value`` as a sum of ``parts`` floats, all but the last of ``bits``
    significant bits, so an integer of up to 53 - bits bits times each is exact
    (Cody and Waite's argument reduction)."""
    pieces = []
    for _ in range(parts - 1):
        mantissa, exponent = math.frexp(float(value))
        head = math.ldexp(round(mantissa * 2**bits), exponent - bits)
        pieces.append(head)
        value -= Fraction(head)
    return (*pieces, float(value))


_PI_HALF = _split(_PI / 2, 33, 3)  # k pi/2 exactly for |k| < 2^20
_LOG_2_PARTS = _split(_LOG_2, 42, 2)  # n log 2 exactly for |n| < 2^11
_TWO_OVER_PI = float(2 / _PI)
_ONE_OVER_LOG_2 = float(1 / _LOG_2)
#: Adding and subtracting 1.5 * 2^52 rounds a float of magnitude < 2^51 to
#: an integer, and leaves that integer in the low bits of the sum.
_ROUNDER = 1.5 * 2.0**52
_ROUNDER_BITS = int(np.float64(_ROUNDER).view(np.int64))
#: Taylor coefficients, highest degree first: exp on |r| <= log(2)/2 to
#: degree 13, sin and cos on |r| <= pi/4 to degrees 15 and 16 (as
#: polynomials in r^2). Each truncation is below 1e-16 of the result there.
_EXP = tuple(float(Fraction(1, math.factorial(k))) for k in range(13, -1, -1))
_SIN = tuple(float(Fraction((-1) ** k, math.factorial(2 * k + 1))) for k in range(7, -1, -1))
_COS = tuple(float(Fraction((-1) ** k, math.factorial(2 * k))) for k in range(8, -1, -1))
#: The polynomial path's domain: beyond |x| = 1e5 the reduction by pi/2
#: loses bits; outside [-708, 708] exp(-x) leaves float64's normal range.
#: Elements there take math.sin and math.exp.
VECTOR_SIN_LIMIT = 1e5
VECTOR_EXP_LIMIT = 708.0
#: Elements per vectorised pass (four scratch arrays that stay in L1), and
#: per parallel work item.
VECTOR_CHUNK = 512
VECTOR_BLOCK = 1 << 14


@numba.njit(cache=True, inline="always")
def _horner(coefficients, z):
    total = 0.0
    for coefficient in coefficients:
        total = total * z + coefficient
    return total


# fastmath "contract" only: multiply-adds fuse into FMAs (each one rounding
# instead of two), no reassociation, so the rounding constant still rounds.
@numba.njit(cache=True, fastmath={"contract"})
def _fused_expression_block(x, out, start, stop):
    scale = np.empty(VECTOR_CHUNK)  # exp's rounding sum, then 2^n
    scale_bits = scale.view(np.int64)
    exp_r = np.empty(VECTOR_CHUNK)
    sine = np.empty(VECTOR_CHUNK)
    for first in range(start, stop, VECTOR_CHUNK):
        size = min(VECTOR_CHUNK, stop - first)
        outside = 0
        for i in range(size):
            value = x[first + i]
            # exp(-value) = exp(r) 2^n, n = round(-value / log 2)
            rounded = -value * _ONE_OVER_LOG_2 + _ROUNDER
            n = rounded - _ROUNDER
            r = (-value - n * _LOG_2_PARTS[0]) - n * _LOG_2_PARTS[1]
            scale[i] = rounded
            exp_r[i] = _horner(_EXP, r)
            # sin(value) from r = value - k pi/2, by the quadrant k mod 4
            k = value * _TWO_OVER_PI + _ROUNDER - _ROUNDER
            r = ((value - k * _PI_HALF[0]) - k * _PI_HALF[1]) - k * _PI_HALF[2]
            z = r * r
            sin_r = r * _horner(_SIN, z)
            cos_r = _horner(_COS, z)
            quadrant = k - 4.0 * math.floor(0.25 * k)
            odd = quadrant == 1.0 or quadrant == 3.0
            magnitude = cos_r if odd else sin_r
            sine[i] = -magnitude if quadrant >= 2.0 else magnitude
            outside += (abs(value) > VECTOR_SIN_LIMIT) | (abs(value) > VECTOR_EXP_LIMIT)
        # 2^n from n's bits: the biased exponent field, no float-to-int conversion.
        for i in range(size):
            scale_bits[i] = (scale_bits[i] - _ROUNDER_BITS + 1023) << 52
        for i in range(size):
            value = x[first + i]
            out[first + i] = math.sqrt(value * value + sine[i] * exp_r[i] * scale[i])
        if outside:
            for i in range(size):
                value = x[first + i]
                if abs(value) > VECTOR_SIN_LIMIT or abs(value) > VECTOR_EXP_LIMIT:
                    out[first + i] = math.sqrt(value * value + math.sin(value) * math.exp(-value))
    return out


@numba.njit(cache=True, parallel=True)
def _fused_expression_vectorised(x, out):
    n = x.shape[0]
    for block in numba.prange((n + VECTOR_BLOCK - 1) // VECTOR_BLOCK):
        start = np.int64(block) * VECTOR_BLOCK  # prange indexes are unsigned
        _fused_expression_block(x, out, start, min(start + VECTOR_BLOCK, n))
    return out


@implements("quadratic_formula", "serial", Cost("flop", lambda n, **_: 7 * n))
def quadratic_formula_serial(a, b, c):
    """The seeds' compiled loop, one thread.

    See reference.quadratic_formula for the math. One fused pass, no
    temporaries.

    Cost: n square roots; 32 n bytes moved.
    """
    return _quadratic_formula_serial(a, b, c, _empty(a.shape[0]))


@implements("quadratic_formula", "parallel", Cost("flop", lambda n, **_: 7 * n))
def quadratic_formula_parallel(a, b, c):
    """The seeds' compiled loop with parallel=True and prange.

    See reference.quadratic_formula for the math. Elements split across
    Numba's threads.

    Cost: n square roots; 32 n bytes moved.
    """
    return _quadratic_formula_parallel(a, b, c, _empty(a.shape[0]))


@implements("fma", "serial", Cost("flop", lambda n, W, **_: 2 * W * n))
def fma_serial(weights, arrays):
    """The weighted sum, four arrays per pass over out, one thread.

    See reference.fma for the math. Each pass is one vectorised loop over the
    elements summing four weighted arrays, so out is written ceil(W / 4)
    times (once for the seeds' W = 4) and no temporary exists.

    Cost: W n multiply-adds; 8 (W + 2 ceil(W / 4) - 1) n bytes moved.
    """
    return _fma_serial(weights, arrays, _empty(arrays.shape[1]))


@implements("fma", "parallel", Cost("flop", lambda n, W, **_: 2 * W * n))
def fma_parallel(weights, arrays):
    """The weighted sum, four arrays per pass over out, parallel over elements.

    See reference.fma for the math. As "serial" with prange over the output.

    Cost: W n multiply-adds; 8 (W + 2 ceil(W / 4) - 1) n bytes moved.
    """
    return _fma_parallel(weights, arrays, _empty(arrays.shape[1]))


@implements("fused_expression", "serial", Cost("trig", lambda n, **_: 3 * n))
def fused_expression_serial(x):
    """The fused element-wise expression, one thread.

    See reference.fused_expression for the math. One pass, no temporaries.

    Cost: n sin, exp and sqrt; 16 n bytes moved.
    """
    return _fused_expression_serial(x, _empty(x.shape[0]))


@implements("fused_expression", "parallel", Cost("trig", lambda n, **_: 3 * n))
def fused_expression_parallel(x):
    """The fused element-wise expression, parallel with prange.

    See reference.fused_expression for the math. As "serial", elements split
    across Numba's threads.

    Cost: n sin, exp and sqrt; 16 n bytes moved.
    """
    return _fused_expression_parallel(x, _empty(x.shape[0]))


@implements("fused_expression", "vectorised", Cost("flop", lambda n, **_: 60 * n))
def fused_expression_vectorised(x):
    """The fused expression with sin and exp as polynomials, so the loop is
    SIMD-vectorised; blocks of elements across Numba's threads.

    See reference.fused_expression for the math. exp(-x) = exp(r) 2^n with
    n = round(-x / log 2) and a degree-13 Taylor polynomial on
    |r| <= log(2)/2; sin(x) from r = x - k pi/2 (pi/2 in three parts, Cody
    and Waite) with degree-15 and -16 Taylor polynomials for sin r and cos r
    on |r| <= pi/4 and the quadrant k mod 4; 2^n is built from n's bits. The
    truncation errors are below 1e-16 relative, so both agree with libm to a
    few units in the last place (tests hold them to 1e-13 from -708 to 1e6).
    Elements beyond VECTOR_SIN_LIMIT or VECTOR_EXP_LIMIT take math.sin and
    math.exp. Chunks of VECTOR_CHUNK elements go through three vectorised
    loops (the polynomials, 2^n, the square root) on scratch kept in L1.

    Cost: ~60 flops (mostly FMAs) and one square root per element, in SIMD
    lanes; 16 n bytes moved.
    """
    return _fused_expression_vectorised(x, _empty(x.shape[0]))
