"""How long the main job will take, said before it starts.

From this machine's last main job when its results are here (asv records
each benchmark's duration), else from the suite's size: asv runs every
benchmark at every parameter (each implementation the registry has here, at
each tier) in a process of its own, once per thread setting, and on a small
machine those processes, not the kernels' calls, are most of the time.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from lenskern.observatory import results
from lenskern.observatory.results import COLUMNS
from lenskern.observatory.suite import PROFILE

#: Seconds per benchmark process that measures, its set-up and calls
#: included, on average, asv's set-up caches spread over them: the main
#: job's asv run from a fresh clone on this project's 2-core VM at commit
#: 56d01e5 (tier small, forkserver with Numba, SciPy and the examples' arrays
#: loaded once, the counts left out): 508 such processes in 401 s of
#: benchmarks and 25 s of set-up caches by asv's durations. A machine with
#: faster cores does better.
PROCESS_SECONDS = 0.84
#: Building asv's environment and discovering the suite the first time:
#: 35 s in the same run, with pip's cache warm (more on a machine without it).
BUILD_SECONDS = 35.0


#: Seconds of a profile benchmark's process on a thread setting other than 1,
#: where it skips at once (the profile classes measure on one thread only):
#: 282 of them in 5.6 s in the same run.
SKIPPED_PROCESS_SECONDS = 0.020


def benchmark_processes(benchmark_dir: Path, bench: str | None = None) -> dict[str, int]:
    """{benchmark name: its processes in one environment}: each combination
    of a benchmark's parameters that ``bench``, asv's ``-b`` regex, finds by
    the name asv gives it (``area.Class.method('numpy.gemv', 'small')``), as
    asv selects them; the benchmarks it finds none of are left out."""
    from asv_runner.discovery import disc_benchmarks

    benchmark_dir = Path(benchmark_dir).resolve()
    sys.path.insert(0, str(benchmark_dir.parent))  # asv imports the suite by its folder's name
    try:
        found = {}
        for benchmark in disc_benchmarks(str(benchmark_dir)):
            combinations = itertools.product(*benchmark.params) if benchmark.params else [()]
            # benchmark.params holds the values' reprs, as asv's names do
            names = [results.name(benchmark.name, reprs) for reprs in combinations]
            count = sum(1 for name in names if bench is None or re.search(bench, name))
            if count:
                found[benchmark.name] = count
        return found
    finally:
        sys.path.remove(str(benchmark_dir.parent))


@dataclass
class LastRun:
    """What asv recorded of the newest commit with results on a machine."""

    commit: str
    #: {(LENSKERN_NUM_THREADS, benchmark name): seconds}
    benchmarks: dict[tuple[str, str], float]
    #: the rest: the environment's build, the set-up caches
    other_seconds: float


def last_run(results_dir: Path, machine: str) -> LastRun | None:
    """asv's durations of the newest commit with results on ``machine``."""
    files = sorted((Path(results_dir) / machine).glob("*-*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        return None
    commit = files[-1].name.split("-", 1)[0]
    found, other = {}, 0.0
    for path in (Path(results_dir) / machine).glob(f"{commit}-*.json"):
        data = json.loads(path.read_text())
        threads = (data.get("env_vars") or {}).get("LENSKERN_NUM_THREADS", "unpinned")
        # each benchmark's own, in a column of its row; the build's and set-up caches' apart
        column = list(data.get("result_columns") or COLUMNS).index("duration")
        for name, row in (data.get("results") or {}).items():
            cell = row[column] if len(row) > column else None
            cells = cell if isinstance(cell, list) else [cell]
            found[threads, name] = sum(float(value) for value in cells if isinstance(value, int | float))
        other += sum(float(seconds) for seconds in (data.get("durations") or {}).values())
    return LastRun(commit, found, other)


def _skips(threads: str, name: str) -> bool:
    """Whether benchmark ``name`` skips at once on ``threads``: a profile
    class (``<Kernel>Profile``) measures on one thread only."""
    return threads != "1" and name.rpartition(".")[0].endswith(PROFILE)


def expected_seconds(processes: dict[str, int], settings: list[str],
                     last: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:  # fmt: skip
    """Each benchmark's seconds on each thread setting: as long as it took in
    ``last`` (:func:`last_durations`) where it ran there, else its processes
    at :data:`PROCESS_SECONDS` (at :data:`SKIPPED_PROCESS_SECONDS` for a
    profile class off one thread). Drives the main job's progress bar."""
    expected = {}
    for threads in settings:
        for name, count in processes.items():
            each = SKIPPED_PROCESS_SECONDS if _skips(threads, name) else PROCESS_SECONDS
            expected[threads, name] = last.get((threads, name), count * each)
    return expected


def thread_settings(config: dict) -> list[str]:
    """The LENSKERN_NUM_THREADS values of asv's matrix, in asv's order (["unpinned"] if none)."""
    for group in (config.get("matrix") or {}).values():
        if isinstance(group, dict) and "LENSKERN_NUM_THREADS" in group:
            return [str(value) for value in group["LENSKERN_NUM_THREADS"]]
    return ["unpinned"]


def main_job(results_dir: Path, machine: str, benchmark_dir: Path, settings: list[str], built: bool,
             bench: str | None = None) -> tuple[float, str, dict[tuple[str, str], float]]:  # fmt: skip
    """The main job's asv run estimated: its seconds, what they rest on in
    words, and :func:`expected_seconds` (the progress bar's units)."""
    processes = benchmark_processes(benchmark_dir, bench)
    last = last_run(results_dir, machine)
    expected = expected_seconds(processes, settings, last.benchmarks if last else {})
    seconds = sum(expected.values())
    if last is not None:
        return seconds + last.other_seconds, f"this machine's last main job (commit {last.commit})", expected
    skipping = sum(processes[name] for threads in settings for name in processes if _skips(threads, name))
    measuring = sum(processes.values()) * len(settings) - skipping
    how = (f"{measuring:,} benchmark processes at ~{PROCESS_SECONDS:g} s each on a 2-core machine"
           + (f", {skipping:,} that skip at once" if skipping else ""))  # fmt: skip
    if built:
        return seconds, how, expected
    return seconds + BUILD_SECONDS, how + ", and building asv's environment", expected
