"""The likelihood's data parts accumulated from a visibility store, one chunk at a time.

The offset table, the dirty image, chi2 of the data and the noise
normalization (SPEC section 2) are sums over visibilities, so a store of any
size (:mod:`lenskern.store`) is summed chunk by chunk, channels one after the
other, into a :class:`Partial`; partial sums of disjoint chunks add. Memory:
two chunks (one read ahead while the other is transformed) plus the NUFFT's
fine grid and the table, whatever K is:

    partial = accumulate("obs.zarr", shape_native=..., pixel_scale=..., native_index=...)
    like = lk.Likelihood.from_parts(**partial.parts())   # or Likelihood.from_store(...)

**Per chunk, one kernel call.** A chunk's sums are the ``data_parts``
kernel (its math in the reference's docstring, its NUFFT implementations'
shared pass in :mod:`lenskern.chunk`), run through the registry as
``ducc0.nufft`` where ducc0 is installed, ``numpy.nufft`` (FINUFFT)
otherwise (``library=``; :func:`lenskern.conventions.nufft_library`): the
same implementations the agreement tests hold to the reference. This module
is the driver: it reads ahead, checks, adds and reports; :mod:`lenskern.cluster`
shares it on Dask. Accuracy: the NUFFT's (``lenskern.conventions.NUFFT_EPS``,
relative to the largest possible value: sum_k 1/sigma_k^2 for the table,
sum_k |V_k|/sigma_k^2 for the image).

**Bad data in a chunk** (NaN, noise <= 0, a wrong shape) raise
:class:`ChunkError`, a ``ValueError`` naming the chunk (channel, index,
visibility range) that keeps the sums of every chunk done so far
(``error.partial``) and lists the chunks left (``error.remaining``): fix the
data and call again with ``start=error.partial``; only the remaining chunks
are read. The same holds on a Dask cluster (:mod:`lenskern.cluster`).
"""

from __future__ import annotations

import hashlib
import numbers
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np
from tqdm import tqdm

from lenskern import conventions, registry, validate
from lenskern.chunk import table_shape
from lenskern.store import Block, VisibilityStore

#: The inputs that fix the geometry of the data parts.
GEOMETRY_INPUTS = ("shape_native", "pixel_scale", "native_index")


@dataclass(frozen=True)
class Geometry:
    """The image grid the data parts are computed on (SPEC section 1)."""

    shape_native: tuple[int, int]
    pixel_scale: float
    native_index: np.ndarray = field(repr=False)

    @classmethod
    def from_inputs(cls, **inputs: Any) -> Geometry:
        """From any superset of ``shape_native``, ``pixel_scale`` and
        ``native_index`` (or ``mask``, from which it is derived); ``grid`` and
        ``mask``, if given, are checked against them."""
        names = ("shape_native", "pixel_scale", "native_index", "grid", "mask")
        given = {name: inputs[name] for name in names if name in inputs}
        if "native_index" not in given and "mask" in given:
            given["native_index"] = np.argwhere(~np.asarray(given["mask"], dtype=bool))
        missing = [name for name in GEOMETRY_INPUTS if name not in given]
        if missing:
            raise TypeError(f"geometry: needs input(s) {', '.join(map(repr, missing))} (or mask)")
        checked = validate.check(given)
        return cls(checked["shape_native"], checked["pixel_scale"], checked["native_index"])

    @property
    def table_shape(self) -> tuple[int, int]:
        return table_shape(self.shape_native)

    @property
    def key(self) -> str:
        """A digest of the geometry: partial sums add only when theirs agree."""
        digest = hashlib.sha256(repr((self.shape_native, self.pixel_scale)).encode())
        digest.update(self.native_index.tobytes())
        return digest.hexdigest()[:16]


