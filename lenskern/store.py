"""Visibilities on disk in chunks: written chunk by chunk at any size, read a chunk at a time.

A :class:`VisibilityStore` holds SPEC section 1's ``uv`` (wavelengths),
``noise`` (sigma) and ``visibilities`` of one or more channels (spectral
windows, frequency channels: each a separate list of visibilities with its
own uv in wavelengths of its own frequency). The likelihood's data parts are
sums over every visibility of every channel, so :mod:`lenskern.stream` reads
a store one chunk at a time and never holds more.

**Format: Zarr (version 3), uncompressed by default.** Chosen over HDF5
because

- every chunk is an object of its own (a file in a directory, a key in an
  object store): many readers - threads of one process, processes, Dask
  workers on other nodes - read different chunks at once with no lock and no
  shared file handle. h5py serialises every call in a process behind one
  global lock, and several processes on one HDF5 file need its locking or
  SWMR rules; a Dask worker's threads would take turns.
- growing an array along K is a metadata update, so a store is written chunk
  by chunk without knowing K in advance (an observation imported piece by
  piece, a generator of 2 x 10^8 visibilities).
- a directory of plain files is what a cluster's shared file system or an
  object store (through fsspec) serves as is; Dask reads Zarr natively.

Uncompressed, because noise-dominated float64 data hardly compress: on a
4 M-visibility problem, Blosc lz4 with byte shuffle stored 88.5 % of the
bytes at 2.5x the read time, Zstd level 1 96 % at 4x (and reading
uncompressed chunks from the page cache ran at ~0.9 GB/s on one core). Pass
``compressors=`` to :meth:`VisibilityStore.create` where disk, not time, is
short.

Layout::

    <path>/                 group; attribute "lenskern": {"format": "visibilities",
                            "version": 1, "chunk", "channels": [names, in order],
                            "id" (random, per store), "complete", "identity",
                            "geometry": {"shape_native", "pixel_scale"} or null}
    <path>/<channel>/       group; attributes "frequency" (Hz, or null) and
                            "manifest" ({array: {chunk key: bytes}}, set by finish)
        uv            (K_c, 2) float64     u, v in wavelengths (SPEC section 1)
        noise         (K_c,)   float64     sigma_k, the same for Re and Im
        visibilities  (K_c,)   complex128  V_k

each chunked along K by the store's ``chunk``. Values are not checked when
written: :mod:`lenskern.stream` checks each chunk as it reads it and names the
chunk that is bad (a store written by someone else can hold anything).

**Completeness.** A writer calls :meth:`VisibilityStore.finish` last: it
checks that every chunk of every array was written, records the chunk
manifest (each chunk object's size) and an ``identity`` (a digest of the
store's random id and that manifest), and sets ``complete``. Any later write
clears ``complete``. :meth:`VisibilityStore.verify` - run before every sum -
refuses a store that is not complete, whose arrays' dtypes or lengths are
not the layout's, whose chunks differ from the manifest (a missing chunk,
which Zarr would read as zeros, or a truncated one), or that was written for
another geometry than the one asked for. Partial sums carry the identity, so
a resume cannot mix two stores.

UVFITS (through pyuvdata, the ``uvfits`` extra) is read by
:func:`read_uvfits`; the mapping of its conventions to SPEC section 1 is in
that function's docstring.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lenskern.conventions import ARCSEC_TO_RADIANS

#: Visibilities per chunk unless asked otherwise: 2^22 visibilities are 160 MiB
#: of uv, noise and visibilities (~0.5 GiB while transformed), large enough
#: that a NUFFT's fixed cost per chunk (the FFT of its fine grid: ~0.13 s for
#: both transforms at the science grid, N = 300) is ~3 % of its spreading
#: (~1 us per visibility here), small enough that two chunks in flight fit
#: any worker.
DEFAULT_CHUNK = 1 << 22

FORMAT = {"format": "visibilities", "version": 1}
ARRAYS = {"uv": (np.float64, (2,)), "noise": (np.float64, ()), "visibilities": (np.complex128, ())}
_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")

#: Speed of light, m/s (exact, SI).
SPEED_OF_LIGHT = 299_792_458.0


@dataclass(frozen=True)
class Block:
    """One chunk of one channel: visibilities ``start:stop``; ``key`` names it."""

    channel: str
    index: int
    start: int
    stop: int

    @property
    def key(self) -> tuple[str, int]:
        return (self.channel, self.index)

    def __len__(self) -> int:
        return self.stop - self.start

    def __str__(self) -> str:
        return f"channel {self.channel!r} chunk {self.index} (visibilities {self.start}:{self.stop})"


class VisibilityStore:
    """A Zarr group of channels of visibilities (the module docstring has the layout).

    Make one with :meth:`create` (then :meth:`append` chunk by chunk, or
    :func:`write_problem`, :func:`write_generated`, :func:`read_uvfits`) and
    open one with :meth:`open`.
    """

    def __init__(self, group: Any, path: str) -> None:
        meta = dict(group.attrs.get("lenskern", {}))
        if {k: meta.get(k) for k in FORMAT} != FORMAT:
            raise ValueError(f"store: {path} is not a lenskern visibility store (format {FORMAT})")
        self._group = group
        self.path = path
        self.chunk = int(meta["chunk"])
        self._compressors = None

    @classmethod
    def create(
        cls, path: str | Path, chunk: int = DEFAULT_CHUNK, compressors: Any = None, overwrite: bool = False
    ) -> VisibilityStore:
        """A new, empty store at ``path`` (a folder, or any URL zarr takes),
        chunked every ``chunk`` visibilities. ``compressors``: zarr's codecs
        (``None``: uncompressed, as the module docstring explains)."""
        import zarr

        if int(chunk) < 1:
            raise ValueError(f"chunk: must be >= 1 visibility, got {chunk}")
        try:
            group = zarr.open_group(str(path), mode="w" if overwrite else "w-")
        except FileExistsError:
            how = "overwrite=True (lenskern store --overwrite)"
            raise ValueError(f"store: {path} already exists; pass {how} to replace it") from None
        group.attrs["lenskern"] = {
            **FORMAT, "chunk": int(chunk), "channels": [], "id": uuid.uuid4().hex, "complete": False,
            "identity": None, "geometry": None,
        }  # fmt: skip
        store = cls(group, str(path))
        store._compressors = compressors
        return store

    @classmethod
    def open(cls, path: str | Path, mode: str = "r", compressors: Any = None) -> VisibilityStore:
        """An existing store; ``mode="r+"`` to append (``compressors`` for
        the channels added through it, as in :meth:`create`)."""
        import zarr

        try:
            group = zarr.open_group(str(path), mode=mode)
        except FileNotFoundError:
            raise ValueError(f"store: no store at {path}") from None
        store = cls(group, str(path))
        store._compressors = compressors
        return store

    @property
    def channels(self) -> list[str]:
        """The channels' names, in the order they were added."""
        return list(self._group.attrs["lenskern"]["channels"])

    def frequency(self, channel: str) -> float | None:
        """The channel's frequency in Hz, if it was given."""
        return self._channel(channel).attrs.get("frequency")

    def size(self, channel: str | None = None) -> int:
        """Visibilities in ``channel``, or in all channels."""
        if channel is None:
            return sum(self.size(name) for name in self.channels)
        return int(self._channel(channel)["noise"].shape[0])

    def add_channel(self, name: str, frequency: float | None = None, size: int = 0) -> None:
        """A new, empty channel (or ``size`` visibilities to fill by :meth:`write`)."""
        if not _CHANNEL_NAME.match(name):
            raise ValueError(f"channel: name {name!r} must be letters, digits, '_', '.' or '-'")
        if name in self.channels:
            raise ValueError(f"channel: {name!r} already exists in {self.path}")
        self._mark_incomplete()
        group = self._group.create_group(name)
        group.attrs["frequency"] = None if frequency is None else float(frequency)
        for array, (dtype, tail) in ARRAYS.items():
            group.create_array(
                array, shape=(int(size), *tail), chunks=(self.chunk, *tail), dtype=dtype,
                compressors=self._compressors, fill_value=0,
            )  # fmt: skip
        meta = dict(self._group.attrs["lenskern"])
        meta["channels"] = [*meta["channels"], name]
        self._group.attrs["lenskern"] = meta

    def append(self, channel: str, uv: Any, noise: Any, visibilities: Any) -> None:
        """Append visibilities to ``channel`` (added if new). Shapes and dtypes
        are checked here; values where they are read."""
        if channel not in self.channels:
            self.add_channel(channel)
        start = self.size(channel)
        self.write(channel, start, uv, noise, visibilities, grow=True)

    def write(self, channel: str, start: int, uv: Any, noise: Any, visibilities: Any, grow=False) -> None:
        """Write visibilities ``start:start + len(noise)`` of ``channel``
        (which must have room, or ``grow`` it)."""
        arrays = _arrays(uv, noise, visibilities)
        stop = start + len(arrays["noise"])
        group = self._channel(channel)
        self._mark_incomplete()
        for name, values in arrays.items():
            array = group[name]
            if stop > array.shape[0]:
                if not grow:
                    raise ValueError(f"{name}: visibilities {start}:{stop} do not fit {channel!r} of K = "
                                     f"{array.shape[0]}")  # fmt: skip
                array.resize((stop, *array.shape[1:]))
            array[start:stop] = values

    def read(self, channel: str, start: int, stop: int) -> dict[str, np.ndarray]:
        """``uv``, ``noise`` and ``visibilities`` ``start:stop`` of ``channel``, as NumPy arrays."""
        group = self._channel(channel)
        return {name: np.asarray(group[name][start:stop]) for name in ARRAYS}

    def read_all(self) -> dict[str, np.ndarray]:
        """Every channel's visibilities concatenated, in channel order: the
        in-memory problem a store holds (for tests and small stores only)."""
        parts = [self.read(name, 0, self.size(name)) for name in self.channels]
        return {name: np.concatenate([part[name] for part in parts]) for name in ARRAYS}

    def blocks(self, chunk: int | None = None) -> list[Block]:
        """Every chunk of every channel, ``chunk`` visibilities each (the
        store's own chunk by default; any size reads correctly, and a
        multiple of the store's reads whole chunks only)."""
        chunk = self.chunk if chunk is None else int(chunk)
        if chunk < 1:
            raise ValueError(f"chunk: must be >= 1 visibility, got {chunk}")
        return [
            Block(name, index, start, min(start + chunk, size))
            for name in self.channels
            for size in (self.size(name),)
            for index, start in enumerate(range(0, size, chunk))
        ]

    # --- completeness and identity (the module docstring) ---------------------

    @property
    def meta(self) -> dict:
        return dict(self._group.attrs["lenskern"])

    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete"))

    @property
    def identity(self) -> str | None:
        """A digest of the store's id and chunk manifest, set by :meth:`finish`."""
        return self.meta.get("identity")

    @property
    def geometry(self) -> dict | None:
        """``{"shape_native", "pixel_scale"}`` the data were written for, or None."""
        return self.meta.get("geometry")

    def _set_meta(self, **values: Any) -> None:
        self._group.attrs["lenskern"] = {**self.meta, **values}

    def _mark_incomplete(self) -> None:
        if self.meta.get("complete", True):  # stores of version 1 before markers read as complete
            self._set_meta(complete=False, identity=None)

    def _manifest(self, channel: str) -> dict[str, dict[str, int]]:
        """``{array: {chunk key: bytes}}`` as stored now."""
        from zarr.core.sync import sync

        store, prefix = self._group.store, self._group.path

        async def listing(array: str) -> dict[str, int]:
            root = "/".join(part for part in (prefix, channel, array, "c") if part) + "/"
            return {key[len(root) :]: await store.getsize(key) async for key in store.list_prefix(root)}

        return {array: sync(listing(array)) for array in ARRAYS}

    def _expected_chunks(self, channel: str) -> dict[str, list[str]]:
        """The chunk keys each array of ``channel`` must have (K > 0)."""
        group = self._channel(channel)
        keys = {}
        for array in ARRAYS:
            n = math.ceil(group[array].shape[0] / self.chunk)
            keys[array] = [f"{i}/0" if array == "uv" else f"{i}" for i in range(n)]
        return keys

    def _identity(self, manifests: dict[str, Any]) -> str:
        text = json.dumps([self.meta["id"], self.chunk, manifests], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def finish(self, shape_native: Any = None, pixel_scale: float | None = None) -> None:
        """Mark the store complete, last: every chunk written, the manifest
        and identity recorded; ``shape_native``/``pixel_scale``, the geometry
        the data were made for, if known. Raises ValueError if a chunk is missing."""
        manifests = {}
        for channel in self.channels:
            manifest = self._manifest(channel)
            for array, keys in self._expected_chunks(channel).items():
                missing = [key for key in keys if key not in manifest[array]]
                if missing:
                    raise ValueError(
                        f"store: channel {channel!r} {array} chunk {missing[0]} was never written"
                    )
            self._channel(channel).attrs["manifest"] = manifest
            manifests[channel] = manifest
        geometry = self.geometry
        if shape_native is not None and pixel_scale is not None:
            geometry = {"shape_native": [int(n) for n in shape_native], "pixel_scale": float(pixel_scale)}
        self._set_meta(complete=True, identity=self._identity(manifests), geometry=geometry)

    def verify(self, shape_native: Any = None, pixel_scale: float | None = None) -> None:
        """Refuse, with a ValueError naming it, a store that is incomplete,
        whose arrays are not the layout's, whose chunks differ from the
        manifest, or that was written for another geometry than the one given."""
        if not self.complete:
            raise ValueError(
                f"store: {self.path} is incomplete: its writer did not finish (killed, or failed); "
                "write it again (lenskern store --overwrite), or call finish() after the last append"
            )
        manifests = {}
        for channel in self.channels:
            group = self._channel(channel)
            lengths = set()
            for array, (dtype, tail) in ARRAYS.items():
                stored = group[array]
                if stored.dtype != dtype or tuple(stored.shape[1:]) != tail:
                    raise ValueError(
                        f"store: channel {channel!r} {array} is {stored.dtype} {stored.shape}, "
                        f"the layout says {np.dtype(dtype)} (K, {', '.join(map(str, tail))})".replace(
                            ", )", ")"
                        )
                    )
                lengths.add(stored.shape[0])
            if len(lengths) != 1:
                raise ValueError(
                    f"store: channel {channel!r} uv, noise and visibilities differ in length "
                    f"({', '.join(str(group[a].shape[0]) for a in ARRAYS)})"
                )
            recorded, manifest = group.attrs.get("manifest", {}), self._manifest(channel)
            for array in ARRAYS:
                for key, size in recorded.get(array, {}).items():
                    now = manifest[array].get(key)
                    if now != size:
                        first = int(key.split("/")[0]) * self.chunk
                        last = min(first + self.chunk, group[array].shape[0])
                        where = f"visibilities {first}:{last}"
                        state = "is missing" if now is None else f"has {now} bytes, {size} were written"
                        raise ValueError(
                            f"store: channel {channel!r} {array} chunk {key} ({where}) {state}; "
                            "the store was changed or damaged after it was written"
                        )
            manifests[channel] = recorded
        if self._identity(manifests) != self.identity:
            raise ValueError(f"store: {self.path}'s identity does not match its manifest (edited by hand?)")
        if self.geometry and shape_native is not None:
            asked = {"shape_native": [int(n) for n in shape_native], "pixel_scale": float(pixel_scale)}
            if asked != self.geometry:
                written = self.geometry
                raise ValueError(
                    f"shape_native: the store was written for the geometry shape_native "
                    f"{tuple(written['shape_native'])}, pixel_scale {written['pixel_scale']:g}; "
                    f"{tuple(asked['shape_native'])}, {asked['pixel_scale']:g} was asked for"
                )

    def _channel(self, channel: str) -> Any:
        if channel not in self.channels:
            raise ValueError(f"channel: {channel!r} is not in {self.path} (channels {self.channels})")
        return self._group[channel]

    def __repr__(self) -> str:
        channels, k_count = len(self.channels), self.size()
        return f"VisibilityStore({self.path!r}, channels={channels}, K={k_count}, chunk={self.chunk})"


def _arrays(uv: Any, noise: Any, visibilities: Any) -> dict[str, np.ndarray]:
    """The three arrays as the store's dtypes, shapes checked (values are not)."""
    uv, noise, visibilities = np.asarray(uv), np.asarray(noise), np.asarray(visibilities)
    for name, value, kinds in (
        ("uv", uv, "fiu"),
        ("noise", noise, "fiu"),
        ("visibilities", visibilities, "cfiu"),
    ):
        if value.dtype.kind not in kinds:
            raise TypeError(f"{name}: expected a numeric array, got dtype {value.dtype}")
    if uv.ndim != 2 or uv.shape[1] != 2:
        raise ValueError(f"uv: expected shape (K, 2), got {uv.shape}")
    if noise.shape != (len(uv),) or visibilities.shape != (len(uv),):
        raise ValueError(
            f"noise, visibilities: expected shape ({len(uv)},) as uv gives, got {noise.shape} and "
            f"{visibilities.shape}"
        )
    return {
        "uv": np.ascontiguousarray(uv, dtype=np.float64),
        "noise": np.ascontiguousarray(noise, dtype=np.float64),
        "visibilities": np.ascontiguousarray(visibilities, dtype=np.complex128),
    }


@contextmanager
def _new_store(path: str | Path, chunk: int, overwrite: bool, create: dict) -> Iterator[VisibilityStore]:
    """A store being written: removed again if the writer fails (a local
    folder; elsewhere it stays, marked incomplete)."""
    existed = Path(str(path)).exists()
    store = VisibilityStore.create(path, chunk=chunk, overwrite=overwrite, **create)
    try:
        yield store
    except BaseException:
        if Path(str(path)).is_dir() and (overwrite or not existed):
            shutil.rmtree(str(path), ignore_errors=True)
        raise


def write_problem(
    path: str | Path,
    problem: dict,
    chunk: int = DEFAULT_CHUNK,
    channel: str = "0",
    overwrite: bool = False,
    **create: Any,
) -> VisibilityStore:
    """A store holding ``problem``'s ``uv``, ``noise`` and ``visibilities``
    exactly (float64 and complex128 bits), as one channel, written a chunk
    at a time; its geometry (``shape_native``, ``pixel_scale``) recorded
    when the problem has one."""
    with _new_store(path, chunk, overwrite, create) as store:
        store.add_channel(channel)
        k_count = len(problem["noise"])
        for start in range(0, k_count, store.chunk):
            part = slice(start, start + store.chunk)
            store.append(channel, problem["uv"][part], problem["noise"][part], problem["visibilities"][part])
        store.finish(problem.get("shape_native"), problem.get("pixel_scale"))
    return store


def generate(
    sizes: str | dict, seed: int = 0, chunk: int = DEFAULT_CHUNK, channels: int = 1
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
    make_problem's (use :func:`write_problem` for those).
    """
    from lenskern import problems

    # only the grid, K and the uv kind matter here: the mapping's sizes may be left out
    options = problems._options({"B": 1, "S": 1, **sizes} if isinstance(sizes, dict) else sizes)
    k_total, n_channels = int(options["K"]), int(channels)
    if n_channels < 1 or n_channels > k_total:
        raise ValueError(f"channels: must be in [1, K = {k_total}], got {channels}")
    ny, nx = problems._mask(options).shape
    d = float(options["pixel_scale"]) * ARCSEC_TO_RADIANS
    uv_max = 0.4 / d
    per_channel = [k_total // n_channels + (c < k_total % n_channels) for c in range(n_channels)]
    n_times, baselines = problems.track_layout(max(per_channel), np.random.default_rng(seed))
    n_pairs = baselines.shape[1]
    scale = uv_max / max(float(np.sqrt((baselines**2).sum(axis=0)).max()), 1e-300)
    step = 2 * np.pi / 3 / max(n_times - 1, 1)
    for c, k_count in enumerate(per_channel):
        ratio = 1.0 - 0.02 * c
        for index, start in enumerate(range(0, k_count, int(chunk))):
            rng = np.random.default_rng([seed, c, index])
            flat = np.arange(start, min(start + int(chunk), k_count))
            hour = -np.pi / 3 + step * (flat // n_pairs)
            u, v = problems.track_uv(baselines[:, flat % n_pairs], hour)
            uv = np.stack([u, v], axis=1) * (scale * ratio)
            noise = rng.uniform(0.5, 1.5, len(flat))
            visibilities = problems._visibilities(uv, noise, d, (ny, nx), rng)
            yield str(c), ratio, {"uv": uv, "noise": noise, "visibilities": visibilities}


def write_generated(
    path: str | Path,
    sizes: str | dict,
    seed: int = 0,
    chunk: int = DEFAULT_CHUNK,
    channels: int = 1,
    overwrite: bool = False,
    **create: Any,
) -> VisibilityStore:
    """A store of :func:`generate`'s visibilities, written as they are made
    (memory: one chunk). Channel frequencies are written as ratios to the
    first channel's; the grid the sizes give is recorded as its geometry."""
    from lenskern import problems

    options = problems._options({"B": 1, "S": 1, **sizes} if isinstance(sizes, dict) else sizes)
    with _new_store(path, chunk, overwrite, create) as store:
        for channel, ratio, arrays in generate(sizes, seed=seed, chunk=store.chunk, channels=channels):
            if channel not in store.channels:
                store.add_channel(channel, frequency=ratio)
            store.append(channel, **arrays)
        store.finish(problems._mask(options).shape, float(options["pixel_scale"]))
    return store


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
    with _new_store(path, chunk, overwrite, create) as store:
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
