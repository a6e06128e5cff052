"""The Numba CUDA backend: SPEC section 2 as ``numba.cuda`` kernels on an NVIDIA GPU.

Each registered function is a host wrapper over module-level ``cuda.jit``
kernels; the math is written once in :mod:`lenskern.backends.reference`, and
docstrings here say only what is particular to the GPU algorithm and what it
costs. Inputs arrive validated and converted (contiguous float64 / int64 /
complex128), so the kernels check nothing, but every ``-1`` padding slot of
``pix_indexes`` and ``neighbors`` is skipped explicitly: compiled code
indexes like NumPy, so -1 would silently reach the last element.

Transfers are explicit, and each registered call is three parts
(:func:`_parts`), which the device benchmarks time apart
(:func:`device_parts`, as ``jax_gpu``'s): the inputs placed on the device
(``cuda.to_device``), the launches on device-resident arguments, which
leave their result on the device, and the copy back (``copy_to_host``, after
``cuda.synchronize()``). Kernels that feed each other inside one call
(w_tilde's offset table, the log evidence's F, H and their factors) keep
their intermediates on the device. Index bookkeeping that is O(M B) and
sequential by nature (T regrouped by source pixel, the pixels' linear
positions in the offset table) is done on the host with NumPy while the
inputs are placed, as a sparse library converts indexes before a launch.

Device memory: every device array of this module is allocated by
:func:`_to_device` or :func:`_empty` (outputs zeroed by :func:`_zeros` where a
kernel accumulates into them), which count its bytes in :data:`MEMORY` until
the array is released: live bytes and their peak, per call when reset
before it. The count is the module's own, not an External Memory Management
plugin's: Numba's simulator has no memory managers to plug into
(``NUMBA_ENABLE_CUDASIM=1`` hands out NumPy arrays), so only a count at the
allocation helpers is the same on a GPU and on the simulator the tests run.
It leaves out what Numba allocates itself (a context's own memory, kernels'
local memory) and that Numba frees device memory late, in batches: the
driver may hold more than the count says, never less of lenskern's arrays.

Launches use the configurations named below (:data:`THREADS`,
:data:`MAX_BLOCKS`, :data:`THREADS_2D`, :data:`MAX_BLOCKS_2D`,
:data:`SOLVER_THREADS`). Every kernel walks its work with grid-stride loops,
so it is correct for any grid size; the constants only trade launch width
against occupancy. Under the simulator (``NUMBA_ENABLE_CUDASIM=1``, which
runs every thread as a Python thread) they shrink to a few threads and
blocks, so tests stay fast while still crossing block and stride boundaries.

Races: a thread owns the output elements it writes (a row, an entry and its
mirror, a pixel's slice of Z), except where two threads may add into one
element (the data vector's scatter, block sums), which use
``cuda.atomic.add``. Kernels with ``cuda.syncthreads`` keep every loop that
contains a barrier uniform across the block.

Synchronisation: launches on the default stream run in order, so each kernel
sees its predecessors' writes; each wrapper calls ``cuda.synchronize()``
(where a kernel's error surfaces) before copying back, and returns a NumPy
float64 array or a Python float. Importing this module changes no Numba
setting; :func:`unavailable` makes the backend "missing, with the reason"
where ``numba.cuda`` finds no GPU (the simulator counts as one).
"""

from __future__ import annotations

import inspect
import math
import threading
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import numba
import numpy as np
from numba import cuda

from lenskern.conventions import ARCSEC_TO_RADIANS, RIDGE, TWO_PI
from lenskern.registry import Backend, Cost, implements

#: Whether kernels run on Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1,
#: read when numba.cuda is first imported) rather than on a GPU.
SIMULATOR = bool(numba.config.ENABLE_CUDASIM)

#: Threads per block of the 1-d kernels, and pixels per tile of the curvature:
#: four warps (whole warps, so no lane of a full block idles); small blocks
#: spread a small problem over more SMs (M = 1024 at seed-gpu is 8 blocks of
#: the dirty image), and blocks this small stay resident several to an SM.
#: A power of two, as the block sums' tree reduction needs. 4 on the simulator.
THREADS = 4 if SIMULATOR else 128

#: Most blocks of a 1-d launch: about one full wave of resident blocks of
#: THREADS on an A100 or H100 (108-132 SMs x 16 blocks of 128 threads); the
#: grid-stride loops take any further work, so a launch never asks for more
#: blocks than can run at once. 2 on the simulator (blocks run one by one).
MAX_BLOCKS = 2 if SIMULATOR else 2048

#: Threads per block of the 2-d kernels, (x, y) = (columns, rows): 32 along
#: the contiguous axis, so each warp reads or writes one run of 32 doubles
#: (256 bytes, coalesced), 4 rows for 128 threads in all.
THREADS_2D = (2, 2) if SIMULATOR else (32, 4)

#: Most blocks of a 2-d launch per axis (2048 in all, as MAX_BLOCKS).
MAX_BLOCKS_2D = (2, 2) if SIMULATOR else (64, 32)

#: Threads of the one block that runs a Cholesky factorisation or solve: the
#: column steps need block-wide barriers, hence one block; eight warps share
#: each step's trailing update (up to S^2 / 2 entries), while a barrier over
#: more threads would cost more than the late, small steps gain.
SOLVER_THREADS = 4 if SIMULATOR else 256


def unavailable(device: str) -> str | None:
    """Why numba.cuda cannot run on ``device`` here, or None (the registry asks)."""
    if device != "gpu":
        return f"numba.cuda runs on a GPU, not on the {device}"
    if not cuda.is_available():
        return "numba.cuda sees no CUDA GPU here"
    return None


