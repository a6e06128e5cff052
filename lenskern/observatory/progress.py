"""asv's long runs shown as progress bars (tqdm), one per stage, with the
time left; asv's own lines go to a log file, and the lines that report a
failure are shown as they come.

asv prints ``[ 12.50%] ··· name   ok`` as each benchmark of a run ends.
Its percentage counts benchmarks, each as one, whether it runs one process
or forty (one per parameter combination) and whether it measures or skips
(the profile classes off one thread): a bar driven by it promised 48
minutes left of a 9-minute run. Given each benchmark's expected seconds on
each thread setting (``lenskern.observatory.estimate.expected_seconds``),
the bar counts those instead (:class:`Tracker`), and tqdm's time left, the
rate so far applied to what remains, follows the real work. Without them it
counts asv's percentage. What comes before the first such line (the
virtualenv built, the suite discovered) is one bar of its own, of elapsed
time only.
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
#: A benchmark ended: its name (asv cuts a long one to "...its tail") and status.
ENDED = re.compile(r"^\[\s*\d+(?:\.\d+)?%\] ··· (\S+)\s+\S+\s*$")
#: asv starts on an environment: its thread setting, the matrix's LENSKERN_NUM_THREADS.
ENVIRONMENT = re.compile(r"Benchmarking \S*LENSKERN_NUM_THREADS(\w+)")


class Tracker:
    """What asv's lines are worth in expected seconds: ``expected`` maps
    (thread setting, benchmark name) to the seconds that benchmark should
    take there."""

    def __init__(self, expected: dict[tuple[str, str], float]) -> None:
        self.expected = expected
        self.total = sum(expected.values())
        self.threads = next(iter(expected))[0] if expected else ""

    def advance(self, line: str) -> float:
        """The seconds of work ``line`` says are done (0 for most lines)."""
        environment = ENVIRONMENT.search(line)
        if environment:
            self.threads = environment.group(1)
            return 0.0
        ended = ENDED.match(line)
        if not ended:
            return 0.0
        name = ended.group(1)
        if name.startswith("..."):
            tail = name[3:]
            name = next((n for t, n in self.expected if t == self.threads and n.endswith(tail)), name)
        return self.expected.get((self.threads, name), 0.0)


def _bar(description: str, total: float | None) -> tqdm:
    """A bar on stderr: redrawn every second on a terminal, every 30 s in a log."""
    interval = 1.0 if sys.stderr.isatty() else 30.0
    if total:
        bar_format = "{desc}: {percentage:3.0f}%|{bar}| {elapsed} elapsed, {remaining} left"
    else:  # no end known: the time so far
        bar_format = "{desc}: {elapsed} elapsed"
    return tqdm(total=total, desc=description, mininterval=interval, maxinterval=interval,
                bar_format=bar_format, file=sys.stderr)  # fmt: skip


def run_asv(args: list[str], log: Path, stages: tuple[str, str],
            expected: dict[tuple[str, str], float] | None = None) -> int:  # fmt: skip
    """``asv *args`` with this Python, shown as two bars, ``stages`` (the
    set-up's and the benchmarks'); every line of asv's output to ``log``.
    ``expected``: see :class:`Tracker`. Returns asv's exit status."""
    print("$ " + " ".join(["asv", *args]) + f"   (its output: {log})", flush=True)
    return run_with_bars([sys.executable, "-m", "asv", *args], log, stages, expected)


def run_with_bars(command: list[str], log: Path, stages: tuple[str, str],
                  expected: dict[tuple[str, str], float] | None = None) -> int:  # fmt: skip
    """:func:`run_asv` for any command that prints asv's progress prefix."""
    log.parent.mkdir(parents=True, exist_ok=True)
    setup, benchmarks = stages
    tracker = Tracker(expected) if expected else None
    bar = _bar(setup, None)
    running = False
    with log.open("w") as out, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                 text=True, bufsize=1) as process:  # fmt: skip
        for line in process.stdout:
            out.write(line)
            match = PERCENT.match(line)
            if match and not running:
                bar.close()
                bar, running = _bar(benchmarks, tracker.total if tracker else 100.0), True
            if tracker:
                done = tracker.advance(line)
                if running and done:  # never past the end: the estimate may fall short
                    bar.update(min(done, bar.total - bar.n))
            elif match:
                bar.update(float(match.group(1)) - bar.n)
            if not running:
                bar.update(1)
            if SHOWN.search(line):
                bar.write(line.rstrip(), file=sys.stderr)
        code = process.wait()
    if running and code == 0:
        bar.update(bar.total - bar.n)
    bar.close()
    return code
