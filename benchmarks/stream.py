"""Visibilities streamed from a chunked store into the likelihood's data parts.

``DataParts`` and ``DataPartsProfile``: the ``data_parts`` kernel (one
chunk's sums, here the whole problem's) at the problem tiers, like every
kernel.

``Stream`` and ``PeerStream``: whole stores through
``lenskern.stream.accumulate`` (and PyAutoArray's own streamed path), seconds
per visibility and peak memory at K = 10^6, 10^7 and 10^8, on the ``science``
preset's grid (N = 300, M ~ 70,000). A tier of their own: they run only when
``LENSKERN_BENCH_TIERS`` names ``stream`` (say
``LENSKERN_BENCH_TIERS=stream asv run -b stream``), since the stores take 4.4 GB of disk and minutes to
write; elsewhere they show as n/a.
The stores are written once by ``setup_cache``, into the shared temporary
folder under names keyed by the generator's code (``lenskern/store.py``,
``lenskern/problems.py``), so later runs of the same code reuse them and a
changed generator writes new ones (the stale ones are removed).

- ``track_seconds_per_visibility``: one accumulation's wall time over K,
  Numba's pass compiled and the NUFFT library loaded in ``setup``;
- ``peakmem_accumulate``: asv's peak RSS of the process with one
  accumulation, counted from what was resident after ``setup`` (see
  ``common.reset_peak_memory``). It stays flat in K: two chunks of 2^22
  visibilities, the NUFFT's fine grid and the table, whatever K.
"""

# lenskern first: it applies LENSKERN_NUM_THREADS before NumPy starts its
# BLAS threads (see common.py).
import lenskern as lk  # noqa: I001

import os
import shutil
import time

import numpy as np

from .common import STREAM_TIER, TIERS, _cache_path, _package, kernel_classes, reset_peak_memory

# <Kernel> and <Kernel>Profile for each kernel the registry places here.
globals().update(kernel_classes(__name__))

ENABLED = STREAM_TIER in TIERS
VISIBILITIES = [10**6, 10**7, 10**8]
#: The preset whose grid the data parts are computed on.
GRID = "science"


def store_path(k_count: int):
    """Where the store of ``k_count`` generated visibilities is kept."""
    package = _package()
    return _cache_path(f"stream-{k_count}", [package / "store.py", package / "problems.py"], ".zarr")


def write_store(k_count: int):
    """The store of ``k_count`` visibilities of ``generate``'s kind on GRID's
    grid (seed 0), written unless it exists; stores of older code removed."""
    from lenskern.store import write_generated

    path = store_path(k_count)
    if path.exists():
        return path
    for stale in path.parent.glob(f"stream-{k_count}-*.zarr"):
        shutil.rmtree(stale, ignore_errors=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.zarr")
    write_generated(partial, {"preset": GRID, "K": k_count}, seed=0, overwrite=True)
    partial.rename(path)  # a concurrent reader sees all or nothing
    return path


def geometry() -> dict:
    """GRID's shape_native, pixel_scale and native_index."""
    problem = lk.make_problem({"preset": GRID, "K": 1})
    return {name: problem[name] for name in ("shape_native", "pixel_scale", "native_index")}


class _StreamBenchmark:
    """One accumulation over a generated store of K visibilities, per K:
    the parameters, limits and stores Stream and PeerStream share. Has no
    benchmark method, so asv does not collect it."""

    param_names = ["visibilities"]
    params = [VISIBILITIES]
    timeout = 1800
    warmup_time = 0
    repeat = 1
    number = 1
    rounds = 1

    def setup_cache(self):
        if not ENABLED:
            return {}
        return {"stores": {k: str(write_store(k)) for k in VISIBILITIES}, "geometry": geometry()}

    setup_cache.timeout = 3600  # writing 1.1 x 10^8 visibilities


class Stream(_StreamBenchmark):
    """One accumulation of a generated store of K visibilities."""

    def setup(self, cache, visibilities):
        if not ENABLED:
            raise NotImplementedError(f"the stream tier runs when LENSKERN_BENCH_TIERS names {STREAM_TIER!r}")
        from lenskern import stream

        self.accumulate = stream.accumulate
        self.path, self.geometry = cache["stores"][visibilities], cache["geometry"]
        # compile the Numba pass (the threaded one, as chunks of the store's size take) and load
        # the NUFFT library outside the measurement
        from lenskern.store import DEFAULT_CHUNK

        warm = stream.ChunkTransform(stream.Geometry.from_inputs(**self.geometry), DEFAULT_CHUNK)
        warm(stream.Block("warm", 0, 0, 1), np.zeros((1, 2)), np.ones(1), np.zeros(1, np.complex128))
        reset_peak_memory()

    def track_seconds_per_visibility(self, cache, visibilities):
        """Wall seconds of one accumulation over K."""
        start = time.perf_counter()
        self.accumulate(self.path, progress=False, **self.geometry)
        return (time.perf_counter() - start) / visibilities

    track_seconds_per_visibility.unit = "seconds"

    def peakmem_accumulate(self, cache, visibilities):
        """Peak RSS with one accumulation (flat in K)."""
        self.accumulate(self.path, progress=False, **self.geometry)


class PeerStream(_StreamBenchmark):
    """PyAutoArray's own streamed path (``sparse_terms_from_chunks``, through
    ``lenskern.backends.autoarray.streamed_terms``) on the same stores and
    chunks as :class:`Stream`: its rate beside lenskern's. autoarray runs its
    NUFFTs on one thread whatever the setting; run it in the peers'
    environment (``asv.peers.conf.json``, one thread), where Stream runs too."""

    def setup(self, cache, visibilities):
        if not ENABLED:
            raise NotImplementedError(f"the stream tier runs when LENSKERN_BENCH_TIERS names {STREAM_TIER!r}")
        from lenskern import registry
        from lenskern.backends import autoarray

        why = registry.implementations("w_offsets").missing.get("autoarray")
        if why:
            raise NotImplementedError(why)
        self.streamed_terms = autoarray.streamed_terms
        self.path, self.geometry = cache["stores"][visibilities], cache["geometry"]
        autoarray._import_autoarray()  # its import outside the measurement

    def track_seconds_per_visibility(self, cache, visibilities):
        """Wall seconds of autoarray's streamed terms over K."""
        start = time.perf_counter()
        self.streamed_terms(self.path, **self.geometry)
        return (time.perf_counter() - start) / visibilities

    track_seconds_per_visibility.unit = "seconds"
