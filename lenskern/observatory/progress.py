"""asv's long runs shown as progress bars (tqdm), one per stage, with the
time left; asv's own lines go to a log file, and the lines that report a
failure are shown as they come.

asv prints ``[ 12.50%] ···`` before each benchmark of a run (the share of
the whole run: every commit and environment): that drives the benchmark
bar. What comes before the first such line (the virtualenv built, the
suite discovered) is one bar of its own, of elapsed time only.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tqdm import tqdm

#: asv's progress prefix.
PERCENT = re.compile(r"^\[\s*(\d+(?:\.\d+)?)%\]")
#: Lines worth showing beside the bars: a benchmark that failed, a traceback.
SHOWN = re.compile(r"\bfailed\b|Traceback|\w+Error: |timed out")


def _bar(description: str, total: float | None) -> tqdm:
    """A bar on stderr: redrawn every second on a terminal, every 30 s in a log."""
    interval = 1.0 if sys.stderr.isatty() else 30.0
    if total:
        bar_format = "{desc}: {percentage:3.0f}%|{bar}| {elapsed} elapsed, {remaining} left"
    else:  # no end known: the time so far
        bar_format = "{desc}: {elapsed} elapsed"
    return tqdm(total=total, desc=description, mininterval=interval, maxinterval=interval,
                bar_format=bar_format, file=sys.stderr)  # fmt: skip


def run_asv(args: list[str], log: Path, stages: tuple[str, str]) -> int:
    """``asv *args`` with this Python, shown as two bars, ``stages`` (the
    set-up's and the benchmarks'); every line of asv's output to ``log``.
    Returns asv's exit status."""
    print("$ " + " ".join(["asv", *args]) + f"   (its output: {log})", flush=True)
    return run_with_bars([sys.executable, "-m", "asv", *args], log, stages)


def run_with_bars(command: list[str], log: Path, stages: tuple[str, str]) -> int:
    """:func:`run_asv` for any command that prints asv's progress prefix."""
    log.parent.mkdir(parents=True, exist_ok=True)
    setup, benchmarks = stages
    bar = _bar(setup, None)
    running = False
    with log.open("w") as out, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                 text=True, bufsize=1) as process:  # fmt: skip
        for line in process.stdout:
            out.write(line)
            match = PERCENT.match(line)
            if match:
                if not running:
                    bar.close()
                    bar, running = _bar(benchmarks, 100.0), True
                bar.update(float(match.group(1)) - bar.n)
            elif not running:
                bar.update(1)
            if SHOWN.search(line):
                bar.write(line.rstrip(), file=sys.stderr)
        code = process.wait()
    if running and code == 0:
        bar.update(100.0 - bar.n)
    bar.close()
    return code
