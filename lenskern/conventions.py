"""The conventions of SPEC section 1 and the settings every backend shares.

One neutral module, so no backend imports another (or the oracle) to read a
constant: the reference, NumPy, Numba and JAX backends, validation and the
problem generator all take 2 pi, the ridge, the pixel-centre formula and the
NUFFT settings from here. Settings are read at call time (``conventions.X``),
so setting one before a call takes effect for every backend.
"""

from __future__ import annotations

import math

import numpy as np

TWO_PI = 2.0 * math.pi
#: Radians per arcsecond (SPEC section 1: radians = arcsec * pi / 648000).
ARCSEC_TO_RADIANS = math.pi / 648000.0
#: The ridge added to the regularization diagonal so H is positive definite
#: (SPEC section 2: H_ss = 1e-8 + c^2 * neighbors_sizes_s).
RIDGE = 1e-8


# --- The domain every kernel is defined on -------------------------------------
# float64 holds magnitudes from 2.2e-308 (below: subnormal, with fewer
# digits, then 0) up to 1.8e308. Inputs are bounded so that every product
# the pipeline forms stays a normal number: every non-zero magnitude of a
# measured value (visibilities, noise, weights, coordinates, the coefficient,
# the examples' arrays) lies in [1/MAX_MAGNITUDE, MAX_MAGNITUDE], so a
# product or quotient of four stays within 1e-200..1e200; an earlier
# kernel's output (an offset table, sum_k 1/sigma_k^2 <= K 1e100) in
# [1/MAX_DERIVED, MAX_DERIVED], so T^T W T <= 1e220 M^2 B^2. Real data sit
# far inside (visibilities in Jy, noise 1e-3 to 1e3). Solves can still
# overflow on a near-singular F + H; those results are checked after the call.

#: Largest magnitude of a measured input; 1/MAX_MAGNITUDE its smallest non-zero one.
MAX_MAGNITUDE = 1e50
#: Largest magnitude of an earlier kernel's output given as an input;
#: 1/MAX_DERIVED its smallest non-zero one.
MAX_DERIVED = 1e120
#: Largest phase 2 pi (|u| dx + |v| dy) over the baselines and the pixel
#: separations, in radians. float64 resolves a phase of 1e6 to 1.2e-10 rad
#: (its spacing there), so beyond it cos(phase) has fewer than ten correct
#: digits in any implementation, and a type-3 NUFFT's fine grid (about
#: (4/pi) x phase points per axis, FINUFFT's rule with upsampling 2) would
#: need terabytes. The generator's problems (|uv| <= 0.4/d, separations up
#: to (N - 1) d) reach 2 pi 0.4 (N - 1) per axis: 1.5e3 rad at the science
#: size N = 300.
MAX_PHASE = 1e6


def pixel_centres(native_index: np.ndarray, shape_native: tuple[int, int], pixel_scale: float) -> np.ndarray:
    """(y, x) in radians of the pixels at ``native_index`` (SPEC section 1):
    ``y = -(r - (Ny-1)/2) d``, ``x = (c - (Nx-1)/2) d``, d the pixel scale in
    radians; y grows upward, x to the right, the origin at the grid centre."""
    ny, nx = shape_native
    d = pixel_scale * ARCSEC_TO_RADIANS
    rows, cols = native_index[:, 0], native_index[:, 1]
    return np.stack([-(rows - (ny - 1) / 2) * d, (cols - (nx - 1) / 2) * d], axis=1)


#: Largest temporary a blocked loop over K or over rows makes, in float64
#: elements (8 MiB), in the NumPy and JAX backends alike: large enough that
#: the per-block overhead (a Python iteration, a scan step) is amortised,
#: small enough that no temporary grows with M^2 K.
BLOCK_ELEMENTS = 1 << 20

#: Requested accuracy of the NUFFT algorithms (FINUFFT's ``eps``), on every
#: backend: errors stay below about NUFFT_EPS * sum_k |strength_k|, i.e.
#: 1e-12 of the offset table's largest entry (its centre, sum_k 1/sigma_k^2).
#: Lower it before a call to trade accuracy for speed.
NUFFT_EPS = 1e-12

#: ducc0 refuses a double-precision accuracy below this (its documented floor):
#: the ducc0 backend refuses such a NUFFT_EPS, and the stream falls back to FINUFFT.
DUCC0_MIN_EPS = 2e-13

#: The coarsest accuracy the stream's NUFFT takes: SPEC section 3 holds
#: approximate algorithms to 1e-7, and a coarser eps would answer below it
#: without a word (eps = 1.0 ran 3.7e-5 off).
NUFFT_COARSEST_EPS = 1e-7

#: The NUFFT libraries, in the order the stream prefers them (each is the
#: ``nufft`` algorithm of one backend: ducc0's, and NumPy's, which runs FINUFFT).
NUFFT_LIBRARIES = ("ducc0", "finufft")