def _synchronize(result) -> None:
    cuda.synchronize()


def device_parts(function, device: str):
    """A registered call split into its three parts, for the benchmarks that
    time transfers apart from the kernel (the registry asks, as of every
    backend's ``device_parts``): ``to_device(inputs)``, the inputs placed on
    the device (index bookkeeping included; copies are synchronous);
    ``call(placed)``, the launches, their result left on the device and not
    waited on; ``to_host(result)``, waited on and copied back as the whole
    call returns it. None for a function that is not this module's kernel."""
    return getattr(function, "parts", None)


def device_memory(device: str):
    """(reset, peak) of :data:`MEMORY`, the count of this module's device
    arrays: a new peak from the bytes alive, and the bytes at the peak."""
    return MEMORY.reset_peak, lambda: MEMORY.peak


BACKEND = Backend(
    device="gpu",
    gaps={"data_parts": "no GPU NUFFT here (cuFINUFFT is not a dependency): the stream sums on the CPU's"},
    unavailable=unavailable,
    synchronize=_synchronize,
    device_parts=device_parts,
    device_memory=device_memory,
)


# ---------------------------------------------------------------------------
# Launch helpers, transfers and shared kernels


def _blocks(items: int, per_block: int = THREADS) -> int:
    """Blocks of a 1-d launch over ``items`` work items, ``per_block`` per block."""
    return max(1, min(MAX_BLOCKS, -(-items // per_block)))


def _blocks_2d(rows: int, cols: int) -> tuple[int, int]:
    """Blocks of a 2-d launch over a (rows, cols) output, THREADS_2D each."""
    return (
        max(1, min(MAX_BLOCKS_2D[0], -(-cols // THREADS_2D[0]))),
        max(1, min(MAX_BLOCKS_2D[1], -(-rows // THREADS_2D[1]))),
    )


def _host(device_array) -> np.ndarray:
    """Wait for every launched kernel, then copy ``device_array`` to the host."""
    cuda.synchronize()
    return device_array.copy_to_host()


class DeviceMemory:
    """Bytes of the device arrays this module allocated that are still alive,
    and their peak since :meth:`reset_peak` (see the module docstring for
    what the count covers)."""

    def __init__(self) -> None:
        self.in_use = 0
        self.peak = 0
        # finalizers run wherever the last reference goes (the simulator's
        # threads, a garbage collection): the two counters change together
        self._lock = threading.Lock()

    def allocated(self, array):
        """Count ``array`` until it is released; returns it."""
        size = int(array.nbytes)
        with self._lock:
            self.in_use += size
            self.peak = max(self.peak, self.in_use)
        weakref.finalize(array, self._released, size)
        return array

    def _released(self, size: int) -> None:
        with self._lock:
            self.in_use -= size

    def reset_peak(self) -> int:
        """Start a new peak from the bytes alive now; returns them."""
        with self._lock:
            self.peak = self.in_use
            return self.in_use


#: The device memory of this module's arrays: ``MEMORY.reset_peak()`` before
#: a call, ``MEMORY.peak`` after it is the call's peak in bytes, inputs on
#: the device included.
MEMORY = DeviceMemory()


def _to_device(array: np.ndarray):
    """A copy of the host ``array`` on the device, counted in :data:`MEMORY`."""
    return MEMORY.allocated(cuda.to_device(np.ascontiguousarray(array)))


def _empty(shape, dtype=np.float64):
    """An uninitialised device array, counted in :data:`MEMORY`."""
    return MEMORY.allocated(cuda.device_array(shape, dtype=dtype))


def _place(**inputs) -> dict[str, Any]:
    """Every array input copied to the device; scalars as they are."""
    return {name: _to_device(v) if isinstance(v, np.ndarray) else v for name, v in inputs.items()}


def _parts(place: Callable[..., dict] | None = None, finish: Callable[[np.ndarray], Any] | None = None):
    """The decorated function, which launches kernels on device-resident
    arguments and returns its result on the device, as a registered call:
    ``place(**inputs)`` (default: :func:`_place`) makes its arguments from
    the host inputs, and ``finish`` turns the copied-back result into what
    the call returns (default: the array itself). The call's inputs are
    ``place``'s parameters, or the decorated function's own where every input
    is merely copied; it keeps the decorated function's name and docstring,
    and carries the three parts as ``parts`` (:func:`device_parts`)."""

    def decorate(launch: Callable) -> Callable:
        placing = place or _place

        def to_host(result):
            host = _host(result)
            return finish(host) if finish else host

        def call(**inputs):
            return to_host(launch(**placing(**inputs)))

        call.__signature__ = inspect.signature(place or launch)
        for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(call, attribute, getattr(launch, attribute))
        call.parts = (lambda inputs: placing(**inputs), lambda placed: launch(**placed), to_host)
        return call

    return decorate


@cuda.jit(cache=True)
def _zero_1d(out):
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = 0.0


@cuda.jit(cache=True)
def _zero_2d(out):
    x, y = cuda.grid(2)
    step_x, step_y = cuda.gridsize(2)
    for i in range(y, out.shape[0], step_y):
        for j in range(x, out.shape[1], step_x):
            out[i, j] = 0.0


def _zeros(shape):
    """A float64 device array filled with zeros by a kernel (no host copy)."""
    out = _empty(shape)
    if len(out.shape) == 1:
        _zero_1d[_blocks(out.shape[0]), THREADS](out)
    else:
        _zero_2d[_blocks_2d(*out.shape), THREADS_2D](out)
    return out


@cuda.jit(device=True)
def _block_sum_into(value, out, slot):
    """Add the sum of every thread's ``value`` over the block to ``out[slot]``.

    A tree reduction in shared memory (blockDim.x must be THREADS, a power of
    two), then one atomic add per block. Every thread of the block must call it.
    """
    cache = cuda.shared.array(THREADS, numba.float64)
    tx = cuda.threadIdx.x
    cache[tx] = value
    cuda.syncthreads()
    half = THREADS // 2
    while half > 0:
        if tx < half:
            cache[tx] += cache[tx + half]
        cuda.syncthreads()
        half //= 2
    if tx == 0:
        cuda.atomic.add(out, slot, cache[0])
    cuda.syncthreads()


@cuda.jit(cache=True)
def _inverse_variance(noise, out):
    for k in range(cuda.grid(1), noise.shape[0], cuda.gridsize(1)):
        out[k] = 1.0 / (noise[k] * noise[k])


def _device_inverse_variance(noise):
    inverse = _empty(noise.shape[0])
    _inverse_variance[_blocks(noise.shape[0]), THREADS](noise, inverse)
    return inverse


# ---------------------------------------------------------------------------
# w_tilde and the offset table


@cuda.jit(cache=True)
def _w_tilde_direct(grid, uv, inverse, w):
    # Thread (i, j) computes the pair only for j >= i and writes it and its
    # mirror; (j, i) with j > i is skipped, so each entry has one writer.
    x, y = cuda.grid(2)
    step_x, step_y = cuda.gridsize(2)
    m_count = grid.shape[0]
    for i in range(y, m_count, step_y):
        for j in range(x, m_count, step_x):
            if j < i:
                continue
            dy = TWO_PI * (grid[i, 0] - grid[j, 0])
            dx = TWO_PI * (grid[i, 1] - grid[j, 1])
            total = 0.0
            for k in range(uv.shape[0]):
                total += math.cos(dx * uv[k, 0] + dy * uv[k, 1]) * inverse[k]
            w[i, j] = total
            w[j, i] = total


@cuda.jit(cache=True)
def _w_offsets_half(uv, inverse, scale, ny, nx, table):
    # The half table is the row-major tail of the full one from its centre:
    # dr = 0 with dc >= 0, then dr > 0 with every dc. Thread n owns offset n
    # of that tail and its mirror (-dr, -dc), which lies in the head.
    width = 2 * nx - 1
    centre = (ny - 1) * width + nx - 1
    for n in range(cuda.grid(1), nx + (ny - 1) * width, cuda.gridsize(1)):
        flat = centre + n
        row = flat // width
        col = flat - row * width
        dr = row - (ny - 1)
        dc = col - (nx - 1)
        total = 0.0
        for k in range(uv.shape[0]):
            total += math.cos(scale * (dc * uv[k, 0] - dr * uv[k, 1])) * inverse[k]
        table[row, col] = total
        table[2 * (ny - 1) - row, 2 * (nx - 1) - col] = total


@cuda.jit(cache=True)
def _gather(table, native_index, w):
    ny = (table.shape[0] + 1) // 2
    nx = (table.shape[1] + 1) // 2
    x, y = cuda.grid(2)
    step_x, step_y = cuda.gridsize(2)
    m_count = native_index.shape[0]
    for i in range(y, m_count, step_y):
        row = native_index[i, 0] + ny - 1
        col = native_index[i, 1] + nx - 1
        for j in range(x, m_count, step_x):
            w[i, j] = table[row - native_index[j, 0], col - native_index[j, 1]]


def _device_offsets(uv, noise, pixel_scale, shape_native):
    """The offset table on the device (see w_offsets_direct)."""
    ny, nx = (int(n) for n in shape_native)
    inverse = _device_inverse_variance(noise)
    table = _empty((2 * ny - 1, 2 * nx - 1))
    half = nx + (ny - 1) * (2 * nx - 1)
    scale = TWO_PI * pixel_scale * ARCSEC_TO_RADIANS
    _w_offsets_half[_blocks(half), THREADS](uv, inverse, scale, ny, nx, table)
    return table


def _device_gather(d_table, native_index):
    m_count = native_index.shape[0]
    w = _empty((m_count, m_count))
    _gather[_blocks_2d(m_count, m_count), THREADS_2D](d_table, native_index, w)
    return w


@implements("w_tilde", "direct", Cost("trig", lambda M, K, **_: M * (M + 1) / 2 * K))
@_parts()
def w_tilde_direct(grid, uv, noise):
    """Direct sum over K per pixel pair, one thread per pair of the upper triangle.

    See reference.w_tilde for the math. A 2-d grid over (i, j); threads with
    j >= i sum over K and write W_ij and its mirror W_ji, the others return
    at once (whole warps below the diagonal finish without work). 1 / sigma^2
    is computed once by a kernel; the K vectors are read at one address by a
    whole warp, a broadcast from cache.

    Cost: M(M+1)/2 K cosines; memory M^2 on the device.
    """
    m_count = grid.shape[0]
    inverse = _device_inverse_variance(noise)
    w = _empty((m_count, m_count))
    _w_tilde_direct[_blocks_2d(m_count, m_count), THREADS_2D](grid, uv, inverse, w)
    return w


@implements("w_tilde", "offsets", Cost("trig", lambda Ny, Nx, K, **_: 2 * Ny * Nx * K))
@_parts()
def w_tilde_offsets(uv, noise, pixel_scale, shape_native, native_index):
    """W gathered from the half offset table, both on the device: K cosines per offset.

    See reference.w_tilde for the math. Runs w_offsets "direct" and then
    w_tilde_from_offsets "gather"; the table never leaves the device.

    Cost: ~2 Ny Nx K cosines plus M^2 gathered reads; memory M^2 + 4 Ny Nx
    on the device.
    """
    d_table = _device_offsets(uv, noise, pixel_scale, shape_native)
    return _device_gather(d_table, native_index)


@implements("w_offsets", "direct", Cost("trig", lambda Ny, Nx, K, **_: Ny * (2 * Nx - 1) * K))
@_parts()
def w_offsets_direct(uv, noise, pixel_scale, shape_native):
    """The seeds' direct table: one thread per offset of the half dr >= 0, summed over K.

    See reference.w_offsets for the math. Thread n takes the n-th offset from
    the table's centre in row-major order (dr = 0, dc >= 0, then dr > 0),
    sums over K, and writes the entry and its mirror (-dr, -dc), since the
    table is even: every entry has one writer.

    Cost: (Nx + (Ny-1)(2Nx-1)) K ~ 2 Ny Nx K cosines; memory 4 Ny Nx.
    """
    return _device_offsets(uv, noise, pixel_scale, shape_native)


@implements("w_tilde_from_offsets", "gather", Cost("flop", lambda M, **_: M * M))
@_parts()
def w_tilde_from_offsets_gather(w_offsets, native_index):
    """W expanded from the offset table, one thread per entry.

    See reference.w_tilde_from_offsets for the math. A 2-d grid with the
    threads of a warp along a row of W, so each warp writes 32 consecutive
    doubles; the table's reads hit the cache (it is 4 Ny Nx floats).

    Cost: M^2 reads and writes, no arithmetic (bandwidth-bound); memory M^2.
    """
    return _device_gather(w_offsets, native_index)


# ---------------------------------------------------------------------------
# Dirty image, mapping, data vector


@cuda.jit(cache=True)
def _weighted_visibilities(visibilities, noise, real, imag):
    for k in range(cuda.grid(1), noise.shape[0], cuda.gridsize(1)):
        inverse = 1.0 / (noise[k] * noise[k])
        real[k] = visibilities[k].real * inverse
        imag[k] = visibilities[k].imag * inverse


@cuda.jit(cache=True)
def _dirty_image(grid, uv, real, imag, image):
    for i in range(cuda.grid(1), grid.shape[0], cuda.gridsize(1)):
        y = TWO_PI * grid[i, 0]
        x = TWO_PI * grid[i, 1]
        total = 0.0
        for k in range(uv.shape[0]):
            phase = x * uv[k, 0] + y * uv[k, 1]
            total += real[k] * math.cos(phase) - imag[k] * math.sin(phase)
        image[i] = total


@cuda.jit(cache=True)
def _mapping_scatter(pix_indexes, pix_weights, t):
    # Thread i owns row i of T (zeroed before the launch).
    for i in range(cuda.grid(1), pix_indexes.shape[0], cuda.gridsize(1)):
        for b in range(pix_indexes.shape[1]):
            s = pix_indexes[i, b]
            if s < 0:
                continue
            t[i, s] += pix_weights[i, b]


@cuda.jit(cache=True)
def _data_vector_scatter(dirty_image, pix_indexes, pix_weights, d):
    # One thread per slot (i, b); slots of different pixels may map to the
    # same source pixel, hence the atomic add.
    b_count = pix_indexes.shape[1]
    for slot in range(cuda.grid(1), pix_indexes.shape[0] * b_count, cuda.gridsize(1)):
        i = slot // b_count
        b = slot - i * b_count
        s = pix_indexes[i, b]
        if s < 0:
            continue
        cuda.atomic.add(d, s, pix_weights[i, b] * dirty_image[i])


def _device_data_vector(d_dirty, d_indexes, d_weights, n_sources):
    d = _zeros(n_sources)
    slots = d_indexes.shape[0] * d_indexes.shape[1]
    _data_vector_scatter[_blocks(slots), THREADS](d_dirty, d_indexes, d_weights, d)
    return d


@implements("dirty_image", "direct", Cost("trig", lambda M, K, **_: 2 * M * K))
@_parts()
def dirty_image_direct(grid, uv, noise, visibilities):
    """Direct sum over K, one thread per pixel.

    See reference.dirty_image for the math. A first kernel forms Re V /
    sigma^2 and Im V / sigma^2 once; each pixel's thread then sums one sine,
    one cosine and two multiply-adds per visibility. The whole warp reads the
    same visibility at once (a broadcast from cache): the kernel is bound by
    double-precision sin and cos, not by those reads.

    Cost: M K sines and cosines; memory M + 2 K on the device.
    """
    k_count = noise.shape[0]
    real = _empty(k_count)
    imag = _empty(k_count)
    _weighted_visibilities[_blocks(k_count), THREADS](visibilities, noise, real, imag)
    image = _empty(grid.shape[0])
    _dirty_image[_blocks(grid.shape[0]), THREADS](grid, uv, real, imag, image)
    return image


@implements("mapping_matrix", "scatter", Cost("flop", lambda M, B, S, **_: M * B + M * S))
@_parts()
def mapping_matrix_scatter(pix_indexes, pix_weights, n_sources):
    """The dense mapping matrix: zeroed on the device, then one thread per image pixel.

    See reference.mapping_matrix for the math. Thread i adds its B slots into
    its own row of T, skipping -1 slots: no two threads write one element.

    Cost: M S writes to zero T, M B adds; memory M S.
    """
    t = _zeros((pix_indexes.shape[0], n_sources))
    _mapping_scatter[_blocks(pix_indexes.shape[0]), THREADS](pix_indexes, pix_weights, t)
    return t


@implements("data_vector", "sparse", Cost("flop", lambda M, B, **_: 2 * M * B))
@_parts()
def data_vector_sparse(dirty_image, pix_indexes, pix_weights, n_sources):
    """D = T^T d from the sparse mapping by an atomic scatter, never forming T.

    See reference.data_vector for the math. One thread per slot (i, b),
    -1 slots skipped; ``cuda.atomic.add`` into D, since slots of different
    pixels share source pixels (the order of the adds, and so the last bits,
    may vary between runs).

    Cost: M B multiply-adds and atomic adds; memory S.
    """
    return _device_data_vector(dirty_image, pix_indexes, pix_weights, n_sources)


# ---------------------------------------------------------------------------
# Curvature matrix


def _linear_positions(w_offsets, native_index):
    """(table, lin, centre) with W_ij = table[centre + lin_i - lin_j]: the
    offset table flattened and each pixel's linear position in it."""
    width = w_offsets.shape[1]
    ny = (w_offsets.shape[0] + 1) // 2
    lin = np.ascontiguousarray(native_index[:, 0] * width + native_index[:, 1])
    return np.ascontiguousarray(w_offsets).ravel(), lin, (ny - 1) * width + (width - 1) // 2


def _source_columns(pix_indexes, pix_weights, lin, n_sources):
    """T by columns (CSC), on the host: entries start[s]:start[s+1] of (pixel,
    position, weight) list the image pixels that map to source s, in
    increasing pixel order (a stable counting sort of the valid slots, O(M B)).
    The arrays hold at least one entry, so none is empty on the device."""
    pixels, slots = np.nonzero(pix_indexes >= 0)  # row-major: pixels ascending
    sources = pix_indexes[pixels, slots]
    order = np.argsort(sources, kind="stable")
    start = np.zeros(n_sources + 1, np.int64)
    np.cumsum(np.bincount(sources, minlength=n_sources), out=start[1:])
    pixel = pixels[order].astype(np.int64)
    weight = pix_weights[pixels, slots][order]
    if pixel.size == 0:  # every slot padded: F = 0, but keep the arrays non-empty
        pixel, weight = np.zeros(1, np.int64), np.zeros(1)
    return start, pixel, np.ascontiguousarray(lin[pixel]), np.ascontiguousarray(weight)


@cuda.jit(cache=True)
def _curvature_half_products(table, lin, centre, start, pixel, position, weight, zh):
    """Z_h = (L + D/2) T for W = L + D + L^T: Z_h[i, s] = sum over the entries
    (j, w) of T's column s with j < i of w W_ij, plus w W_ii / 2 for j = i.

    Work item = (tile of TILE consecutive pixels, source s), one per block
    at a time; thread r owns pixel i = tile * TILE + r and writes Z_h[i, s]
    alone. The column's entries are staged through shared memory TILE at a
    time and read by every thread; the loop over chunks is uniform across the
    block (its bounds are read from global memory by all threads alike), so
    the barriers are always reached by every thread.
    """
    s_pixel = cuda.shared.array(THREADS, numba.int64)
    s_position = cuda.shared.array(THREADS, numba.int64)
    s_weight = cuda.shared.array(THREADS, numba.float64)
    tx = cuda.threadIdx.x
    m_count = lin.shape[0]
    n_sources = zh.shape[1]
    n_tiles = (m_count + THREADS - 1) // THREADS
    for item in range(cuda.blockIdx.x, n_tiles * n_sources, cuda.gridDim.x):
        tile = item // n_sources
        s = item - tile * n_sources
        first = tile * THREADS
        # Conditional expressions rather than min(): Numba builds min() for
        # CUDA as a device-function overload, which compiling to PTX without a
        # GPU (tests/backends/test_cuda.py) cannot do.
        last = first + THREADS if first + THREADS < m_count else m_count
        i = first + tx
        active = i < m_count
        at = centre + lin[i] if active else 0
        acc = 0.0
        base = start[s]
        end = start[s + 1]
        # Entries at or past the tile's last pixel add nothing to any row.
        while base < end and pixel[base] < last:
            e = base + tx
            if e < end:
                s_pixel[tx] = pixel[e]
                s_position[tx] = position[e]
                s_weight[tx] = weight[e]
            cuda.syncthreads()
            if active:
                for q in range(THREADS if base + THREADS < end else end - base):
                    j = s_pixel[q]
                    if j > i:
                        break  # the column is sorted by pixel
                    value = s_weight[q] * table[at - s_position[q]]
                    acc += value if j < i else 0.5 * value
            cuda.syncthreads()
            base += THREADS
        if active:
            zh[i, s] = acc


@cuda.jit(cache=True)
def _project_columns(start, pixel, weight, zh, g):
    # G[s, t] = sum over entries (j, w) of column s of w Z_h[j, t]: thread
    # (s, t) owns G[s, t]; a warp runs along t, reading rows of Z_h in runs.
    x, y = cuda.grid(2)
    step_x, step_y = cuda.gridsize(2)
    n_sources = g.shape[0]
    for s in range(y, n_sources, step_y):
        for t in range(x, n_sources, step_x):
            total = 0.0
            for e in range(start[s], start[s + 1]):
                total += weight[e] * zh[pixel[e], t]
            g[s, t] = total


@cuda.jit(cache=True)
def _symmetrise(g, f):
    x, y = cuda.grid(2)
    step_x, step_y = cuda.gridsize(2)
    for s in range(y, g.shape[0], step_y):
        for t in range(x, g.shape[1], step_x):
            f[s, t] = g[s, t] + g[t, s]


class _Columns(NamedTuple):
    """The curvature's inputs on the device: the flattened offset table, the
    pixels' linear positions in it and its centre, and T by columns (CSC)."""

    table: Any
    lin: Any
    centre: int
    start: Any
    pixel: Any
    position: Any
    weight: Any
    n_sources: int


def _place_curvature(w_offsets, native_index, pix_indexes, pix_weights, n_sources) -> dict[str, Any]:
    """The host's index bookkeeping (O(M B)), then its arrays copied to the device."""
    table, lin, centre = _linear_positions(w_offsets, native_index)
    start, pixel, position, weight = _source_columns(pix_indexes, pix_weights, lin, n_sources)
    columns = _Columns(_to_device(table), _to_device(lin), centre, _to_device(start), _to_device(pixel),
                       _to_device(position), _to_device(weight), int(n_sources))  # fmt: skip
    return {"columns": columns}


def _device_curvature(columns: _Columns):
    """F = G + G^T, G = T^T (L + D/2) T, on the device (see curvature_matrix_tiled)."""
    n_sources = columns.n_sources
    m_count = columns.lin.shape[0]
    zh = _empty((m_count, n_sources))
    items = -(-m_count // THREADS) * n_sources
    _curvature_half_products[_blocks(items, 1), THREADS](
        columns.table, columns.lin, columns.centre, columns.start, columns.pixel,
        columns.position, columns.weight, zh,
    )  # fmt: skip
    g = _empty((n_sources, n_sources))
    f = _empty((n_sources, n_sources))
    launch = _blocks_2d(n_sources, n_sources), THREADS_2D
    _project_columns[launch](columns.start, columns.pixel, columns.weight, zh, g)
    _symmetrise[launch](g, f)
    return f


@implements("curvature_matrix", "tiled", Cost("flop", lambda M, B, S, **_: M * M * B + 2 * M * B * S))
@_parts(place=_place_curvature)
def curvature_matrix_tiled(columns):
    """F = G + G^T with G = T^T (L + D/2) T, W = L + D + L^T read from the offset table.

    See reference.curvature_matrix for the math. Three kernels, W never formed:

    1. Z_h = (L + D/2) T (M x S): one work item per (tile of THREADS
       consecutive image pixels, source pixel s), a block per item at a time.
       T is regrouped by source pixel on the host (CSC, pixels ascending); the
       block stages column s's entries (pixel j, its table position, weight)
       through shared memory and each thread, owning one pixel i of the tile,
       adds w W_ij for the entries with j < i (half of W_ii for j = i),
       reading W_ij = table[centre + lin_i - lin_j]. Consecutive threads hold
       consecutive pixels, so for a tile within one image row a warp reads one
       contiguous run of the table (it fits in L2: 130 KB at seed-1core,
       2.9 MB at science). Each (i, s) has one writer: no atomics.
    2. G = T^T Z_h: one thread per (s, t), summing column s's entries
       w Z_h[j, t]; a warp runs along t, so its reads of Z_h are coalesced.
    3. F = G + G^T, one thread per entry (exactly symmetric).

    Why this shape: W's symmetry halves the dominant M^2 B term, as in
    numba.tiled. A block per pair of source pixels (s1 <= s2) summing
    w w' W_jj' over both columns' entries needs no Z but reads (M B)^2 / 2
    table entries, B times more: 3x at B = 3, 256x at seed-gpu (B = S = 256).
    Items of (tile, source) rather than whole tiles give n_tiles x S blocks'
    worth of parallelism (32 x 256 at seed-1core, where 32 tiles alone would
    leave most of a GPU's SMs idle), and the GPU's block scheduler balances
    the triangle's unequal items.

    Cost: M^2 B / 2 + M B S multiply-adds, M^2 B / 2 table reads; memory
    M S (Z_h) + 2 S^2 + 3 M B on the device.
    """
    return _device_curvature(columns)


# ---------------------------------------------------------------------------
# Regularization, Cholesky, reconstruction, log evidence


@cuda.jit(cache=True)
def _regularization(c2, neighbors, neighbors_sizes, h):
    # Thread s owns row s of H (zeroed before the launch).
    for s in range(cuda.grid(1), neighbors.shape[0], cuda.gridsize(1)):
        h[s, s] = RIDGE + c2 * neighbors_sizes[s]
        for p in range(neighbors.shape[1]):
            n = neighbors[s, p]
            if n < 0:
                continue
            h[s, n] = -c2


def _place_neighbors(coefficient, neighbors, neighbors_sizes) -> dict[str, Any]:
    """The regularization's inputs on the device."""
    if neighbors.shape[1] == 0:  # no neighbour slots: keep the device array non-empty, all padding
        neighbors = np.full((neighbors.shape[0], 1), -1, np.int64)
    return _place(coefficient=coefficient, neighbors=neighbors, neighbors_sizes=neighbors_sizes)


def _device_regularization(coefficient, neighbors, neighbors_sizes):
    s_count = neighbors.shape[0]
    h = _zeros((s_count, s_count))
    _regularization[_blocks(s_count), THREADS](float(coefficient) ** 2, neighbors, neighbors_sizes, h)
    return h


@cuda.jit(cache=True)
def _add(a, b, out):
    x, y = cuda.grid(2)
    step_x, step_y = cuda.gridsize(2)
    for i in range(y, a.shape[0], step_y):
        for j in range(x, a.shape[1], step_x):
            out[i, j] = a[i, j] + b[i, j]


@cuda.jit(cache=True)
def _cholesky(a, status, slot):
    """Lower Cholesky factor of ``a`` in place (right-looking, one block).

    Column j: every thread reads the pivot; the rows below are scaled; after
    a barrier the trailing lower triangle is updated, one thread per entry,
    and the diagonal is written. A pivot that is not positive stops every
    thread at the same j (they all read the same value) and records j + 1 in
    ``status[slot]``; the upper triangle is left as it was.
    """
    n = a.shape[0]
    tx = cuda.threadIdx.x
    step = cuda.blockDim.x
    for j in range(n):
        pivot = a[j, j]
        if not pivot > 0.0:
            if tx == 0:
                status[slot] = j + 1
            break
        root = math.sqrt(pivot)
        for i in range(j + 1 + tx, n, step):
            a[i, j] = a[i, j] / root
        cuda.syncthreads()
        m = n - j - 1
        for q in range(tx, m * m, step):
            i = j + 1 + q // m
            k = j + 1 + q % m
            if k <= i:
                a[i, k] -= a[i, j] * a[k, j]
        if tx == 0:
            a[j, j] = root  # every thread read the pivot before the barrier above
        cuda.syncthreads()


@cuda.jit(cache=True)
def _cholesky_solve(lower, rhs, x):
    """x with L L^T x = rhs (one block): forward, then backward substitution
    by columns, each step's updates shared by the block's threads."""
    n = lower.shape[0]
    tx = cuda.threadIdx.x
    step = cuda.blockDim.x
    for i in range(tx, n, step):
        x[i] = rhs[i]
    cuda.syncthreads()
    for j in range(n):
        value = x[j] / lower[j, j]
        cuda.syncthreads()  # every thread has read x[j] before it is replaced
        if tx == 0:
            x[j] = value
        for i in range(j + 1 + tx, n, step):
            x[i] -= lower[i, j] * value
        cuda.syncthreads()
    for j in range(n - 1, -1, -1):
        value = x[j] / lower[j, j]
        cuda.syncthreads()
        if tx == 0:
            x[j] = value
        for i in range(tx, j, step):
            x[i] -= lower[j, i] * value
        cuda.syncthreads()


def _factor(matrices) -> None:
    """Cholesky-factor each device matrix in place; LinAlgError if one is not
    positive definite (checked on the host before anything reads the factors)."""
    status = _to_device(np.zeros(len(matrices), np.int64))
    for slot, matrix in enumerate(matrices):
        _cholesky[1, SOLVER_THREADS](matrix, status, slot)
    if _host(status).any():
        raise np.linalg.LinAlgError("matrix is not positive definite")


@cuda.jit(cache=True)
def _noise_normalization(noise, out):
    total = 0.0
    for k in range(cuda.grid(1), noise.shape[0], cuda.gridsize(1)):
        total += 2.0 * math.log(TWO_PI * noise[k] * noise[k])
    _block_sum_into(total, out, 0)


@cuda.jit(cache=True)
def _visibility_sums(visibilities, noise, out):
    # out[0] += chi2_data, out[1] += noise_normalization
    chi2 = 0.0
    normalization = 0.0
    for k in range(cuda.grid(1), noise.shape[0], cuda.gridsize(1)):
        variance = noise[k] * noise[k]
        value = visibilities[k]
        chi2 += (value.real * value.real + value.imag * value.imag) / variance
        normalization += 2.0 * math.log(TWO_PI * variance)
    _block_sum_into(chi2, out, 0)
    _block_sum_into(normalization, out, 1)


@cuda.jit(cache=True)
def _evidence_sums(source, data, chol_h, chol_fh, out):
    # out[2] += s . D, out[3] += sum log diag chol(H), out[4] += sum log diag chol(F + H)
    s_dot_d = 0.0
    log_det_h = 0.0
    log_det_fh = 0.0
    for s in range(cuda.grid(1), source.shape[0], cuda.gridsize(1)):
        s_dot_d += source[s] * data[s]
        log_det_h += math.log(chol_h[s, s])
        log_det_fh += math.log(chol_fh[s, s])
    _block_sum_into(s_dot_d, out, 2)
    _block_sum_into(log_det_h, out, 3)
    _block_sum_into(log_det_fh, out, 4)


@implements("regularization_matrix", "loop", Cost("flop", lambda S, P, **_: S * P + S * S))
@_parts(place=_place_neighbors)
def regularization_matrix_loop(coefficient, neighbors, neighbors_sizes):
    """The regularization matrix: zeroed on the device, then one thread per source row.

    See reference.regularization_matrix for the math. Thread s writes the
    diagonal and the neighbours of its own row, skipping -1 slots.

    Cost: S^2 writes to zero H, S P writes; memory S^2.
    """
    return _device_regularization(coefficient, neighbors, neighbors_sizes)


@implements("reconstruction", "cholesky", Cost("flop", lambda S, **_: S**3 / 3 + 2 * S * S))
@_parts()
def reconstruction_cholesky(curvature_matrix, regularization_matrix, data_vector):
    """s = (F + H)^-1 D by a one-block right-looking Cholesky and substitutions.

    See reference.reconstruction for the math. F + H is formed and factored
    in place on the device by one block of SOLVER_THREADS (each column step
    needs a block-wide barrier); the two triangular solves go by columns
    in the same way. A non-positive pivot raises LinAlgError.

    Cost: S^3 / 3 + 2 S^2 multiply-adds in 3 S barrier-separated column
    steps; memory 2 S^2.
    """
    s_count = data_vector.shape[0]
    a = _empty((s_count, s_count))
    _add[_blocks_2d(s_count, s_count), THREADS_2D](curvature_matrix, regularization_matrix, a)
    _factor([a])
    source = _empty(s_count)
    _cholesky_solve[1, SOLVER_THREADS](a, data_vector, source)
    return source


def _scalar(host: np.ndarray) -> float:
    return float(host[0])


@implements("noise_normalization", "reduce", Cost("trig", lambda K, **_: K))
@_parts(finish=_scalar)
def noise_normalization_reduce(noise):
    """The Gaussian normalisation by a grid-stride sum and block reductions.

    See reference.noise_normalization for the math. Each thread sums its
    share of the logarithms, each block reduces in shared memory and adds its
    total atomically (so the last bits may vary between runs).

    Cost: K logarithms; memory O(blocks).
    """
    out = _zeros(1)
    _noise_normalization[_blocks(noise.shape[0]), THREADS](noise, out)
    return out


def _place_evidence(
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
) -> dict[str, Any]:
    """The evidence's inputs on the device: the curvature's and the
    regularization's, and the arrays its own kernels read."""
    return {
        **_place_curvature(w_offsets, native_index, pix_indexes, pix_weights, n_sources),
        **_place_neighbors(coefficient, neighbors, neighbors_sizes),
        **_place(dirty_image=dirty_image, visibilities=visibilities, noise=noise, pix_indexes=pix_indexes,
                 pix_weights=pix_weights),
    }  # fmt: skip


def _evidence(sums: np.ndarray) -> float:
    """The log evidence from the five device sums (SPEC section 2)."""
    chi2_data, normalization, s_dot_d, log_det_h, log_det_fh = sums
    return float(-0.5 * (chi2_data - s_dot_d + normalization) + log_det_h - log_det_fh)


@implements(
    "log_evidence", "tiled", Cost("flop", lambda M, B, S, **_: M * M * B + 2 * M * B * S + 2 * S**3 / 3)
)
@_parts(place=_place_evidence, finish=_evidence)
def log_evidence_tiled(
    columns,
    dirty_image,
    visibilities,
    noise,
    pix_indexes,
    pix_weights,
    neighbors,
    neighbors_sizes,
    coefficient,
):
    """The log evidence from a precomputed offset table and dirty image, on the device.

    See reference.log_evidence for the math. What a sampler re-evaluates per
    call, as numba.tiled: data vector (atomic scatter), curvature ("tiled"),
    regularization, F + H, both Cholesky factors, the solve, then block sums
    of chi2_data, the normalisation, s . D and the log-diagonals; only the
    five sums come back to the host (and the factors' status, checked before
    they are used).

    Cost: M^2 B / 2 + M B S for F, S^3 / 3 per Cholesky (two), K for
    chi2_data; memory M S + 4 S^2 on the device.
    """
    n_sources = columns.n_sources
    data = _device_data_vector(dirty_image, pix_indexes, pix_weights, n_sources)
    curvature = _device_curvature(columns)
    h = _device_regularization(coefficient, neighbors, neighbors_sizes)
    fh = _empty((n_sources, n_sources))
    _add[_blocks_2d(n_sources, n_sources), THREADS_2D](curvature, h, fh)
    _factor([h, fh])
    source = _empty(n_sources)
    _cholesky_solve[1, SOLVER_THREADS](fh, data, source)
    sums = _zeros(5)
    _visibility_sums[_blocks(noise.shape[0]), THREADS](visibilities, noise, sums)
    _evidence_sums[_blocks(n_sources), THREADS](source, data, h, fh, sums)
    return sums


# ---------------------------------------------------------------------------
# The seeds' small JIT examples


@cuda.jit(cache=True)
def _quadratic_formula(a, b, c, out):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        out[i] = (-b[i] + math.sqrt(b[i] * b[i] - 4.0 * a[i] * c[i])) / (2.0 * a[i])


@cuda.jit(cache=True)
def _fma(weights, arrays, out):
    for j in range(cuda.grid(1), arrays.shape[1], cuda.gridsize(1)):
        total = 0.0
        for w in range(arrays.shape[0]):
            total += weights[w] * arrays[w, j]
        out[j] = total


@cuda.jit(cache=True)
def _fused_expression(x, out):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        value = x[i]
        out[i] = math.sqrt(value * value + math.sin(value) * math.exp(-value))


@implements("quadratic_formula", "grid", Cost("flop", lambda n, **_: 7 * n))
@_parts()
def quadratic_formula_grid(a, b, c):
    """The seeds' element-wise formula, one thread per element (grid-stride).

    See reference.quadratic_formula for the math. Consecutive threads take
    consecutive elements, so every read and the write are coalesced.

    Cost: n square roots; 32 n bytes moved on the device, 32 n over the bus.
    """
    out = _empty(a.shape[0])
    _quadratic_formula[_blocks(a.shape[0]), THREADS](a, b, c, out)
    return out


@implements("fma", "grid", Cost("flop", lambda n, W, **_: 2 * W * n))
@_parts()
def fma_grid(weights, arrays):
    """The weighted sum, one thread per output element summing over the W arrays.

    See reference.fma for the math. The sum stays in a register, so out is
    written once; a warp reads each array in one coalesced run.

    Cost: W n multiply-adds; 8 (W + 1) n bytes moved on the device.
    """
    out = _empty(arrays.shape[1])
    _fma[_blocks(arrays.shape[1]), THREADS](weights, arrays, out)
    return out


@implements("fused_expression", "grid", Cost("trig", lambda n, **_: 3 * n))
@_parts()
def fused_expression_grid(x):
    """The fused element-wise expression, one thread per element (grid-stride).

    See reference.fused_expression for the math. One pass, no temporaries.

    Cost: n sin, exp and sqrt; 16 n bytes moved on the device.
    """
    out = _empty(x.shape[0])
    _fused_expression[_blocks(x.shape[0]), THREADS](x, out)
    return out
