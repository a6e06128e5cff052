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
import math
import re
import sys
from pathlib import Path

from lenskern.observatory.results import COLUMNS

#: Seconds per benchmark process, its set-up and calls included, on average:
#: the main job's asv run on this project's 2-core VM at commit 92a3908
#: (tier small, forkserver), 978 processes in 663 s by asv's durations, the
#: counts left out. A machine with faster cores does better.
PROCESS_SECONDS = 0.68
#: Building asv's environment and discovering the suite the first time:
#: 24 s in the same run, with pip's cache warm (more on a machine without it).
BUILD_SECONDS = 24.0


def last_run_seconds(results_dir: Path, machine: str) -> tuple[float, str] | None:
    """Seconds asv spent on the newest commit with results on ``machine``
    (every environment's benchmarks and set-up caches), and that commit."""
    files = sorted((Path(results_dir) / machine).glob("*-*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        return None
    commit = files[-1].name.split("-", 1)[0]
    total = 0.0
    for path in (Path(results_dir) / machine).glob(f"{commit}-*.json"):
        data = json.loads(path.read_text())
        # each benchmark's own, in a column of its row; the build's and set-up caches' apart
        column = list(data.get("result_columns") or COLUMNS).index("duration")
        for row in (data.get("results") or {}).values():
            cell = row[column] if len(row) > column else None
            cells = cell if isinstance(cell, list) else [cell]
            total += sum(float(value) for value in cells if isinstance(value, int | float))
        total += sum(float(seconds) for seconds in (data.get("durations") or {}).values())
    return (total, commit) if total > 0 else None


def planned_processes(benchmark_dir: Path, environments: int, bench: str | None = None) -> int:
    """Benchmark processes of one asv run: each benchmark (whose name
    ``bench``, asv's ``-b`` regex, finds) at each combination of its
    parameters, in each environment."""
    from asv_runner.discovery import disc_benchmarks

    benchmark_dir = Path(benchmark_dir).resolve()
    sys.path.insert(0, str(benchmark_dir.parent))  # asv imports the suite by its folder's name
    try:
        count = sum(math.prod(len(values) for values in benchmark.params)
                    for benchmark in disc_benchmarks(str(benchmark_dir))
                    if bench is None or re.search(bench, benchmark.name))  # fmt: skip
    finally:
        sys.path.remove(str(benchmark_dir.parent))
    return count * environments


def main_job_seconds(results_dir: Path, machine: str, benchmark_dir: Path, environments: int,
                     built: bool, bench: str | None = None) -> tuple[float, str]:  # fmt: skip
    """The estimate, and what it rests on, in words."""
    last = last_run_seconds(results_dir, machine)
    if last is not None:
        seconds, commit = last
        return seconds, f"this machine's last main job (commit {commit}) took as long"
    processes = planned_processes(benchmark_dir, environments, bench)
    seconds = processes * PROCESS_SECONDS + (0.0 if built else BUILD_SECONDS)
    how = f"{processes:,} benchmark processes at ~{PROCESS_SECONDS:g} s each on a 2-core machine"
    return seconds, how + ("" if built else ", and building asv's environment")


def environments(config: dict) -> int:
    """asv's environments of a config: one per combination of its matrix's values."""
    matrix = config.get("matrix") or {}
    axes = [values for group in matrix.values() if isinstance(group, dict) for values in group.values()]
    return max(1, len(list(itertools.product(*axes))))