def nufft_library(eps: float) -> str:
    """The stream's NUFFT library: ducc0 where it is installed and accepts
    ``eps`` (its float64 floor is DUCC0_MIN_EPS), else FINUFFT (a core
    dependency). ducc0's plan was the faster of the two on this project's
    2-core machine (``python -m lenskern stream PATH --library ducc0`` and
    ``--library finufft`` time both, stage by stage)."""
    try:
        import ducc0  # noqa: F401
    except ImportError:
        return "finufft"
    return "ducc0" if eps >= DUCC0_MIN_EPS else "finufft"


#: Below this many non-uniform points FINUFFT runs on one thread: starting its
#: OpenMP team costs more than the threads save on small transforms.
NUFFT_MIN_POINTS_PER_THREAD = 1 << 20

#: Below this many (output entry, visibility) terms a direct sum over K beats
#: a NUFFT, whose fixed set-up (FFT plan, spreading kernel) dominates small
#: transforms; the main job's tables show both sides of the crossover.
NUFFT_MIN_TERMS = 100_000


def nufft_threads(points: int) -> int:
    """The NUFFT libraries' ``nthreads`` (FINUFFT's and ducc0's): 1 for small
    transforms, else 0 (the library's own count, OpenMP's or ducc0's pool,
    which LENSKERN_NUM_THREADS sets)."""
    return 1 if points < NUFFT_MIN_POINTS_PER_THREAD else 0


def wrap_phase(angle: np.ndarray) -> np.ndarray:
    """Angles moved into [-pi, pi): FINUFFT takes points in [-3 pi, 3 pi] and
    ducc0 is most accurate near 0, and the type-1 transforms only evaluate
    integer modes, which are 2 pi periodic."""
    return np.mod(angle + np.pi, TWO_PI) - np.pi


def direct_terms(kernel: str, sizes: dict) -> int:
    """Output entries x visibilities of a direct sum over K for ``kernel``."""
    if kernel == "w_offsets":
        return (2 * sizes["Ny"] - 1) * (2 * sizes["Nx"] - 1) * sizes["K"]
    return sizes["M"] * sizes["K"]


def nufft_pays(kernel: str, sizes: dict) -> bool:
    """Whether a NUFFT beats the direct sum over K for ``kernel`` at ``sizes``
    (symbols M, K, Ny, Nx): see NUFFT_MIN_TERMS."""
    return direct_terms(kernel, sizes) >= NUFFT_MIN_TERMS


def nufft_width(eps: float) -> int:
    """Kernel points per dimension a NUFFT spreads onto at accuracy ``eps``:
    FINUFFT's rule for upsampling 2, ceil(-log10(eps / 10)) (its docs,
    "nspread"), 13 at NUFFT_EPS = 1e-12."""
    return math.ceil(-math.log10(eps / 10))


def nufft_operations(points: int, modes: int) -> float:
    """Flops of one NUFFT at NUFFT_EPS, for cost models: each non-uniform
    point spreads onto w^2 fine-grid points (w = nufft_width(NUFFT_EPS)), then one
    FFT of the 2x-per-axis upsampled grid (about 5 N log2 N flops per complex
    point, N = 4 modes)."""
    fine = 4 * modes
    return 2 * nufft_width(NUFFT_EPS) ** 2 * points + 5 * 4 * fine * math.log2(fine + 1)


def nufft_type3_bytes(grid: np.ndarray, uv: np.ndarray) -> float:
    """Bytes of a type-3 NUFFT's fine grid (the dirty image's transform),
    which grows with the phases, not with M or K: per axis about
    2 sigma X S / pi + 2 w points for sources of half-width X = 2 pi max|u|,
    targets of half-width S = max|x|, upsampling sigma = 2 and kernel width
    w = nufft_width(NUFFT_EPS) (FINUFFT's type-3 grid rule; ducc0's is alike), in complex128,
    doubled for the FFT's workspace."""
    points = 1.0
    for uv_axis, grid_axis in ((0, 1), (1, 0)):  # u pairs with x, v with y
        half_width_sources = TWO_PI * float(np.abs(uv[:, uv_axis]).max())
        half_width_targets = float(np.abs(grid[:, grid_axis]).max())
        points *= 4.0 / math.pi * half_width_sources * half_width_targets + 2 * nufft_width(NUFFT_EPS)
    return 2 * 16 * points


def fft_curvature_operations(S: int, M: int, B: int, Ny: int, Nx: int, **_) -> float:  # noqa: N803
    """Flops of the FFT curvature: one forward and one inverse 2-d FFT per
    source pixel on the (2Ny, 2Nx) zero-padded grid, then T^T (W T)."""
    fine = 4 * Ny * Nx
    return S * 2 * 5 * fine * math.log2(fine + 1) + 2 * M * B * S
