"""The store's data parts summed on a Dask cluster (``dask.distributed``).

The same sums as :func:`lenskern.stream.accumulate`, with the chunks spread
over the workers of a ``dask.distributed.Client``:

    from dask.distributed import Client
    client = Client("tcp://scheduler:8786")       # or LocalCluster(), or dask-jobqueue
    partial = accumulate("/shared/obs.zarr", client=client, **geometry)
    like = lk.Likelihood.from_parts(**partial.parts())

**Layout.** The client reads only the store's metadata and lists its chunks
(channel, start, stop). Each task takes ``chunks_per_task`` of them, opens
the store by its path *on the worker* (a shared file system, or an object
store URL that zarr and fsspec read), reads, checks and transforms its
chunks one at a time through the same driver as one machine
(:class:`lenskern.stream.ChunkTransform`, the ``data_parts`` kernel, one
per worker thread), and returns their sums. The client adds the sums as tasks finish. What crosses the
network: to each worker once, the geometry (``native_index``, (M, 2) integers);
to each task, its chunks' names; back from each task, one table of
(2Ny-1)(2Nx-1) floats, a dirty image of M floats and three numbers - never
the visibilities.

**Bad data.** A task that meets a bad chunk (NaN, noise <= 0) still returns
the sums of its good chunks and says which chunk was bad and why; a task
that dies (a lost worker, an unreadable file) loses only its own chunks.
When every task is done, :class:`lenskern.stream.ChunkError` lists the
failed chunks, keeps the sums of all the others (``error.partial``) and the
chunks left (``error.remaining``): ``accumulate(..., start=error.partial)``
reads only those.

Threads: each task's NUFFT runs on one thread (``nthreads=1``): the
workers' threads are the parallelism (``dask worker --nthreads``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from lenskern.store import Block, VisibilityStore
from lenskern.stream import (
    ChunkTransform,
    Geometry,
    Partial,
    Progress,
    chunk_error,
    open_store,
    plan_blocks,
    read_block,
)

_local = threading.local()


def _transform(
    path: str, geometry: Geometry, chunk: int, eps: float | None, nthreads: int, library: str | None
):
    """This worker thread's store and NUFFT transform, kept between its tasks."""
    key = (path, geometry.key, chunk, eps, nthreads, library)
    if getattr(_local, "key", None) != key:
        _local.key = key
        _local.store = VisibilityStore.open(path)
        _local.transform = ChunkTransform(geometry, chunk, eps=eps, nthreads=nthreads, library=library)
    return _local.store, _local.transform


def sum_chunks(
    path: str,
    geometry: Geometry,
    chunk: int,
    blocks: list[Block],
    eps: float | None = None,
    nthreads: int = 1,
    library: str | None = None,
) -> tuple[dict[str, Any], dict[Block, str]]:
    """A task: the sums of ``blocks`` of the store at ``path`` (read here, on
    the worker), as plain arrays and numbers, and ``{block: why}`` for bad
    chunks, whose sums are left out."""
    store, transform = _transform(path, geometry, chunk, eps, nthreads, library)
    partial = Partial.zero(geometry, chunk, store.identity)
    failed: dict[Block, str] = {}
    for block in blocks:
        begin = time.perf_counter()
        try:
            arrays = read_block(store, block)
            read = time.perf_counter()
            sums = transform(block, **arrays)
        except ValueError as error:
            failed[block] = str(error)
            continue
        sums.seconds["read"] = read - begin
        partial = partial + sums
    sums = dict(
        table=partial.table, image=partial.image, chi2_data=partial.chi2_data,
        noise_normalization=partial.noise_normalization, visibilities=partial.visibilities, done=partial.done,
        seconds=partial.seconds,
    )  # fmt: skip
    return sums, failed


def accumulate(
    store: VisibilityStore | str,
    *,
    client: Any,
    chunk: int | None = None,
    start: Partial | None = None,
    progress: bool | None = None,
    eps: float | None = None,
    nthreads: int = 1,
    library: str | None = None,
    chunks_per_task: int = 1,
    **geometry: Any,
) -> Partial:
    """:func:`lenskern.stream.accumulate` on the workers of ``client`` (a
    ``dask.distributed.Client``); the module docstring says what runs where.

    ``store`` is a path the workers can open (or a store opened from one).
    ``chunks_per_task`` chunks make one task: more chunks per task, fewer
    tables to send back. Other parameters as in ``stream.accumulate``; the
    result is the same to the NUFFT's accuracy (sums in another order).
    """
    from dask.distributed import as_completed

    store = open_store(store)
    geometry_ = Geometry.from_inputs(**geometry)
    blocks, todo, partial = plan_blocks(store, geometry_, chunk, start)
    per_task = int(chunks_per_task)
    if per_task < 1:
        raise ValueError(f"chunks_per_task: must be >= 1, got {chunks_per_task}")
    groups = [todo[i : i + per_task] for i in range(0, len(todo), per_task)]
    # native_index once per worker, not per task; hash=False: a key of its own, which another
    # call that scatters the same geometry cannot release under us
    shared = client.scatter(geometry_, broadcast=True, hash=False)
    tasks = {
        client.submit(
            sum_chunks, store.path, shared, partial.chunk, group, eps, nthreads, library, pure=False
        ): group
        for group in groups
    }
    meter = Progress(sum(map(len, todo)), len(todo), progress)
    failed: dict[Block, str] = {}
    for future in as_completed(tasks):
        group = tasks.pop(future)
        try:
            sums, bad = future.result()
        except Exception as error:  # the task itself died: only its chunks are lost
            failed.update({block: f"task failed: {type(error).__name__}: {error}" for block in group})
            continue
        partial = partial + Partial(geometry_, partial.chunk, store=store.identity, **sums)
        failed.update(bad)
        meter.update(sum(len(b) for b in group if b not in bad), len(group))
    meter.close()
    if failed:
        order = {block.key: i for i, block in enumerate(blocks)}
        failed = dict(sorted(failed.items(), key=lambda item: order[item[0].key]))
        raise chunk_error(failed, partial, blocks)
    return partial