@dataclass
class Partial:
    """Sums over the visibilities of the chunks in ``done``.

    ``table`` is the offset table's sum (each chunk's even to the last
    bit, so the sum is too), ``image`` the dirty image's. Partials of
    disjoint chunks of the same geometry and chunk size add with ``+``.
    """

    geometry: Geometry
    chunk: int
    table: np.ndarray
    image: np.ndarray
    chi2_data: float = 0.0
    noise_normalization: float = 0.0
    visibilities: int = 0
    done: frozenset = frozenset()
    seconds: dict = field(default_factory=dict)
    #: the identity of the store summed (VisibilityStore.identity)
    store: str = ""

    @classmethod
    def zero(cls, geometry: Geometry, chunk: int, store: str = "") -> Partial:
        table, image = np.zeros(geometry.table_shape), np.zeros(len(geometry.native_index))
        return cls(geometry, int(chunk), table, image, store=store)

    def __add__(self, other: Partial) -> Partial:
        if not isinstance(other, Partial):
            return NotImplemented
        if other.geometry.key != self.geometry.key or other.chunk != self.chunk:
            raise ValueError(
                "start: partial sums of another geometry or chunk size "
                f"({other.geometry.shape_native}, chunk {other.chunk} vs {self.geometry.shape_native}, "
                f"chunk {self.chunk})"
            )
        if self.store and other.store and self.store != other.store:
            raise ValueError(
                f"start: partial sums of another store (identity {other.store}, this one {self.store})"
            )
        both = self.done & other.done
        if both:
            raise ValueError(f"start: chunks {sorted(both)[:5]} would be counted twice")
        return Partial(
            self.geometry, self.chunk, self.table + other.table, self.image + other.image,
            self.chi2_data + other.chi2_data, self.noise_normalization + other.noise_normalization,
            self.visibilities + other.visibilities, self.done | other.done,
            {k: self.seconds.get(k, 0.0) + other.seconds.get(k, 0.0) for k in self.seconds | other.seconds},
            store=self.store or other.store,
        )  # fmt: skip

    def w_offsets(self) -> np.ndarray:
        return self.table.copy()

    def parts(self) -> dict[str, Any]:
        """What :meth:`lenskern.Likelihood.from_parts` takes."""
        if not self.visibilities:
            raise ValueError("store: no visibilities were summed (K = 0)")
        return dict(
            native_index=self.geometry.native_index, w_offsets=self.w_offsets(),
            dirty_image=self.image.copy(), chi2_data=float(self.chi2_data),
            noise_normalization=float(self.noise_normalization),
        )  # fmt: skip


class ChunkError(ValueError):
    """Bad data in one or more chunks; the sums of the good ones are kept.

    ``partial``: the sums so far (pass as ``start=`` to resume);
    ``failed``: ``{(channel, index): why}``; ``remaining``: the chunks
    (:class:`lenskern.store.Block`) not in ``partial``, the failed included.
    """

    def __init__(self, message: str, partial: Partial, failed: dict, remaining: list[Block]) -> None:
        super().__init__(message)
        self.partial, self.failed, self.remaining = partial, failed, remaining

    def __reduce__(self):  # travels from a Dask worker with its attributes
        return (type(self), (str(self), self.partial, self.failed, self.remaining))


def chunk_error(failed: dict[Block, str], partial: Partial, blocks: list[Block]) -> ChunkError:
    """The error for ``failed`` chunks, the others' sums in ``partial``."""
    remaining = [block for block in blocks if block.key not in partial.done]
    shown = "; ".join(f"{block}: {why}" for block, why in list(failed.items())[:5])
    more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
    message = (
        f"{shown}{more}. Summed {len(partial.done)} of {len(blocks)} chunks ({partial.visibilities} "
        f"visibilities), kept in error.partial; {len(remaining)} remain (error.remaining): fix the data "
        "and pass start=error.partial to sum only those."
    )
    return ChunkError(message, partial, {block.key: why for block, why in failed.items()}, remaining)


