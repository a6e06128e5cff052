"""The autoarray backend: PyAutoArray's own kernels, adapted to SPEC's inputs.

PyAutoArray (``autoarray``, the production library of the field) computes
the same quantities inside its interferometer inversion. Each function here
adapts lenskern's canonical inputs (SPEC section 1) to the arguments of one
autoarray function, calls it, and adapts its output back to SPEC's form; the
math is written once in :mod:`lenskern.backends.reference`. The adapters are
written against ``autoarray==2026.10.26.1`` (the ``peers`` extra), which needs
Python >= 3.12: on an older Python, without autoarray, or with another
release, the backend is missing with the reason (:func:`unavailable`).

**Importing autoarray** configures the process: it sets ``JAX_ENABLE_X64``,
``XLA_FLAGS`` and a JAX compilation cache in ``os.environ``, gives the root
logger an INFO handler on stdout, reads ``config/`` under the working
directory, and prints a banner (stderr) on Pythons it does not support.
:func:`_import_autoarray` imports it once, lazily, inside a guard that
restores the environment variables, the root logger and the working
directory, silences its stdout, stderr and warnings, and runs the import in
an empty temporary directory, so autoarray's configuration is only its
package's own. Importing this module imports nothing of autoarray; JAX stays
in float32 mode outside the ``sparse_jax`` call, which runs in
``jax.enable_x64(True)``.

**The offset table.** ``nufft_precision_operator_from`` returns a
``(2Ny, 2Nx)`` table P in wraparound (FFT) order over the grid it is given:
offset 0 at ``P[0, 0]``, negative offsets at negative indexes, and the
Nyquist row ``Ny`` and column ``Nx`` zero. Its entry is
``P[i, j] = sum_k cos(2 pi d (-j u_k + i v_k)) / sigma_k^2``, SPEC's value at
offset ``(dr, dc) = (-i, -j)``, equal to the value at ``(i, j)`` since the
table is even. So, for ``dr in [-(Ny-1), Ny-1]`` and ``dc in [-(Nx-1), Nx-1]``::

    w_offsets[dr + Ny - 1, dc + Nx - 1] = P[dr mod 2Ny, dc mod 2Nx]

(:func:`_centred`; equivalently ``fftshift(P)[1:, 1:]``), and its inverse
(:func:`_wraparound`) writes the centred table back into a zeroed
``(2Ny, 2Nx)`` array. autoarray computes P over the mask's bounding extent;
SPEC's table covers the whole grid, so the adapter passes ``shape_native``
as the extent. Its pixel spacing is read off the radian grid, which is
built from SPEC's pixel centres (at least 2 x 2, since it needs a
neighbour in each direction; only its spacing and corners are read).

**The curvature.** ``InterferometerSparseOperator`` applies W by FFT
convolution of P on the ``(2ny, 2nx)`` zero-padded extent of the unmasked
pixels, ``(ny, nx)`` their bounding box, and sums ``A^T W A`` over COO
triplets ``(rows, cols, vals)``: ``rows`` the pixels' flat indexes on the
extent, ``(r - r0) nx + (c - c0)`` (autoarray's
``Mask2D.extent_index_for_masked_pixel``), ``cols`` and ``vals`` the
mapping's slots, the ``-1`` slots given column 0 and value 0 as autoarray's
``sparse_triplets_from`` does. P is lenskern's table cut to offsets within
the extent and put in wraparound order (:func:`_wraparound`).

The regularization matches SPEC as is (ridge 1e-8, ``-c^2`` per neighbour:
``neighbors`` holds no repeats, validated). The mapping matrix takes
``pix_size = B`` for every row, so a ``-1`` slot anywhere in a row goes to
the extra column autoarray drops; one sub-pixel per pixel (sub-fraction 1).

Not adapted (``BACKEND.gaps`` lists them): W from
raw inputs (autoarray forms W only from the table); W from the table
(``nufft_weighted_noise_via_sparse_operator_from`` is a Python double loop
over pixel pairs, and the registry keeps that cost kind for the reference); the
dirty image, the data vector, the reconstruction, the noise normalization
and the evidence, which autoarray computes inside its ``Interferometer``,
``Inversion`` and ``Fit`` objects, built from datasets, meshes and
pixelizations rather than from SPEC's arrays. Tolerance:
autoarray's NUFFT runs at ``eps`` = ``conventions.NUFFT_EPS`` (1e-12, an
error bound on the scale of the table's peak), inside SPEC's 1e-9.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import io
import logging
import os
import sys
import tempfile
import warnings

import numpy as np

from lenskern import conventions
from lenskern.conventions import ARCSEC_TO_RADIANS, fft_curvature_operations, nufft_operations
from lenskern.registry import Backend, Cost, implements

#: The autoarray release the adapters are written and tested against.
VERSION = "2026.10.26.1"
#: The oldest Python that release installs on.
PYTHON = (3, 12)


def unavailable(device: str) -> str | None:
    """Why autoarray cannot run here, or None (the registry asks)."""
    if sys.version_info[:2] < PYTHON:
        return f"autoarray {VERSION} needs Python >= {PYTHON[0]}.{PYTHON[1]}"
    try:
        installed = importlib.metadata.version("autoarray")
    except importlib.metadata.PackageNotFoundError:
        return "autoarray is not installed (pip install 'lenskern[peers]')"
    if installed != VERSION:
        return f"autoarray {installed} is installed; the adapters are written for {VERSION}"
    try:
        _import_autoarray()
    except Exception as error:  # a broken install: say so, do not fail the registry
        return f"autoarray {VERSION} does not import here: {type(error).__name__}: {error}"
    return None


_INSIDE_OBJECTS = "only inside autoarray's dataset, Inversion and Fit objects"
_IN_OBJECTS = ("dirty_image", "data_vector", "reconstruction", "noise_normalization", "log_evidence")
BACKEND = Backend(
    peer="PyAutoArray",
    gaps={
        "w_tilde": "autoarray forms W from the offset table only",
        "w_tilde_from_offsets": "autoarray's is a Python loop over pixel pairs: not adapted",
        **dict.fromkeys(_IN_OBJECTS, _INSIDE_OBJECTS),
        "data_parts": "autoarray's streamed path (sparse_terms_from_chunks) is timed whole, as "
        "benchmarks/stream.py's PeerStream",
    },
    others="not autoarray's",  # the seeds' examples
    unavailable=unavailable,
)


@contextlib.contextmanager
def _quarantine():
    """Undo what importing autoarray does to the process (module docstring)."""
    environment = dict(os.environ)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    directory = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="lenskern-autoarray-") as empty:
        try:
            os.chdir(empty)
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
                warnings.catch_warnings(),
            ):
                warnings.simplefilter("ignore")
                yield
        finally:
            os.chdir(directory)
            for name in set(os.environ) - set(environment):
                del os.environ[name]
            os.environ.update({k: v for k, v in environment.items() if os.environ.get(k) != v})
            root.handlers[:] = handlers
            root.setLevel(level)


@functools.cache
def _import_autoarray():
    """The autoarray modules the adapters call, imported once under the guard."""
    with _quarantine():
        from autoarray.inversion.inversion.interferometer import inversion_interferometer_util as util
        from autoarray.inversion.mappers import mapper_util
        from autoarray.inversion.regularization import constant
        from autoarray.mask.mask_2d import Mask2D
    return util, mapper_util, constant, Mask2D


# ---------------------------------------------------------------------------
# The offset table: SPEC's centred form and autoarray's wraparound form


def _offset_indexes(ny: int, nx: int) -> tuple[np.ndarray, np.ndarray]:
    """The wraparound rows and columns of offsets -(n-1)..n-1: ``dr mod 2Ny``, ``dc mod 2Nx``."""
    return np.arange(-(ny - 1), ny) % (2 * ny), np.arange(-(nx - 1), nx) % (2 * nx)


def _centred(wrapped: np.ndarray) -> np.ndarray:
    """SPEC's (2Ny-1, 2Nx-1) table from autoarray's (2Ny, 2Nx) one:
    ``table[dr + Ny - 1, dc + Nx - 1] = wrapped[dr mod 2Ny, dc mod 2Nx]``."""
    ny, nx = wrapped.shape[0] // 2, wrapped.shape[1] // 2
    rows, cols = _offset_indexes(ny, nx)
    return np.ascontiguousarray(wrapped[np.ix_(rows, cols)])


def _wraparound(w_offsets: np.ndarray, extent: tuple[int, int]) -> np.ndarray:
    """autoarray's (2ny, 2nx) table for an extent (ny, nx) within the grid,
    from SPEC's table: the inverse of :func:`_centred`, the Nyquist row and
    column zero."""
    big_ny, big_nx = (w_offsets.shape[0] + 1) // 2, (w_offsets.shape[1] + 1) // 2
    ny, nx = extent
    inner = w_offsets[big_ny - ny : big_ny + ny - 1, big_nx - nx : big_nx + nx - 1]
    wrapped = np.zeros((2 * ny, 2 * nx))
    rows, cols = _offset_indexes(ny, nx)
    wrapped[np.ix_(rows, cols)] = inner
    return wrapped


def _radian_grid(pixel_scale: float, shape_native) -> np.ndarray:
    """(ny, nx, 2) native (y, x) pixel centres in radians (SPEC section 1) on a
    grid of at least 2 x 2: autoarray reads the pixel spacing off neighbours."""
    ny, nx = max(int(shape_native[0]), 2), max(int(shape_native[1]), 2)
    native_index = np.argwhere(np.ones((ny, nx), dtype=bool))
    return conventions.pixel_centres(native_index, (ny, nx), pixel_scale).reshape(ny, nx, 2)


def _folded(uv: np.ndarray, pixel_scale: float) -> np.ndarray:
    """Baselines folded into one period of the pixel grid's frequencies
    (phases in [-pi, pi], FINUFFT's range): the table is 1/d periodic in u
    and v, since offsets are whole pixels."""
    period = 1.0 / (pixel_scale * ARCSEC_TO_RADIANS)
    return uv - np.round(uv / period) * period


def _mask(native_index: np.ndarray, shape, pixel_scales) -> object:
    """autoarray's Mask2D with SPEC's pixels unmasked (autoarray: True = masked out)."""
    mask = np.ones(tuple(int(n) for n in shape), dtype=bool)
    mask[native_index[:, 0], native_index[:, 1]] = False
    return _import_autoarray()[3](mask=mask, pixel_scales=pixel_scales)


def _precision_operator(uv, noise, pixel_scale, shape_native, method: str) -> np.ndarray:
    util = _import_autoarray()[0]
    if method == "nufft":
        uv = _folded(uv, pixel_scale)
    wrapped = util.nufft_precision_operator_from(
        noise_map_real=noise,
        uv_wavelengths=uv,
        shape_masked_pixels_2d=tuple(int(n) for n in shape_native),
        grid_radians_2d=_radian_grid(pixel_scale, shape_native),
        method=method,
        eps=conventions.NUFFT_EPS,
    )
    return _centred(np.asarray(wrapped, dtype=np.float64))


@implements("w_offsets", "nufft", Cost("flop", lambda Ny, Nx, K, **_: nufft_operations(K, 4 * Ny * Nx)))
def w_offsets_nufft(uv, noise, pixel_scale, shape_native):
    """autoarray's type-1 NUFFT (FINUFFT, one thread) onto the (2Ny, 2Nx) wraparound table.

    ``nufft_precision_operator_from(method="nufft")`` at ``eps`` =
    ``conventions.NUFFT_EPS``; the baselines are first folded into
    ``|u d| <= 1/2`` (exact: the table is periodic in u and v with period
    1/d). See reference.w_offsets for the math, the module docstring for the
    index mapping.

    Cost: O(K w^2) spreading + an FFT of 4 x (2Ny)(2Nx) points; memory the
    fine grid in complex128.
    """
    return _precision_operator(uv, noise, pixel_scale, shape_native, "nufft")


@implements("w_offsets", "direct", Cost("trig", lambda Ny, Nx, K, **_: 4 * Ny * Nx * K))
def w_offsets_direct(uv, noise, pixel_scale, shape_native):
    """autoarray's brute force: one chunked NumPy cosine sum per quadrant of offsets.

    ``nufft_precision_operator_from(method="numpy")``: the four quadrants
    (Ny x Nx offsets each) summed from the grid's corners over chunks of 2048
    visibilities. See reference.w_offsets for the math.

    Cost: 4 Ny Nx K cosines (no use of the table's evenness); memory
    Ny Nx x 2048 floats per chunk.
    """
    return _precision_operator(uv, noise, pixel_scale, shape_native, "numpy")


# ---------------------------------------------------------------------------
# The curvature matrix by InterferometerSparseOperator


def _operator_inputs(w_offsets, native_index, pix_indexes, pix_weights):
    """(wrapped table, extent, rows, cols, vals): the operator's table on the
    unmasked pixels' bounding extent and the mapping as COO triplets there."""
    shape = ((w_offsets.shape[0] + 1) // 2, (w_offsets.shape[1] + 1) // 2)
    geometry = _mask(native_index, shape, pixel_scales=1.0)  # only the pixels' positions are read
    extent = tuple(int(n) for n in geometry.shape_native_masked_pixels)
    pixel_rows = np.asarray(geometry.extent_index_for_masked_pixel, dtype=np.int64)
    b_count = pix_indexes.shape[1]
    valid = pix_indexes >= 0
    rows = np.repeat(pixel_rows, b_count)
    cols = np.where(valid, pix_indexes, 0).ravel()
    vals = np.where(valid, pix_weights, 0.0).ravel()
    return _wraparound(w_offsets, extent), extent, rows, cols, vals


@implements("curvature_matrix", "sparse_scipy", Cost("flop", fft_curvature_operations))
def curvature_matrix_sparse_scipy(w_offsets, native_index, pix_indexes, pix_weights, n_sources):
    """``InterferometerSparseOperator`` on NumPy: SciPy rfft2 convolution, blocks of 128 source pixels.

    ``curvature_matrix_diag_from(xp=numpy)``: the mapping as a SciPy CSC
    matrix, each block of its columns laid on the (2ny, 2nx) padded extent,
    convolved with the table by ``scipy.fft.rfft2``/``irfft2``, projected
    back by ``A^T`` and symmetrised. See reference.curvature_matrix.

    Cost: one rfft2 and one irfft2 of 4 ny nx points per source pixel +
    2 M B S for A^T (W A); memory 128 planes of 4 ny nx floats.
    """
    util = _import_autoarray()[0]
    wrapped, _, rows, cols, vals = _operator_inputs(w_offsets, native_index, pix_indexes, pix_weights)
    operator = util.InterferometerSparseOperator.from_nufft_precision_operator(wrapped, dirty_image=None)
    return operator.curvature_matrix_diag_from(rows, cols, vals, S=n_sources, xp=np)


@functools.cache
def _jax_curvature():
    """autoarray's JAX curvature route, jitted once per shape (as a fit jits
    its likelihood): the operator is built around the traced table."""
    import jax
    import jax.numpy as jnp

    util = _import_autoarray()[0]

    @functools.partial(jax.jit, static_argnames=("extent", "n_sources"))
    def curvature(wrapped, rows, cols, vals, extent, n_sources):
        ny, nx = extent
        operator = util.InterferometerSparseOperator(
            nufft_precision_operator=wrapped,
            dirty_image=None,
            y_shape=ny,
            x_shape=nx,
            M=ny * nx,
            batch_size=128,
            w_dtype=np.dtype(np.float64),
        )
        return operator.curvature_matrix_diag_from(rows, cols, vals, S=n_sources, xp=jnp)

    return jax, curvature


@implements("curvature_matrix", "sparse_jax", Cost("flop", fft_curvature_operations))
def curvature_matrix_sparse_jax(w_offsets, native_index, pix_indexes, pix_weights, n_sources):
    """``InterferometerSparseOperator`` on JAX: ``lax.fori_loop`` over blocks, ``segment_sum``, jitted.

    ``curvature_matrix_diag_from(xp=jax.numpy)`` inside ``jax.jit`` and
    ``jax.enable_x64(True)``: each block of 128 source pixels scattered onto
    the (2ny, 2nx) padded extent, convolved by ``jnp.fft.rfft2``/``irfft2``,
    gathered back by ``segment_sum``. Compiles once per (M B, extent, S).
    See reference.curvature_matrix.

    Cost: as sparse_scipy, on XLA's CPU FFT.
    """
    wrapped, extent, rows, cols, vals = _operator_inputs(w_offsets, native_index, pix_indexes, pix_weights)
    jax, curvature = _jax_curvature()
    with jax.enable_x64(True):
        result = curvature(wrapped, rows, cols, vals, extent=extent, n_sources=int(n_sources))
        return np.asarray(result.block_until_ready(), dtype=np.float64)


# ---------------------------------------------------------------------------
# Mapping and regularization


@implements("mapping_matrix", "scatter", Cost("flop", lambda M, B, S, **_: M * B + M * S))
def mapping_matrix_scatter(pix_indexes, pix_weights, n_sources):
    """autoarray's ``mapping_matrix_from``: ``np.add.at`` into (M, S + 1), the extra column dropped.

    One sub-pixel per image pixel (sub-fraction 1) and ``pix_size = B`` for
    every row: a ``-1`` slot goes to the extra column, wherever it is in the
    row. See reference.mapping_matrix.

    Cost: M B scattered adds; memory M (S + 1) floats.
    """
    mapper_util = _import_autoarray()[1]
    m_count, b_count = pix_indexes.shape
    return mapper_util.mapping_matrix_from(
        pix_indexes_for_sub_slim_index=pix_indexes,
        pix_size_for_sub_slim_index=np.full(m_count, b_count, dtype=np.int64),
        pix_weights_for_sub_slim_index=pix_weights,
        pixels=int(n_sources),
        total_mask_pixels=m_count,
        slim_index_for_sub_slim_index=np.arange(m_count),
        sub_fraction=np.ones(m_count),
    )


@implements("regularization_matrix", "constant", Cost("flop", lambda S, P, **_: S * P + S * S))
def regularization_matrix_constant(coefficient, neighbors, neighbors_sizes):
    """autoarray's ``constant_regularization_matrix_from``: the diagonal, then ``np.add.at`` of -c^2.

    Its definition is SPEC's (ridge 1e-8 included). See
    reference.regularization_matrix.

    Cost: S P scattered adds; memory S^2 floats.
    """
    constant = _import_autoarray()[2]
    return constant.constant_regularization_matrix_from(float(coefficient), neighbors, neighbors_sizes)


# ---------------------------------------------------------------------------
# The streamed path, set beside lenskern.stream (not a kernel: no registry entry)


def streamed_terms(store, *, chunk: int | None = None, shape_native, pixel_scale, native_index, **_):
    """PyAutoArray's own streamed path, ``sparse_terms_from_chunks``, fed a
    lenskern store chunk by chunk, as its users feed it from disk.

    Each chunk is read, its baselines folded into one period (as for
    ``w_offsets_nufft``) and its noise given as ``sigma (1 + i)`` (autoarray
    wants equal real and imaginary sigma). autoarray transforms every chunk
    three times on one thread (the table on the mask's bounding extent, the
    dirty image and the dirty beam: three FINUFFT type-1 NUFFTs at ``eps`` =
    ``conventions.NUFFT_EPS``) and sums its ``SparseTerms``. Returns
    ``(terms, table)``: autoarray's terms and their table in SPEC's centred
    form over the extent, ``(2 ny - 1, 2 nx - 1)``.

    Cost: per chunk of k visibilities, O(k w^2) spreading three times and
    three FFTs; memory: one chunk and the fine grids.
    """
    from lenskern.store import VisibilityStore

    util = _import_autoarray()[0]
    store = store if isinstance(store, VisibilityStore) else VisibilityStore.open(store)
    store.verify(shape_native, pixel_scale)
    mask = _mask(np.asarray(native_index), shape_native, pixel_scales=(pixel_scale, pixel_scale))

    def chunks():
        for block in store.blocks(chunk):
            arrays = store.read(block.channel, block.start, block.stop)
            yield _folded(arrays["uv"], pixel_scale), arrays["visibilities"], arrays["noise"] * (1 + 1j)

    with _quarantine():
        terms = util.sparse_terms_from_chunks(chunks(), real_space_mask=mask, eps=conventions.NUFFT_EPS)
    return terms, _centred(np.asarray(terms.nufft_precision_operator, dtype=np.float64))
