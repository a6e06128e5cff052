"""The ducc0 backend: the offset table and the dirty image by ducc0's NUFFTs.

ducc0 (the "Distinctly Useful Code Collection", whose NUFFT and w-gridder
radio-interferometry codes use) is the non-uniform FFT users run today
beside FINUFFT, so lenskern measures the two side by side: the same
transforms as ``numpy.nufft`` (see its docstrings for the derivation), at
the same :data:`lenskern.conventions.NUFFT_EPS` and thread rule
(:func:`lenskern.conventions.nufft_threads`). Type 1 (``nu2u``) gives the
offset table; type 3 (``nu2nu``, in ``ducc0.nufft.experimental`` since
ducc0 0.36) gives the dirty image; two type 1 on one plan give a chunk's
data parts, which the stream sums (its preferred library where installed).
ducc0 serves no other kernel.

Optional: ``pip install lenskern[peers]``; without ducc0 this backend is
missing, with the reason, and ``compute`` uses ``numpy.nufft``.
"""

from __future__ import annotations

import ducc0
import numpy as np

from lenskern import chunk, conventions
from lenskern.conventions import (
    ARCSEC_TO_RADIANS,
    DUCC0_MIN_EPS,
    TWO_PI,
    nufft_operations,
    nufft_threads,
    nufft_type3_bytes,
)
from lenskern.registry import Backend, Cost, implements, table_size

#: The type-3 transform: in ``experimental`` since ducc0 0.36; looked up in
#: ``ducc0.nufft`` first, where a later release may move it.
_nu2nu = getattr(ducc0.nufft, "nu2nu", None) or getattr(ducc0.nufft.experimental, "nu2nu", None)


def unavailable(device: str) -> str | None:
    """Why this backend cannot run here: a ducc0 without the type-3 transform."""
    if _nu2nu is None:
        return f"ducc0 {ducc0.__version__} has no type-3 NUFFT (nu2nu, from 0.36): lenskern[peers] needs 0.38"
    return None


# ducc0 is a NUFFT library
BACKEND = Backend(others="NUFFT kernels only", threads=("DUCC0_NUM_THREADS",), unavailable=unavailable)


def _epsilon() -> float:
    if conventions.NUFFT_EPS < DUCC0_MIN_EPS:
        raise ValueError(
            f"conventions.NUFFT_EPS: ducc0 accepts no accuracy below {DUCC0_MIN_EPS:g} in float64, "
            f"got {conventions.NUFFT_EPS:g}"
        )
    return conventions.NUFFT_EPS


@implements(
    "w_offsets", "nufft", Cost("flop", lambda Ny, Nx, K, **_: nufft_operations(K, table_size(Ny, Nx)))
)
def w_offsets_nufft(uv, noise, pixel_scale, shape_native):
    """The offset table as one type-1 NUFFT (ducc0.nufft.nu2u) onto the
    table's (2Ny-1, 2Nx-1) modes, real part, made even to the last bit by
    averaging with its mirror.

    See reference.w_offsets for the math and numpy.w_offsets_nufft for the
    transform; accuracy: :data:`lenskern.conventions.NUFFT_EPS`. The points
    are the baselines themselves, (v, u), with ducc0's ``periodicity`` 1/d
    (the table is periodic in u and v with period 1/d: offsets are whole
    pixels), so no pass over K scales and wraps phases first. With +v in
    place of -v the transform is the table with its rows reversed, which
    the evenness average undoes. The whole table is transformed, not the
    dr >= 0 half evenness allows: the half needs a phase shift per
    visibility to start its modes at 0 and saves only FFT and grid work,
    while spreading the K points dominates.

    Cost: O(K w^2) spreading + an FFT of about 4 (2Ny-1)(2Nx-1) points;
    memory: ducc0's oversampled grid, 1.4-6x the table (ducc0 picks the
    oversampling per call by its cost model), in complex128.
    """
    ny, nx = shape_native
    period = 1.0 / (pixel_scale * ARCSEC_TO_RADIANS)
    table = ducc0.nufft.nu2u(
        points=(1.0 / noise**2).astype(np.complex128), coord=uv[:, ::-1], forward=False,
        epsilon=_epsilon(), nthreads=nufft_threads(len(uv)),
        out=np.empty((2 * ny - 1, 2 * nx - 1), np.complex128), periodicity=period,
    ).real  # fmt: skip
    return 0.5 * (table[::-1, :] + table[:, ::-1])


@implements(
    "dirty_image",
    "nufft",
    Cost("flop", lambda Ny, Nx, K, M, **_: nufft_operations(K + M, table_size(Ny, Nx))),
    memory=nufft_type3_bytes,
)
def dirty_image_nufft(grid, uv, noise, visibilities):
    """The dirty image as one type-3 NUFFT (ducc0's nu2nu): sources at
    2 pi (u_k, v_k) with strengths conj(V_k) / sigma_k^2, targets at the
    pixel centres (x_i, y_i), exponent -1, real part.

    See reference.dirty_image for the math and numpy.dirty_image_nufft for
    the transform; accuracy: :data:`lenskern.conventions.NUFFT_EPS`.

    Cost: O((K + M) w^2) spreading and interpolation + an FFT set by the
    space-bandwidth product; memory M + K + the oversampled grid.
    """
    strengths = np.conj(visibilities) / noise**2
    image = _nu2nu(
        points_in=strengths.astype(np.complex128), coord_in=TWO_PI * uv,
        coord_out=np.ascontiguousarray(grid[:, ::-1]), forward=True, epsilon=_epsilon(),
        nthreads=nufft_threads(len(uv) + len(grid)),
    )  # fmt: skip
    return np.ascontiguousarray(image.real)


@implements(
    "data_parts",
    "nufft",
    Cost("flop", lambda Ny, Nx, K, **_: 2 * nufft_operations(K, table_size(Ny, Nx))),
    memory=chunk.working_bytes,
)
def data_parts_nufft(
    uv, noise, visibilities, pixel_scale, shape_native, native_index, *, eps=None, nthreads=None, seconds=None
):
    """The data parts of the visibilities (reference.data_parts) from two
    type-1 transforms on one ducc0 plan: both strength sets in one call, so
    the points' kernel values are computed once (5% less time than two calls
    on a 2^22 chunk of the science grid, one thread: commit 5528cc8); points and
    strengths from lenskern.chunk's one compiled pass.

    ``eps`` and ``nthreads``: the stream's options, by default
    :data:`lenskern.conventions.NUFFT_EPS` and
    :func:`lenskern.conventions.nufft_threads` of K; ``seconds``: see
    :func:`lenskern.chunk.data_parts`.

    Cost: O(K w^2) spreading for each of the two transforms + an FFT of
    about 4 (2Ny-1)(2Nx-1) points each, and O(K) for the pass; memory: 48
    bytes per visibility (points, strengths) and ducc0's oversampled grids.
    """
    eps = _epsilon() if eps is None else eps
    nthreads = nufft_threads(len(uv)) if nthreads is None else nthreads
    shape = chunk.table_shape(shape_native)

    def transform(points, strengths):
        plan = ducc0.nufft.plan(nu2u=True, coord=points, grid_shape=shape, epsilon=eps, nthreads=nthreads)
        return plan.nu2u(points=strengths, forward=False, out=np.empty((2, *shape), np.complex128))

    return chunk.data_parts(
        uv, noise, visibilities, pixel_scale, shape_native, native_index, transform, True, nthreads, seconds
    )