def check_chunk(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A chunk's arrays validated (SPEC section 3): a ValueError says what is wrong."""
    try:
        return validate.check(arrays)
    except TypeError as error:  # a chunk of the wrong dtype is bad data, like a NaN
        raise ValueError(str(error)) from None


def _as_stored(uv: np.ndarray, noise: np.ndarray, visibilities: np.ndarray) -> bool:
    """Whether the arrays have the store's dtypes, shapes and layout (then
    only their values need checking, which the transform's pass does)."""
    k_count = len(noise)
    return (
        uv.dtype == np.float64 and noise.dtype == np.float64 and visibilities.dtype == np.complex128
        and uv.shape == (k_count, 2) and noise.shape == visibilities.shape == (k_count,) and k_count > 0
        and uv.flags.c_contiguous and noise.flags.c_contiguous and visibilities.flags.c_contiguous
    )  # fmt: skip


#: The implementation of ``data_parts`` that runs each NUFFT library.
IMPLEMENTATIONS = {"ducc0": "ducc0.nufft", "finufft": "numpy.nufft"}


class ChunkTransform:
    """Sums of one chunk (a :class:`Partial` of it): the ``data_parts``
    kernel by ``library``'s implementation (:data:`IMPLEMENTATIONS`).

    Cost per chunk of k visibilities: the implementation's, two type-1
    NUFFTs on the same points, O(k w^2) spreading each
    (w: conventions.nufft_width) and one FFT of ~4x the table each; O(k) for
    chi2 and the noise normalization. Memory: ~100 bytes per visibility plus
    the fine grids (lenskern.chunk.working_bytes).
    """

    def __init__(
        self,
        geometry: Geometry,
        chunk: int,
        eps: float | None = None,
        nthreads: int | None = None,
        library: str | None = None,
    ):
        self.geometry, self.chunk = geometry, int(chunk)
        self.eps = conventions.NUFFT_EPS if eps is None else float(eps)
        if not conventions.NUFFT_COARSEST_EPS >= self.eps > 0:
            raise ValueError(
                f"eps: the NUFFT's relative accuracy must be in (0, {conventions.NUFFT_COARSEST_EPS:g}], "
                f"got {eps!r} (the default, conventions.NUFFT_EPS, is 1e-12)"
            )
        if nthreads is not None and (isinstance(nthreads, bool) or not isinstance(nthreads, numbers.Integral)
                                     or nthreads < 0):  # fmt: skip
            raise ValueError(
                f"nthreads: must be an integer >= 0 (0: the library's own count), got {nthreads!r}"
            )
        self.nthreads = conventions.nufft_threads(self.chunk) if nthreads is None else int(nthreads)
        self.library = conventions.nufft_library(self.eps) if library is None else library
        if self.library not in conventions.NUFFT_LIBRARIES:
            choices = ", ".join(conventions.NUFFT_LIBRARIES)
            raise ValueError(f"library: one of {choices}, got {self.library!r}")
        self.kernel = registry.implementation("data_parts", IMPLEMENTATIONS[self.library]).function

    def __call__(self, block: Block, uv: np.ndarray, noise: np.ndarray, visibilities: np.ndarray) -> Partial:
        """The sums of one chunk; a ValueError (from :func:`check_chunk`) if
        its data are bad. Values are checked in the same pass that prepares
        the NUFFT's inputs; only a bad chunk is passed through
        ``validate.check``, to say what is wrong."""
        start = time.perf_counter()
        if not _as_stored(uv, noise, visibilities):
            arrays = check_chunk(dict(uv=uv, noise=noise, visibilities=visibilities))
            uv, noise, visibilities = arrays["uv"], arrays["noise"], arrays["visibilities"]
        geometry, seconds = self.geometry, {}
        checked = time.perf_counter()
        try:
            parts = self.kernel(
                uv, noise, visibilities, geometry.pixel_scale, geometry.shape_native, geometry.native_index,
                eps=self.eps, nthreads=self.nthreads, seconds=seconds,
            )  # fmt: skip
        except ValueError:
            check_chunk(dict(uv=uv, noise=noise, visibilities=visibilities))
            raise
        seconds["prepare"] += checked - start
        return Partial(
            geometry, self.chunk, parts["w_offsets"], parts["dirty_image"], parts["chi2_data"],
            parts["noise_normalization"], len(noise), frozenset([block.key]), seconds,
        )  # fmt: skip


class Progress:
    """Visibilities and chunks done, rate and time left, on stderr (tqdm):
    on a terminal a bar redrawn at most twice a second; in a log a line every
    10 % of the work. ``enabled=None``: only on a terminal."""

    def __init__(
        self, visibilities: int, chunks: int, enabled: bool | None = None, out: TextIO | None = None
    ):
        self.out = sys.stderr if out is None else out
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.enabled = self.tty if enabled is None else bool(enabled)
        self.total, self.chunks = max(int(visibilities), 1), int(chunks)
        self.done = self.done_chunks = 0
        self.next_tenth = 1
        self.start = time.perf_counter()
        self.bar = tqdm(
            total=self.total, desc="lenskern", unit=" visibilities", unit_scale=True, file=self.out,
            mininterval=0.5, disable=not (self.enabled and self.tty),
        )  # fmt: skip

    def _chunks(self) -> str:
        return f"{self.done_chunks}/{self.chunks} chunks"

    def update(self, visibilities: int, chunks: int = 1) -> None:
        self.done += int(visibilities)
        self.done_chunks += int(chunks)
        if not self.enabled:
            return
        if self.tty:
            self.bar.set_postfix_str(self._chunks(), refresh=False)
            self.bar.update(int(visibilities))
        elif 10 * self.done >= self.next_tenth * self.total:
            self.out.write(self.line() + "\n")
            self.next_tenth = 10 * self.done // self.total + 1

    def line(self) -> str:
        """The bar as one line, for a log."""
        seconds = time.perf_counter() - self.start
        return tqdm.format_meter(
            self.done, self.total, seconds, prefix="lenskern", unit=" visibilities", unit_scale=True,
            postfix=self._chunks(), ncols=0,
        )  # fmt: skip

    def close(self) -> None:
        self.bar.close()
        if self.enabled:
            seconds = time.perf_counter() - self.start
            done, rate = tqdm.format_sizeof(self.done), tqdm.format_sizeof(self.done / max(seconds, 1e-9))
            took = tqdm.format_interval(seconds)
            self.out.write(f"lenskern: {done} visibilities in {self.done_chunks} chunks, {took} ({rate}/s)\n")
            self.out.flush()


def read_block(store: VisibilityStore, block: Block) -> dict[str, np.ndarray]:
    """A block's arrays; a chunk that cannot be decoded (a truncated file, a
    codec error) is a ValueError that names it, like bad values."""
    try:
        return store.read(block.channel, block.start, block.stop)
    except Exception as error:  # Zarr and its codecs raise ValueError, OSError, RuntimeError...
        raise ValueError(f"cannot be read ({type(error).__name__}: {error})") from None


def open_store(store: VisibilityStore | str) -> VisibilityStore:
    return store if isinstance(store, VisibilityStore) else VisibilityStore.open(store)


def plan_blocks(store: VisibilityStore, geometry: Geometry, chunk: int | None, start: Partial | None):
    """The chunks to read, all of them, and the sums to start from, once the
    store is verified (complete, its layout, its manifest, its geometry)."""
    store.verify(geometry.shape_native, geometry.pixel_scale)
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, numbers.Integral)):
        raise TypeError(f"chunk: expected an integer number of visibilities, got {chunk!r}")
    chunk = store.chunk if chunk is None else int(chunk)
    blocks = store.blocks(chunk)
    if not blocks:
        raise ValueError(f"store: {store.path} holds no visibilities (K = 0)")
    partial = Partial.zero(geometry, chunk, store.identity)
    if start is not None and not isinstance(start, Partial):
        raise TypeError(
            f"start: expected the partial sums of a ChunkError (error.partial), got {type(start).__name__}"
        )
    if start is not None:
        partial = partial + start  # checks the geometry and the chunk size
        unknown = start.done - {block.key for block in blocks}
        if unknown:
            raise ValueError(f"start: chunks {sorted(unknown)[:5]} are not chunks of {store.path}")
    return blocks, [block for block in blocks if block.key not in partial.done], partial


