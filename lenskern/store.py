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

UVFITS files become stores through :mod:`lenskern.uvfits` (pyuvdata, the
``uvfits`` extra); generated visibilities at any K come from
:func:`lenskern.problems.generate_chunks` (:func:`write_generated`).
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

#: Visibilities per chunk unless asked otherwise: 2^22 visibilities are 160 MiB
#: of uv, noise and visibilities (~0.5 GiB while transformed), large enough
#: that a NUFFT's fixed cost per chunk (the FFT of its fine grid, set by the
#: image grid, not the chunk) is paid on millions of points, small enough
#: that two chunks in flight fit any worker. ``python -m lenskern stream
#: --chunk N`` times the stages (transform, read) at any chunk size.
DEFAULT_CHUNK = 1 << 22

FORMAT = {"format": "visibilities", "version": 1}
ARRAYS = {"uv": (np.float64, (2,)), "noise": (np.float64, ()), "visibilities": (np.complex128, ())}
_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


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
def creating(path: str | Path, chunk: int, overwrite: bool, create: dict) -> Iterator[VisibilityStore]:
    """A new store for a writer, removed again if the writer fails (a local
    folder; elsewhere it stays, marked incomplete); the writer calls
    :meth:`VisibilityStore.finish` last."""
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
    with creating(path, chunk, overwrite, create) as store:
        store.add_channel(channel)
        k_count = len(problem["noise"])
        for start in range(0, k_count, store.chunk):
            part = slice(start, start + store.chunk)
            store.append(channel, problem["uv"][part], problem["noise"][part], problem["visibilities"][part])
        store.finish(problem.get("shape_native"), problem.get("pixel_scale"))
    return store


def write_generated(
    path: str | Path,
    sizes: str | dict,
    seed: int = 0,
    chunk: int = DEFAULT_CHUNK,
    channels: int = 1,
    overwrite: bool = False,
    **create: Any,
) -> VisibilityStore:
    """A store of :func:`lenskern.problems.generate_chunks`'s visibilities, written as they are made
    (memory: one chunk). Channel frequencies are written as ratios to the
    first channel's; the grid the sizes give is recorded as its geometry."""
    from lenskern import problems

    with creating(path, chunk, overwrite, create) as store:
        chunks = problems.generate_chunks(sizes, seed=seed, chunk=store.chunk, channels=channels)
        for channel, ratio, arrays in chunks:
            if channel not in store.channels:
                store.add_channel(channel, frequency=ratio)
            store.append(channel, **arrays)
        store.finish(*problems.grid_of(sizes))
    return store
