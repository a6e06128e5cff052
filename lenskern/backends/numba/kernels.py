"""The Numba backend's likelihood kernels: SPEC section 2 as nopython loops,
parallel with prange.

Each registered function is a thin Python wrapper over module-level
``numba.njit(cache=True)`` kernels; the math is written once in
:mod:`lenskern.backends.reference`. Inputs arrive validated and converted
(contiguous float64 / int64 / complex128), so the kernels check nothing, but
every ``-1`` padding slot of ``pix_indexes`` and ``neighbors`` is skipped
explicitly: a negative index would silently wrap in compiled code.

Parallel loops never let two iterations write the same element: each
iteration owns a row, an offset pair or an output element.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from lenskern.backends.numba.memory import empty
from lenskern.conventions import ARCSEC_TO_RADIANS, RIDGE, TWO_PI
from lenskern.registry import Cost, implements

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


def _gather(w_offsets, native_index):
    m_count = native_index.shape[0]
    return _gather_into(w_offsets, native_index, empty((m_count, m_count)))


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
    W is allocated on huge pages (memory.HUGE_PAGE_BYTES): at seed-1core
    the write is then bound by first-touch page faults and the memory bus,
    not by index arithmetic.

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