def accumulate(
    store: VisibilityStore | str,
    *,
    chunk: int | None = None,
    start: Partial | None = None,
    progress: bool | None = None,
    eps: float | None = None,
    nthreads: int | None = None,
    library: str | None = None,
    **geometry: Any,
) -> Partial:
    """The data parts of every visibility in ``store``, summed chunk by chunk.

    Parameters
    ----------
    store
        A :class:`lenskern.store.VisibilityStore` or its path.
    chunk
        Visibilities read and transformed at a time (the store's chunk by
        default; a multiple of it reads whole stored chunks).
    start
        Sums to continue from (a :class:`ChunkError`'s ``partial``): their
        chunks are not read again.
    progress
        A progress line on stderr: ``None`` on a terminal only, or True/False.
    eps, nthreads
        The NUFFT's accuracy (``conventions.NUFFT_EPS``) and threads
        (``conventions.nufft_threads`` of the chunk size).
    library
        The NUFFT library, ``"ducc0"`` or ``"finufft"`` (default:
        :func:`lenskern.conventions.nufft_library`).
    **geometry
        ``shape_native``, ``pixel_scale`` and ``native_index`` (or ``mask``),
        in any superset (a whole problem will do).

    Cost: per chunk, :class:`ChunkTransform`'s; reading runs a chunk ahead
    in a thread. Memory: two chunks, the fine grid and the table.
    """
    store = open_store(store)
    geometry_ = Geometry.from_inputs(**geometry)
    blocks, todo, partial = plan_blocks(store, geometry_, chunk, start)
    transform = ChunkTransform(geometry_, partial.chunk, eps=eps, nthreads=nthreads, library=library)
    meter = Progress(sum(map(len, todo)), len(todo), progress)
    with ThreadPoolExecutor(max_workers=1) as reader:
        ahead = reader.submit(read_block, store, todo[0]) if todo else None
        for i, block in enumerate(todo):
            waited = time.perf_counter()
            if i + 1 < len(todo):
                following = reader.submit(read_block, store, todo[i + 1])
            try:
                arrays = ahead.result()
                read = time.perf_counter()
                sums = transform(block, **arrays)
            except ValueError as error:
                meter.close()
                raise chunk_error({block: str(error)}, partial, blocks) from None
            sums.seconds["read"] = read - waited
            partial = partial + sums
            meter.update(len(block))
            if i + 1 < len(todo):
                ahead = following
    meter.close()
    return partial
