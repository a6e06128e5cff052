"""UVFITS files to visibility stores and back, through pyuvdata (the
``uvfits`` extra): :func:`read_uvfits` maps the file's conventions to SPEC
section 1 (its docstring says how), :func:`write_uvfits` writes a problem
as a UVFITS file (its inverse, for tests and for handing a lenskern problem
to other tools)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from lenskern.store import DEFAULT_CHUNK, VisibilityStore, creating

#: Speed of light, m/s (exact, SI).
SPEED_OF_LIGHT = 299_792_458.0


def _stokes_i(uvdata: Any, polarization: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data, sigma, usable) of shape (Nblts, Nfreqs) for one polarization or Stokes I."""
    from pyuvdata import utils

    names = [utils.polnum2str(p) for p in uvdata.polarization_array]
    weight = np.where(uvdata.flag_array, 0.0, uvdata.nsample_array)
    with np.errstate(divide="ignore"):
        sigma = 1.0 / np.sqrt(weight)

    def one(name):
        i = names.index(name)
        return uvdata.data_array[..., i], sigma[..., i], weight[..., i] > 0

    wanted = polarization or ("pI" if "pI" in names else None)
    if wanted is None:
        for pair in (("xx", "yy"), ("rr", "ll")):
            if set(pair) <= set(names):
                (a, sa, oka), (b, sb, okb) = one(pair[0]), one(pair[1])
                # I = (A + B) / 2: the mean of two independent measurements
                return 0.5 * (a + b), 0.5 * np.sqrt(sa**2 + sb**2), oka & okb
        if len(names) == 1:
            wanted = names[0]
        else:
            raise ValueError(f"polarization: the file has {names}; name one to read")
    if wanted not in names:
        raise ValueError(f"polarization: {wanted!r} is not in the file's {names}")
    return one(wanted)


def read_uvfits(
    filename: str | Path,
    path: str | Path,
    chunk: int = DEFAULT_CHUNK,
    polarization: str | None = None,
    rows_per_read: int = 1 << 16,
    overwrite: bool = False,
    **create: Any,
) -> VisibilityStore:
    """A store of a UVFITS file's visibilities, one store channel per
    frequency channel, read ``rows_per_read`` baseline-times at a time
    (memory: that many rows of every channel and polarization).

    Needs pyuvdata (``pip install "lenskern[uvfits]"``). Mapping to SPEC
    section 1:

    - **uv.** A UVFITS file stores UU, VV (seconds) of antenna 1 minus
      antenna 2, with V = sum I exp(-2 pi i (u l + v m)) (AIPS Memo 117);
      pyuvdata reads them into ``uvw_array`` in metres with the opposite sign
      (antenna 2 minus antenna 1, the Miriad convention; its phasing code
      multiplies by exp(-2 pi i w), so V = sum I exp(+2 pi i (u l + v m))
      in its terms). SPEC's ``m_k = sum_i f_i exp(-2 pi i (x_i u_k + y_i v_k))``
      is the file's convention, so ``uv = -uvw_array[:, :2] * nu / c``, in
      wavelengths of each channel's frequency nu: x is l (towards East), y
      is m (North). SPEC draws x to the right, so an image in SPEC's pixels
      has East to the right: mirror it for the sky's East-left view.
    - **visibilities** unchanged: ``data_array`` of one polarization, or
      Stokes I. ``polarization=None`` takes pI if present, else (XX + YY)/2
      or (RR + LL)/2, else the only one; name one ("xx", "pI", ...) to choose.
    - **noise.** A UVFITS weight is 1/sigma^2 (AIPS, CASA's exportuvfits),
      which pyuvdata reads as ``nsample_array`` (flags from its sign), so
      ``noise = 1 / sqrt(nsample)``; Stokes I from two polarizations has
      sigma = sqrt(sigma_a^2 + sigma_b^2) / 2. Flagged visibilities and those
      of weight <= 0 are left out.
    - w is ignored (SPEC has no w-term: the field must be small).
    """
    from pyuvdata import UVData

    if isinstance(rows_per_read, bool) or not isinstance(rows_per_read, int) or rows_per_read < 1:
        raise ValueError(f"rows_per_read: must be an integer >= 1, got {rows_per_read!r}")
    header = UVData()
    try:
        header.read(str(filename), read_data=False)
    except FileNotFoundError:
        raise ValueError(f"filename: no file {filename}") from None
    except Exception as error:  # astropy and pyuvdata raise KeyError, OSError, ValueError... on a bad file
        raise ValueError(
            f"filename: {filename} is not a readable UVFITS file ({type(error).__name__}: {error})"
        ) from None
    frequencies = np.asarray(header.freq_array, dtype=np.float64).ravel()
    spws = np.asarray(header.flex_spw_id_array).ravel()
    names = [f"spw{spw}-{i}" for i, spw in enumerate(spws)]
    with creating(path, chunk, overwrite, create) as store:
        for name, frequency in zip(names, frequencies):
            store.add_channel(name, frequency=float(frequency))
        for first in range(0, header.Nblts, rows_per_read):
            uvdata = UVData()
            rows = np.arange(first, min(first + rows_per_read, header.Nblts))
            try:
                uvdata.read(str(filename), blt_inds=rows, strict_uvw_antpos_check=False)
            except Exception as error:
                raise ValueError(
                    f"filename: rows {rows[0]}:{rows[-1] + 1} of {filename} cannot be read "
                    f"({type(error).__name__}: {error})"
                ) from None
            data, sigma, usable = _stokes_i(uvdata, polarization)
            uvw = np.asarray(uvdata.uvw_array, dtype=np.float64)
            for f, (name, frequency) in enumerate(zip(names, frequencies)):
                keep = usable[:, f]
                uv = -uvw[keep, :2] * (frequency / SPEED_OF_LIGHT)
                store.append(name, uv, sigma[keep, f], data[keep, f])
        store.finish()
    return store


