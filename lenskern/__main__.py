"""Command line: ``python -m lenskern table`` prints the implementation and
recommendation tables the README embeds (generated from the registry; a test
keeps them in sync). ``store`` writes a store of generated visibilities and
``stream`` sums one into the likelihood's data parts, here or on a Dask
cluster, and reports the wall time, the rate, the peak memory and where the
time went (README "Streaming")."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from lenskern import conventions, recommend, registry


def implementation_table() -> str:
    """Markdown: one row per kernel, one column per backend, the algorithms
    each defines (whether or not its device is here)."""
    header = "| kernel | " + " | ".join(registry.BACKENDS) + " |"
    lines = [header, "|" + " --- |" * (len(registry.BACKENDS) + 1)]
    for kernel in registry.NAMES:
        cells = []
        for backend in registry.BACKENDS:
            names = registry.declared(kernel, backend)
            why = registry.NOT_IMPLEMENTED.get((kernel, backend), "its library is not installed here")
            cells.append(", ".join(f"`{n}`" for n in names) or f"n/a ({why})")
        lines.append(f"| `{kernel}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def recommended_table() -> str:
    """Markdown: what ``compute(kernel)`` picks here, the runners-up, and why."""
    lines = ["| kernel | `compute` picks | then | why |", "| --- | --- | --- | --- |"]
    for kernel in registry.NAMES:
        first, *rest = recommend.preferred(kernel)
        then = ", ".join(f"`{n}`" for n in rest[:3])
        lines.append(f"| `{kernel}` | `{first}` | {then} | {recommend.why(kernel).split(': ', 1)[1]} |")
    return "\n".join(lines)


TABLES = {"implementations": implementation_table, "recommended": recommended_table}


def write_store(args: argparse.Namespace) -> None:
    from lenskern.store import write_generated

    start = time.perf_counter()
    k_count = args.visibilities
    sizes = {"preset": args.grid, "K": k_count}
    store = write_generated(
        args.path, sizes, seed=args.seed, chunk=args.chunk, channels=args.channels, overwrite=args.overwrite
    )
    seconds = time.perf_counter() - start
    print(f"wrote {store}: {seconds:.1f} s, {k_count / seconds:,.0f} visibilities/s")


def stream_store(args: argparse.Namespace) -> None:
    import resource

    import lenskern as lk

    problem = lk.make_problem({"preset": args.grid, "K": 1})
    geometry = {name: problem[name] for name in ("shape_native", "pixel_scale", "native_index")}
    library = args.library or conventions.nufft_library(conventions.NUFFT_EPS)
    options = dict(chunk=args.chunk, progress=not args.no_progress, library=library, **geometry)
    start = time.perf_counter()
    if args.scheduler:
        from dask.distributed import Client

        from lenskern import cluster

        with Client(args.scheduler) as client:
            partial = cluster.accumulate(
                args.path, client=client, chunks_per_task=args.chunks_per_task, **options
            )
    else:
        from lenskern import stream

        partial = stream.accumulate(args.path, **options)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    stages = ", ".join(f"{name} {value:.1f} s" for name, value in partial.seconds.items())
    print(f"visibilities: {partial.visibilities:,} in {len(partial.done)} chunks, grid {args.grid} "
          f"{geometry['shape_native']}, M = {len(geometry['native_index'])}, NUFFT by {library}")  # fmt: skip
    print(f"wall: {seconds:.1f} s; {partial.visibilities / seconds:,.0f} visibilities/s")
    print(f"peak RSS of this process: {peak / 2**20:,.0f} MiB (resource.getrusage)")
    print(f"time by stage (summed over threads and workers): {stages}")


def _count(text: str) -> int:
    """A positive count written as 2e8 or 200000000."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 2e8, got {text!r}") from None
    if not (value >= 1 and value == int(value)):
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(value)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def program_name(module: str, script: str) -> str:
    """How the user called this: the console script, or ``python -m``."""
    return script if os.path.basename(sys.argv[0]) == script else f"python -m {module}"


def main(argv: list[str] | None = None) -> None:
    """The command line; bad input or bad data end in one line on stderr and
    exit status 1 (2 for a bad argument, argparse's)."""
    parser = argparse.ArgumentParser(prog=program_name("lenskern", "lenskern"), description=__doc__)
    try:
        _main(parser, argv)
    except (ValueError, TypeError, OSError, MemoryError) as error:
        name = parser.prog + (f" {argv[0]}" if argv else f" {sys.argv[1]}" if len(sys.argv) > 1 else "")
        print(f"{name}: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def _main(parser: argparse.ArgumentParser, argv: list[str] | None) -> None:
    from lenskern.problems import PRESETS

    commands = parser.add_subparsers(dest="command", required=True)
    table = commands.add_parser("table", help="print the README's tables generated from the registry")
    table.add_argument("--readme", type=Path, help="rewrite the tables inside this README instead")
    store = commands.add_parser("store", help="write a store of generated visibilities, a chunk at a time")
    store.add_argument("path", help="the store's folder (or a URL zarr opens)")
    store.add_argument(
        "--visibilities", "-K", type=_count, default=10**7, help="how many, say 2e8 (default 1e7)"
    )
    store.add_argument(
        "--channels", type=_positive, default=1, help="channels the visibilities are split over"
    )
    store.add_argument(
        "--grid",
        default="science",
        choices=PRESETS,
        help="preset whose grid sets uv_max and the sky (science)",
    )
    store.add_argument("--chunk", type=_positive, default=None, help="visibilities per stored chunk (2^22)")
    store.add_argument("--seed", type=int, default=0)
    store.add_argument("--overwrite", action="store_true", help="replace a store already at path")
    stream = commands.add_parser("stream", help="sum a store into the likelihood's data parts, and time it")
    stream.add_argument("path", help="the store's folder (or a URL zarr opens)")
    stream.add_argument(
        "--grid", default="science", choices=PRESETS, help="preset whose grid the parts are on (science)"
    )
    stream.add_argument(
        "--chunk", type=_positive, default=None, help="visibilities per read (the store's chunk)"
    )
    stream.add_argument("--scheduler", help="a Dask scheduler's address: sum on its workers")
    stream.add_argument("--chunks-per-task", type=_positive, default=1, help="chunks per Dask task (1)")
    stream.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    stream.add_argument(
        "--library", choices=conventions.NUFFT_LIBRARIES, help="the NUFFT library (ducc0 where installed)"
    )
    args = parser.parse_args(argv)
    if args.command == "store":
        if args.chunk is None:
            from lenskern.store import DEFAULT_CHUNK

            args.chunk = DEFAULT_CHUNK
        write_store(args)
    elif args.command == "stream":
        stream_store(args)
    elif args.command == "table" and args.readme:
        text = args.readme.read_text()
        for name, make in TABLES.items():
            begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
            if begin not in text or end not in text:
                parser.error(f"{args.readme} has no {begin} ... {end} markers")
            block = f"{begin}\n{make()}\n{end}"
            text = re.sub(f"{begin}.*?{end}", lambda _, block=block: block, text, flags=re.S)
        args.readme.write_text(text)
    elif args.command == "table":
        print("\n\n".join(make() for make in TABLES.values()))


if __name__ == "__main__":
    main()
