"""Seeded, valid-by-construction inputs for every kernel (SPEC sections 1 and 4).

The same preset and seed give the same arrays in every version of lenskern:
benchmark history compares like with like only while that holds, and
``tests/contract/test_problems.py`` keeps it with stored checksums. Change nothing here
that alters the arrays; add a new option instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from lenskern.conventions import ARCSEC_TO_RADIANS, TWO_PI, pixel_centres

#: SPEC section 4. ``N`` is the grid side (or give ``shape_native``), ``K``
#: visibilities, ``B`` mapping slots per image pixel, ``P`` neighbour slots,
#: ``S`` source pixels.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(shape_native=(6, 7), K=24, B=3, P=4, S=12),
    "small": dict(N=24, K=4096, B=3, P=8, S=128),
    # The seeds' M ~ N^2 ~ 4000 (N = 64) and ~1000 (N = 32): an unmasked grid.
    "seed-1core": dict(N=64, K=32768, B=3, P=32, S=256, mask="full"),
    "seed-gpu": dict(N=32, K=8192, B=256, P=32, S=256, mask="full"),
    "science": dict(N=300, K=10_000_000, B=3, P=10, S=1000),
    # PyAutoArray's interferometer profiling cases: an 800 x 800 native grid
    # at 0.05", a circular mask of radius 3.5" (~15,400 image pixels, a
    # bordered mask: the crop's case), 10^6 visibilities, 1,500 source pixels.
    "peer-800": dict(N=800, K=1_000_000, B=3, P=10, S=1500, mask_radius=3.5),
}

_DEFAULTS: dict[str, Any] = dict(
    mask="circular", uv="tracks", pixel_scale=0.05, coefficient=1.0, padded_fraction=0.15, mask_radius=None
)
_OPTIONS = {"N", "shape_native", "K", "B", "P", "S"} | set(_DEFAULTS)


class Problem(dict):
    """Canonical inputs by name (pass as ``**problem``), as :func:`make_problem` makes them.

    Attributes
    ----------
    sizes
        M, K, S, B, P, Ny, Nx and the options the problem was made with.
    """

    sizes: dict[str, Any]

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.sizes.items() if not isinstance(v, np.ndarray))
        return f"Problem({shown})"


def make_problem(preset_or_sizes: str | dict[str, Any] = "tiny", seed: int = 0) -> Problem:
    """Every canonical input of SPEC section 1, valid by construction.

    Parameters
    ----------
    preset_or_sizes
        A preset name (``tiny``, ``small``, ``seed-1core``, ``seed-gpu``,
        ``science``, ``peer-800``) or a dict of sizes and options: ``N`` or ``shape_native``,
        ``K``, ``B``, ``P``, ``S``; ``mask`` (``"circular"``, ``"annulus"``,
        ``"full"``, or a boolean (Ny, Nx) array, True = masked out);
        ``mask_radius`` (arcsec: a circular mask of that radius about the
        grid centre, as PyAutoArray's ``Mask2D.circular``; unset, the
        circle touches the grid's edges); ``uv``
        (``"tracks"``: Earth-rotation synthesis of a random antenna layout, or
        ``"disc"``: uniform in a disc); ``pixel_scale`` (arcsec);
        ``coefficient``; ``padded_fraction`` (rows with fewer than B slots).
        A dict may also start from a preset: ``{"preset": "small", "K": 100}``.
    seed
        Seeds every random choice.

    Returns
    -------
    Problem
        A dict of every canonical input by name, with ``sizes`` (M, K, S, B,
        P, Ny, Nx).

    Raises
    ------
    ValueError
        An unknown preset or option, or a size out of range (named).
    TypeError
        Neither a preset name nor a dict.
    """
    options = _options(preset_or_sizes)
    rng = np.random.default_rng(seed)

    mask = _mask(options)
    ny, nx = mask.shape
    native_index = np.argwhere(~mask).astype(np.int64)
    pixel_scale = float(options["pixel_scale"])
    d = pixel_scale * ARCSEC_TO_RADIANS
    grid = pixel_centres(native_index, (ny, nx), pixel_scale)

    # uv coverage reaching 0.4 cycles per pixel: below Nyquist, so the image
    # grid resolves every baseline.
    k_count = int(options["K"])
    uv_max = 0.4 / d
    uv = _tracks(k_count, uv_max, rng) if options["uv"] == "tracks" else _disc(k_count, uv_max, rng)
    noise = rng.uniform(0.5, 1.5, k_count)

    visibilities = _visibilities(uv, noise, d, (ny, nx), rng)
    s_count, b_count, p_count = int(options["S"]), int(options["B"]), int(options["P"])
    pix_indexes, pix_weights, sources = _mapping(
        grid / d, s_count, b_count, float(options["padded_fraction"]), rng
    )
    neighbors = _neighbors(sources, p_count, rng)

    problem = Problem(
        shape_native=(ny, nx),
        pixel_scale=pixel_scale,
        mask=mask,
        native_index=native_index,
        grid=grid,
        uv=uv,
        noise=noise,
        visibilities=visibilities,
        pix_indexes=pix_indexes,
        pix_weights=pix_weights,
        n_sources=s_count,
        neighbors=neighbors,
        neighbors_sizes=(neighbors >= 0).sum(axis=1).astype(np.int64),
        coefficient=float(options["coefficient"]),
    )
    problem.sizes = dict(
        M=len(grid),
        K=k_count,
        S=s_count,
        B=b_count,
        P=p_count,
        Ny=ny,
        Nx=nx,
        seed=seed,
        **{k: options[k] for k in ("preset", "mask", "uv") if k in options},
    )
    return problem


def crop_to_mask(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs with the native grid cropped to the unmasked pixels' bounding box.

    The offset table spans the whole native grid, (2Ny-1)(2Nx-1) entries,
    while W only reads the offsets between unmasked pixels, which the
    bounding box of ``native_index`` already spans: a mask that leaves a
    border costs table entries (and NUFFT modes) that nothing reads. W_ij
    depends on offsets only, so it is unchanged by the crop, and so are the
    curvature and every kernel built on W. Inputs are assumed valid (SPEC 1).

    Parameters
    ----------
    inputs
        Any superset of ``native_index`` and ``shape_native`` (a whole problem
        will do).

    Returns
    -------
    A copy of ``inputs`` (a :class:`Problem` for a Problem, its sizes
    updated) with

    - ``shape_native``: (Ny', Nx'), the bounding box; ``native_index``
      shifted to it; ``mask``, if given, cropped;
    - ``grid``, if given: the centres on the cropped grid. SPEC 1 puts the
      origin at the grid's centre, so every centre moves by one constant s;
    - ``visibilities``, if given with ``grid`` and ``uv``: V_k exp(-2 pi i
      (s_x u_k + s_y v_k)), the same sky seen from the new origin, so the
      dirty image, chi2 of the data and the log evidence are unchanged (to
      rounding: a caller that keeps the original data, as
      :class:`lenskern.Likelihood` does for its dirty image, loses nothing).

    Every other input is passed through. A mask that leaves no border gives
    the same geometry back.
    """
    index = np.asarray(inputs["native_index"])
    ny, nx = (int(n) for n in inputs["shape_native"])
    top, left = (int(v) for v in index.min(axis=0))
    bottom, right = (int(v) for v in index.max(axis=0))
    shape = (bottom - top + 1, right - left + 1)
    cropped = dict(inputs)
    cropped["shape_native"] = shape
    cropped["native_index"] = index - np.array([top, left], dtype=index.dtype)
    if "mask" in inputs:
        cropped["mask"] = np.asarray(inputs["mask"])[top : bottom + 1, left : right + 1].copy()
    if "grid" in inputs and "pixel_scale" in inputs:
        grid = pixel_centres(cropped["native_index"], shape, float(inputs["pixel_scale"]))
        d = float(inputs["pixel_scale"]) * ARCSEC_TO_RADIANS
        # The constant shift of every centre, from SPEC 1's formula on both grids.
        shift_y = (top + (shape[0] - 1) / 2 - (ny - 1) / 2) * d
        shift_x = ((nx - 1) / 2 - left - (shape[1] - 1) / 2) * d
        cropped["grid"] = grid
        if "visibilities" in inputs and "uv" in inputs and (shift_x or shift_y):
            uv = np.asarray(inputs["uv"])
            phase = TWO_PI * (shift_x * uv[:, 0] + shift_y * uv[:, 1])
            cropped["visibilities"] = np.asarray(inputs["visibilities"]) * np.exp(-1j * phase)
    if isinstance(inputs, Problem):
        problem = Problem(cropped)
        problem.sizes = {**inputs.sizes, "Ny": shape[0], "Nx": shape[1]}
        return problem
    return cropped


def _options(preset_or_sizes: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(preset_or_sizes, str):
        if preset_or_sizes not in PRESETS:
            raise ValueError(
                f"preset_or_sizes: unknown preset {preset_or_sizes!r}; expected one of {list(PRESETS)}"
            )
        given = {"preset": preset_or_sizes}
    elif isinstance(preset_or_sizes, dict):
        given = dict(preset_or_sizes)
    else:
        raise TypeError(
            f"preset_or_sizes: expected a preset name or a dict, got {type(preset_or_sizes).__name__}"
        )
    options = dict(_DEFAULTS)
    if "preset" in given:
        if given["preset"] not in PRESETS:
            raise ValueError(f"preset_or_sizes: unknown preset {given['preset']!r}")
        options.update(PRESETS[given["preset"]])
        if "shape_native" in given:
            options.pop("N", None)
    options.update(given)
    unknown = set(options) - _OPTIONS - {"preset"}
    if unknown:
        raise ValueError(f"preset_or_sizes: unknown option(s) {sorted(unknown)}")
    for key in ("K", "B", "S"):
        if key not in options:
            raise ValueError(f"preset_or_sizes: {key} is required")
        if int(options[key]) < 1:
            raise ValueError(f"preset_or_sizes: {key} must be >= 1, got {options[key]}")
    options.setdefault("P", 0)
    if int(options["P"]) < 0:
        raise ValueError(f"preset_or_sizes: P must be >= 0, got {options['P']}")
    if int(options["B"]) > int(options["S"]):
        raise ValueError(
            f"preset_or_sizes: B = {options['B']} slots cannot map to only S = {options['S']} "
            "distinct source pixels"
        )
    if options["uv"] not in ("tracks", "disc"):
        raise ValueError(f"preset_or_sizes: uv must be 'tracks' or 'disc', got {options['uv']!r}")
    return options


def _mask(options: dict[str, Any]) -> np.ndarray:
    mask = options["mask"]
    if isinstance(mask, np.ndarray):
        if mask.dtype != np.bool_ or mask.ndim != 2:
            raise TypeError("preset_or_sizes: mask must be a 2-d boolean array (True = masked out)")
        if mask.all():
            raise ValueError("preset_or_sizes: mask masks every pixel; M = 0")
        return mask.copy()
    if "shape_native" in options:
        ny, nx = (int(n) for n in options["shape_native"])
    elif "N" in options:
        ny = nx = int(options["N"])
    else:
        raise ValueError("preset_or_sizes: give N or shape_native")
    if ny < 1 or nx < 1:
        raise ValueError(f"preset_or_sizes: grid sizes must be >= 1, got {(ny, nx)}")
    y, x = np.mgrid[:ny, :nx]
    # distance from the centre in units of the half-sides: an ellipse on a
    # non-square grid, so the mask always reaches every edge.
    r = np.hypot((y - (ny - 1) / 2) / max(ny / 2, 1), (x - (nx - 1) / 2) / max(nx / 2, 1))
    radius = options.get("mask_radius")
    if radius is not None and mask != "circular":
        raise ValueError(f"preset_or_sizes: mask_radius needs mask='circular', got {mask!r}")
    if mask == "full":
        out = np.zeros((ny, nx), dtype=bool)
    elif mask == "circular" and radius is not None:
        if not float(radius) > 0:
            raise ValueError(f"preset_or_sizes: mask_radius must be > 0 arcsec, got {radius!r}")
        pixels = float(radius) / float(options["pixel_scale"])
        out = np.hypot(y - (ny - 1) / 2, x - (nx - 1) / 2) > pixels
    elif mask == "circular":
        out = r > 1.0
    elif mask == "annulus":
        out = (r > 1.0) | (r < 0.35)
    else:
        raise ValueError(
            f"preset_or_sizes: mask must be 'circular', 'annulus', 'full' or an array, got {mask!r}"
        )
    if out.all():  # a grid too small for the shape: keep its centre
        out[(ny - 1) // 2, (nx - 1) // 2] = False
    return out


def _disc(k_count: int, uv_max: float, rng: np.random.Generator) -> np.ndarray:
    radius = uv_max * np.sqrt(rng.random(k_count))
    angle = 2 * np.pi * rng.random(k_count)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def _tracks(k_count: int, uv_max: float, rng: np.random.Generator) -> np.ndarray:
    """Earth-rotation synthesis: arcs traced by each baseline over +-4 hours.

    Antennas lie in a centrally condensed random layout at latitude -23 deg
    (an ALMA-like site) observing declination -30 deg.
    """
    n_times, baselines = track_layout(k_count, rng)
    hour = np.linspace(-np.pi / 3, np.pi / 3, n_times)[:, None]
    u, v = track_uv(baselines, hour)
    uv = np.stack([u.ravel(), v.ravel()], axis=1)[:k_count]
    return uv * (uv_max / max(np.hypot(uv[:, 0], uv[:, 1]).max(), 1e-300))


def track_layout(k_count: int, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """The count of hour angles and the baselines (3, n_pairs) in the
    equatorial frame (X toward the meridian, Y east, Z the pole) of an
    Earth-rotation synthesis with at least ``k_count`` (hour, baseline)
    pairs: visibility ``t * n_pairs + b`` is baseline b at the t-th of
    ``n_times`` hour angles evenly spaced over [-pi/3, pi/3]."""
    n_times = max(1, math.ceil(math.sqrt(k_count / 2)))
    n_baselines = math.ceil(k_count / n_times)
    n_antennas = 2
    while n_antennas * (n_antennas - 1) // 2 < n_baselines:
        n_antennas += 1
    radius = rng.random(n_antennas) ** 2
    angle = 2 * np.pi * rng.random(n_antennas)
    east, north = radius * np.cos(angle), radius * np.sin(angle)
    first, second = np.triu_indices(n_antennas, k=1)
    d_east, d_north = east[second] - east[first], north[second] - north[first]
    latitude = np.deg2rad(-23.0)
    return n_times, np.stack([-np.sin(latitude) * d_north, d_east, np.cos(latitude) * d_north])


def track_uv(baselines: np.ndarray, hour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) of equatorial ``baselines`` (3, ...) at hour angles ``hour``
    (radians, broadcast against them), declination -30 deg."""
    bx, by, bz = baselines
    declination = np.deg2rad(-30.0)
    u = np.sin(hour) * bx + np.cos(hour) * by
    v = -np.sin(declination) * np.cos(hour) * bx + np.sin(declination) * np.sin(hour) * by
    return u, v + np.cos(declination) * bz


def _visibilities(
    uv: np.ndarray, noise: np.ndarray, d: float, shape: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """A Gaussian blob off the centre, by its analytic Fourier transform
    (O(K), so the science size needs no M x K sum), plus Gaussian noise."""
    ny, nx = shape
    flux, width = 2.0, 0.15 * min(ny, nx) * d
    y0, x0 = 0.1 * ny * d, -0.05 * nx * d
    u, v = uv[:, 0], uv[:, 1]
    signal = flux * np.exp(-2 * np.pi**2 * width**2 * (u**2 + v**2))
    signal = signal * np.exp(-2j * np.pi * (u * x0 + v * y0))
    return signal + noise * (rng.standard_normal(len(uv)) + 1j * rng.standard_normal(len(uv)))


def _mapping(
    pixels: np.ndarray, s_count: int, b_count: int, padded_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ray-trace image pixels through a singular isothermal sphere and map each
    to its B nearest source pixels, weighted by inverse distance."""
    from scipy.spatial import cKDTree  # here, not at import: it is 0.2 s of every process start

    m_count = len(pixels)
    theta_e = 0.3 * max(np.abs(pixels).max(), 1.0)
    radius = np.hypot(pixels[:, 0], pixels[:, 1])
    deflection = np.divide(theta_e, radius, out=np.zeros_like(radius), where=radius > 0)
    traced = pixels * (1.0 - deflection)[:, None]
    # Source pixels where the traced image pixels land, as adaptive meshes do.
    chosen = rng.choice(m_count, s_count, replace=s_count > m_count)
    sources = traced[chosen] + rng.normal(0.0, 0.25, (s_count, 2))
    distance, index = cKDTree(sources).query(traced, k=b_count)
    distance, index = distance.reshape(m_count, b_count), index.reshape(m_count, b_count)
    weights = 1.0 / (distance + 0.1)
    if b_count > 1 and b_count < s_count:
        padded = rng.random(m_count) < padded_fraction
        kept = rng.integers(1, b_count, m_count)
        drop = padded[:, None] & (np.arange(b_count)[None, :] >= kept[:, None])
        index[drop] = -1
        weights[drop] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    return index.astype(np.int64), weights, sources


def _neighbors(sources: np.ndarray, p_count: int, rng: np.random.Generator) -> np.ndarray:
    """A symmetric neighbour graph of degree at most P and varying degree:
    nearest pairs first, each kept with probability 0.9 while both ends have
    a free slot."""
    from scipy.spatial import cKDTree

    s_count = len(sources)
    neighbors = np.full((s_count, p_count), -1, dtype=np.int64)
    if p_count == 0 or s_count == 1:
        return neighbors
    k = min(p_count, s_count - 1) + 1
    _, index = cKDTree(sources).query(sources, k=k)
    first = np.repeat(np.arange(s_count), k - 1)
    second = index[:, 1:].ravel()
    pairs = np.unique(np.stack([np.minimum(first, second), np.maximum(first, second)], 1), axis=0)
    length = np.hypot(*(sources[pairs[:, 0]] - sources[pairs[:, 1]]).T)
    keep = rng.random(len(pairs)) < 0.9
    degree = np.zeros(s_count, dtype=np.int64)
    for (s, n), kept in zip(pairs[np.argsort(length, kind="stable")], keep, strict=True):
        if kept and s != n and degree[s] < p_count and degree[n] < p_count:
            neighbors[s, degree[s]], neighbors[n, degree[n]] = n, s
            degree[s] += 1
            degree[n] += 1
    return neighbors


#: Elements per array of the seeds' small JIT examples, by tier (the seeds
#: used 5,000,000, every tier but ``tiny``), and the arrays fma sums.
EXAMPLE_SIZES = {"tiny": 10_000}
EXAMPLE_SIZE = 5_000_000
EXAMPLE_WEIGHTS = 4


def example_sizes(tier: str) -> dict[str, int]:
    """The sizes of the seeds' examples at a tier, by the symbols of their cost (n, W)."""
    return {"n": EXAMPLE_SIZES.get(tier, EXAMPLE_SIZE), "W": EXAMPLE_WEIGHTS}


def make_examples(tier: str) -> dict[str, np.ndarray]:
    """The seeds' example arrays at a tier: quadratic coefficients with real
    roots, x >= 0, the fma's weights and arrays; seeded, never changed."""
    n = example_sizes(tier)["n"]
    rng = np.random.default_rng(0)
    return dict(
        a=rng.uniform(5, 10, n),
        b=rng.uniform(10, 20, n),
        c=rng.uniform(-0.1, 0.1, n),
        x=rng.uniform(0, 10, n),
        weights=rng.uniform(-1, 1, EXAMPLE_WEIGHTS),
        arrays=rng.uniform(-1, 1, (EXAMPLE_WEIGHTS, n)),
    )


def _grid_options(sizes: str | dict) -> dict[str, Any]:
    """make_problem's options for ``sizes``, where only the grid, K and the
    uv kind matter: the mapping's sizes may be left out."""
    return _options({"B": 1, "S": 1, **sizes} if isinstance(sizes, dict) else sizes)


def grid_of(sizes: str | dict) -> tuple[tuple[int, int], float]:
    """(shape_native, pixel_scale) of the grid a preset or sizes give."""
    options = _grid_options(sizes)
    return _mask(options).shape, float(options["pixel_scale"])


def generate_chunks(
    sizes: str | dict, chunk: int, seed: int = 0, channels: int = 1
) -> Iterator[tuple[str, float, dict[str, np.ndarray]]]:
    """Visibilities of ``make_problem``'s kind, chunk by chunk, at any K.

    Yields ``(channel, frequency ratio, {"uv", "noise", "visibilities"})``,
    at most ``chunk`` visibilities at a time, so 2 x 10^8 of them never sit
    in memory at once. ``sizes`` is a preset or make_problem's dict (``K``,
    ``N`` or ``shape_native``, ``pixel_scale``); the K visibilities are split
    evenly over ``channels`` channels whose frequencies step down by 2 %, so
    each channel's uv (in its wavelengths) is the first's scaled by that
    ratio. The tracks are make_problem's Earth-rotation synthesis evaluated
    chunk by chunk (uv scaled by the longest baseline, so uv_max bounds
    |uv| rather than being reached), the noise and sky the same
    distributions; each chunk has its own seeded generator, so a chunk is the
    same whatever was generated before it. For a given K the arrays are not
    make_problem's (use :func:`lenskern.store.write_problem` for those).
    """
    options = _grid_options(sizes)
    k_total, n_channels = int(options["K"]), int(channels)
    if n_channels < 1 or n_channels > k_total:
        raise ValueError(f"channels: must be in [1, K = {k_total}], got {channels}")
    ny, nx = _mask(options).shape
    d = float(options["pixel_scale"]) * ARCSEC_TO_RADIANS
    uv_max = 0.4 / d
    per_channel = [k_total // n_channels + (c < k_total % n_channels) for c in range(n_channels)]
    n_times, baselines = track_layout(max(per_channel), np.random.default_rng(seed))
    n_pairs = baselines.shape[1]
    scale = uv_max / max(float(np.sqrt((baselines**2).sum(axis=0)).max()), 1e-300)
    step = 2 * np.pi / 3 / max(n_times - 1, 1)
    for c, k_count in enumerate(per_channel):
        ratio = 1.0 - 0.02 * c
        for index, start in enumerate(range(0, k_count, int(chunk))):
            rng = np.random.default_rng([seed, c, index])
            flat = np.arange(start, min(start + int(chunk), k_count))
            hour = -np.pi / 3 + step * (flat // n_pairs)
            u, v = track_uv(baselines[:, flat % n_pairs], hour)
            uv = np.stack([u, v], axis=1) * (scale * ratio)
            noise = rng.uniform(0.5, 1.5, len(flat))
            visibilities = _visibilities(uv, noise, d, (ny, nx), rng)
            yield str(c), ratio, {"uv": uv, "noise": noise, "visibilities": visibilities}
