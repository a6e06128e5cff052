"""A chunk of visibilities made ready for one NUFFT plan: the steps the
``data_parts`` kernel's NUFFT implementations share (``numpy.nufft`` on
FINUFFT, ``ducc0.nufft``), whatever library then transforms.

**Both parts from type-1 transforms on the same points.** The in-memory
kernels make the offset table by a type-1 NUFFT and the dirty image by a
type-3; here both are type 1 on the same non-uniform points and the table's
modes, so one plan (its points sorted once) serves both. The dirty image's
phase at pixel (r, c) is ``2 pi d ((c - cx) u - (r - cy) v)`` with
``cx = (Nx-1)/2``; writing ``c - cx = (c - Nx//2) + ex`` (``ex`` is 0 or 1/2,
likewise ``ey``) makes ``c - Nx//2`` an integer mode inside the table's range
and moves ``exp(2 pi i d (ex u - ey v))`` into the strengths
``V_k / sigma_k^2``, so ``dirty_image[i] = Re F[r_i - Ny//2, c_i - Nx//2]``
of the second transform. Three real strengths (1/sigma^2 and both parts of
V/sigma^2) need two complex transforms: the table's Hermitian symmetry frees
only one slot.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numba
import numpy as np

from lenskern.conventions import ARCSEC_TO_RADIANS, TWO_PI


def half_pixel(shape_native) -> tuple[float, float]:
    """``(ex, ey)``: how far the pixel centres sit from the table's integer
    modes along x and y, 0 on an odd side and 1/2 on an even one."""
    ny, nx = shape_native
    return nx // 2 - (nx - 1) / 2, ny // 2 - (ny - 1) / 2


def table_shape(shape_native) -> tuple[int, int]:
    """The offset table's shape, (2Ny-1, 2Nx-1): the transforms' modes."""
    ny, nx = shape_native
    return (2 * ny - 1, 2 * nx - 1)


def working_bytes(shape_native, uv: np.ndarray) -> float:
    """Bytes a chunk's transforms hold beyond their output: 48 per
    visibility (points, two complex strengths), the two complex transforms'
    modes, and their fine grids (about 4x the modes each, upsampling 2 per
    axis) in complex128."""
    modes = math.prod(table_shape(shape_native))
    return 48.0 * len(uv) + 2 * 16.0 * modes * (1 + 4)


def image_pixels(shape_native, native_index: np.ndarray) -> np.ndarray:
    """Each unmasked pixel's place in the flattened (2Ny-1, 2Nx-1) modes of
    the second transform."""
    ny, nx = shape_native
    rows = native_index[:, 0] - ny // 2 + ny - 1
    cols = native_index[:, 1] - nx // 2 + nx - 1
    return rows * (2 * nx - 1) + cols


def prepare(uv, noise, visibilities, pixel_scale, shape_native, points_per_row: bool, serial: bool):
    """One pass over a chunk: the NUFFT's points and two strength sets, chi2
    and the noise normalization.

    ``points_per_row``: the points as one (k, 2) array of (row, col), as
    ducc0 takes them, else as two contiguous rows (FINUFFT's). ``serial``:
    on the calling thread (a transform on one thread, a Dask task), else on
    every core. Returns ``(points, strengths, chi2, normalization)``; a
    ValueError if a value is not finite or a sigma is <= 0 (validation of
    the chunk, if it is needed, then says which).
    """
    k_count = len(noise)
    points = np.empty((k_count, 2)) if points_per_row else np.empty((2, k_count))
    rows, cols = (points[:, 0], points[:, 1]) if points_per_row else (points[0], points[1])
    strengths = np.empty((2, k_count), dtype=np.complex128)
    ex, ey = half_pixel(shape_native)
    scale = TWO_PI * pixel_scale * ARCSEC_TO_RADIANS
    run = _prepare_serial if serial else _prepare
    chi2, normalization, bad = run(uv, noise, visibilities, scale, ex, ey, rows, cols, strengths)
    if bad:
        raise ValueError(f"visibilities: {bad} visibilities with non-finite values or noise <= 0")
    return points, strengths, chi2, normalization


def data_parts(
    uv, noise, visibilities, pixel_scale, shape_native, native_index,
    transform: Callable, points_per_row: bool, nthreads: int, seconds: dict | None,
) -> dict:  # fmt: skip
    """The ``data_parts`` kernel around one NUFFT library's two transforms:
    :func:`prepare` (on the calling thread when ``nthreads`` is 1), then
    ``transform(points, strengths) -> (table modes, image modes)``, then
    :func:`parts`. ``seconds``, where the stream passes a dict, is given
    each stage's time (``prepare``, ``nufft``)."""
    start = time.perf_counter()
    points, strengths, chi2, normalization = prepare(
        uv, noise, visibilities, pixel_scale, shape_native, points_per_row, serial=nthreads == 1
    )
    prepared = time.perf_counter()
    table, image = transform(points, strengths)
    if seconds is not None:
        seconds.update(prepare=prepared - start, nufft=time.perf_counter() - prepared)
    return parts(table, image, image_pixels(shape_native, native_index), chi2, normalization)


def parts(table: np.ndarray, image: np.ndarray, pixels: np.ndarray, chi2: float, normalization: float):
    """The ``data_parts`` output from the two transforms' modes: the table's
    real part made even to the last bit (averaged with its mirror, so sums
    of chunks stay even), the image's pixels, and the two sums."""
    table = table.real
    return dict(
        w_offsets=0.5 * (table + table[::-1, ::-1]),
        dirty_image=np.ascontiguousarray(image.real.ravel()[pixels]),
        chi2_data=float(chi2),
        noise_normalization=float(normalization),
    )


@numba.njit(cache=True, inline="always")
def _prepare_one(k, uv, noise, visibilities, scale, ex, ey, rows, cols, strengths):
    """Visibility k of :func:`_prepare`: its (chi2, normalization, bad) terms."""
    u, v = uv[k, 0], uv[k, 1]
    real, imag = visibilities[k].real, visibilities[k].imag
    finite = math.isfinite(u) and math.isfinite(v) and math.isfinite(real) and math.isfinite(imag)
    if not (finite and math.isfinite(noise[k]) and noise[k] > 0):
        return 0.0, 0.0, 1
    variance = noise[k] * noise[k]
    inverse = 1.0 / variance
    row, col = -scale * v, scale * u
    if not -math.pi <= row < math.pi:
        row -= 2 * math.pi * math.floor((row + math.pi) / (2 * math.pi))
    if not -math.pi <= col < math.pi:
        col -= 2 * math.pi * math.floor((col + math.pi) / (2 * math.pi))
    rows[k], cols[k] = row, col
    chi2 = (real * real + imag * imag) * inverse
    real, imag = real * inverse, imag * inverse
    if ex != 0.0 or ey != 0.0:
        phase = scale * (ex * u - ey * v)
        c, s = math.cos(phase), math.sin(phase)
        real, imag = real * c - imag * s, real * s + imag * c
    strengths[0, k] = inverse
    strengths[1, k] = complex(real, imag)
    return chi2, 2.0 * math.log(2 * math.pi * variance), 0


@numba.njit(cache=True, parallel=True)
def _prepare(uv, noise, visibilities, scale, ex, ey, rows, cols, strengths):
    """One pass over a chunk: the NUFFT's points (``rows = -scale v``,
    ``cols = scale u``, moved into [-pi, pi) where they lie outside: the
    modes are integers) and strengths (1/sigma^2, and V/sigma^2 turned by
    the half-pixel phase ``scale (ex u - ey v)``), chi2, the noise
    normalization and the count of bad visibilities (a value not finite, or
    sigma <= 0): one pass on every core, where NumPy makes ten passes with
    their temporaries and validation another."""
    chi2 = normalization = 0.0
    bad = 0
    for k in numba.prange(len(noise)):
        terms = _prepare_one(k, uv, noise, visibilities, scale, ex, ey, rows, cols, strengths)
        chi2 += terms[0]
        normalization += terms[1]
        bad += terms[2]
    return chi2, normalization, bad


@numba.njit(cache=True)
def _prepare_serial(uv, noise, visibilities, scale, ex, ey, rows, cols, strengths):
    """:func:`_prepare` on the calling thread: for transforms on one thread
    (small chunks, Dask tasks), where no thread pool is started or shared
    between the threads of a worker."""
    chi2 = normalization = 0.0
    bad = 0
    for k in range(len(noise)):
        terms = _prepare_one(k, uv, noise, visibilities, scale, ex, ey, rows, cols, strengths)
        chi2 += terms[0]
        normalization += terms[1]
        bad += terms[2]
    return chi2, normalization, bad