def write_uvfits(
    problem: dict,
    filename: str | Path,
    frequencies: Any = (230e9,),
    flagged: Any = None,
) -> None:
    """A UVFITS file (through pyuvdata) whose visibilities are ``problem``'s:
    :func:`read_uvfits`'s inverse, for tests and for handing a lenskern
    problem to other tools.

    Each visibility is its own baseline-time (antenna positions are
    placeholders; the uvw are the problem's, so pyuvdata warns that they do
    not match the antennas). ``uv`` is taken in wavelengths of the first
    frequency; with several ``frequencies`` every visibility is observed in
    each, with the same uvw in metres (so uv scaled by nu / nu_0), the same
    noise and visibilities. ``flagged``: a boolean (K,) of visibilities
    written as flagged. Stokes I, double precision.
    """
    import astropy.units as units
    from astropy.coordinates import EarthLocation
    from pyuvdata import Telescope, UVData

    frequencies = np.atleast_1d(np.asarray(frequencies, dtype=np.float64))
    uv, noise = np.asarray(problem["uv"]), np.asarray(problem["noise"])
    k_count, n_freqs = len(noise), len(frequencies)
    n_antennas = 2
    while n_antennas * (n_antennas - 1) // 2 < min(k_count, 64):
        n_antennas += 1
    pairs = [(a, b) for a in range(n_antennas) for b in range(a + 1, n_antennas)]
    n_times = math.ceil(k_count / len(pairs))
    site = EarthLocation.from_geodetic(
        lon=-67.755 * units.deg, lat=-23.029 * units.deg, height=5058.7 * units.m
    )
    layout = np.random.default_rng(0).normal(0.0, 100.0, (n_antennas, 3))
    telescope = Telescope.new(
        "lenskern", location=site, antenna_positions=layout, instrument="lenskern", mount_type="alt-az",
        antenna_names=[f"A{i}" for i in range(n_antennas)], antenna_numbers=list(range(n_antennas)),
        feeds=["x", "y"], feed_angle=[np.pi / 2, 0.0],
    )  # fmt: skip
    rows = n_times * len(pairs)
    # uvfits needs channels no further apart than their width
    width = float(np.diff(np.sort(frequencies)).max()) if n_freqs > 1 else 1e6
    shape = (rows, n_freqs, 1)
    data, weight = np.zeros(shape, np.complex128), np.zeros(shape)
    flags = np.ones(shape, bool)  # the padding rows past K are flagged
    data[:k_count] = np.asarray(problem["visibilities"])[:, None, None]
    weight[:k_count] = (1.0 / noise**2)[:, None, None]
    flags[:k_count] = False if flagged is None else np.asarray(flagged)[:, None, None]
    uvdata = UVData.new(
        freq_array=frequencies, polarization_array=["pI"], times=2460000.5 + np.arange(n_times) / 86400.0,
        telescope=telescope, antpairs=pairs, do_blt_outer=True, data_array=data, nsample_array=weight,
        flag_array=flags, integration_time=1.0, channel_width=width,
        phase_center_catalog={0: dict(cat_name="lens", cat_type="sidereal", cat_lon=1.0, cat_lat=-0.5,
                                      cat_frame="icrs", cat_epoch=2000.0)},
        phase_center_id_array=np.zeros(rows, int),
    )  # fmt: skip
    uvw = np.zeros((rows, 3))
    uvw[:k_count, :2] = -uv * (SPEED_OF_LIGHT / frequencies[0])  # read_uvfits's mapping, inverted
    uvw[k_count:, 0] = 1.0  # padding rows: flagged, any non-zero baseline
    uvdata.uvw_array = uvw
    uvdata.write_uvfits(str(filename), strict_uvw_antpos_check=False)
