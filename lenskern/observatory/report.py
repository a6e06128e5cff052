"""Tables in the seeds' style from asv's result files.

For each kernel and thread setting: implementation, median time, ratio to
the fastest, the kernel's own peak memory (``track_peak_bytes``: what one
call adds to the resident set at its peak, see ``benchmarks/common.py``),
first-call seconds and
the maximum relative error against the oracle. Rows of a peer library
(``registry.peer``) are marked, and a line under the table sets lenskern's
fastest against the fastest peer, both from the same run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from lenskern import recommend, registry
from lenskern.observatory.results import Measurement, read
from lenskern.observatory.suite import PROFILE, class_name


@dataclass
class Row:
    implementation: str
    seconds: dict[str, float]  # LENSKERN_NUM_THREADS -> median seconds
    peak_bytes: float = math.nan
    first_call_seconds: float = math.nan
    max_relative_error: float = math.nan


def _benchmark(found: list[Measurement], cls: str, method: str, tier: str) -> dict[str, float]:
    """{implementation: value} of one benchmark method at one tier; NaN where n/a."""
    return {
        m.params[0]: math.nan if m.value is None else m.value
        for m in found
        if m.class_name == cls and m.method == method and len(m.params) == 2 and m.params[1] == tier
    }


def rows(by_threads: dict[str, list[Measurement]], kernel: str, tier: str) -> list[Row]:
    """One row per implementation timed on some thread setting, fastest first.

    ``by_threads`` maps LENSKERN_NUM_THREADS to that environment's measurements.
    """
    name = class_name(kernel)
    found: dict[str, Row] = {}
    for threads, results in by_threads.items():
        for implementation, seconds in _benchmark(results, name, "time_call", tier).items():
            if not math.isnan(seconds):
                found.setdefault(implementation, Row(implementation, {})).seconds[threads] = seconds
        profile = name + PROFILE
        peak = _benchmark(results, profile, "track_peak_bytes", tier)
        first = _benchmark(results, profile, "track_first_call_seconds", tier)
        error = _benchmark(results, profile, "track_max_relative_error", tier)
        for implementation, row in found.items():
            if not math.isnan(first.get(implementation, math.nan)):
                row.peak_bytes = peak.get(implementation, math.nan)
                row.first_call_seconds = first[implementation]
                row.max_relative_error = error.get(implementation, math.nan)
    settings = sorted(by_threads, key=lambda t: (t != "1", t))
    first_setting = settings[0] if settings else ""
    return sorted(found.values(), key=lambda r: r.seconds.get(first_setting, math.inf))


def time_text(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:,.3f} {unit}"
    return f"{seconds / 1e-9:,.1f} ns"


#: The resolution of ``track_peak_bytes``: the resident set counts pages.
PAGE_BYTES = 4096


def bytes_text(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value < PAGE_BYTES:
        return "< 4 KiB"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if value >= scale:
            return f"{value / scale:,.1f} {unit}"
    return f"{value / 2**10:,.0f} KiB"


def ratio_text(seconds: float, fastest: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    ratio = seconds / fastest
    return f"{time_text(seconds)} ({'>1000' if ratio > 1000 else f'{ratio:.2f}'})"


def table(kernel: str, found: list[Row], settings: list[str], profile: bool = True) -> str:
    """Markdown in the seeds' format: time (ratio to the fastest) per thread
    setting; with ``profile``, also memory, first call and error."""
    headers = [f"time, {'1 thread' if t == '1' else f'{t} threads'} (ratio)" for t in settings]
    if profile:
        headers += ["kernel peak memory", "first call", "max rel. error"]
    lines = [f"#### {kernel}", "", "| implementation | " + " | ".join(headers) + " |",
             "| --- |" + " --- |" * len(headers)]  # fmt: skip
    fastest = {t: min((r.seconds.get(t, math.inf) for r in found), default=math.nan) for t in settings}
    for row in found:
        cells = [ratio_text(row.seconds.get(t, math.nan), fastest[t]) for t in settings]
        if profile:
            first = "n/a" if math.isnan(row.first_call_seconds) else time_text(row.first_call_seconds)
            error = "n/a" if math.isnan(row.max_relative_error) else f"{row.max_relative_error:.1e}"
            cells += [bytes_text(row.peak_bytes), first, error]
        lines.append(f"| {_name(row.implementation)} | " + " | ".join(cells) + " |")
    against = [line for t in settings if (line := peer_line(found, t))]
    return "\n".join(lines + ([""] + against if against else []))


def _name(implementation: str) -> str:
    library = registry.peer(implementation)
    return f"{implementation} (peer: {library})" if library else implementation


def best_against_peer(found: list[Row], threads: str) -> tuple[Row, Row] | None:
    """(lenskern's fastest row, the fastest peer's row) at one thread
    setting, or None where either has no time."""

    def fastest(rows_: list[Row]) -> Row | None:
        timed = [r for r in rows_ if not math.isnan(r.seconds.get(threads, math.nan))]
        return min(timed, key=lambda r: r.seconds[threads], default=None)

    ours = fastest([r for r in found if not registry.peer(r.implementation)])
    theirs = fastest([r for r in found if registry.peer(r.implementation)])
    return (ours, theirs) if ours and theirs else None


def peer_line(found: list[Row], threads: str) -> str:
    """ "lenskern's best against the best peer" at one thread setting, or ""."""
    pair = best_against_peer(found, threads)
    if pair is None:
        return ""
    ours, theirs = pair
    ratio = theirs.seconds[threads] / ours.seconds[threads]
    setting = "1 thread" if threads == "1" else f"{threads} threads"
    return (
        f"lenskern's best against the best peer, {setting}: `{ours.implementation}` "
        f"{time_text(ours.seconds[threads])} against `{theirs.implementation}` "
        f"{time_text(theirs.seconds[threads])}: **{ratio:.2f}x** "
        f"{'faster' if ratio >= 1 else 'slower'}"
    )


def peers_table(by_tier: dict[str, dict[str, list[Measurement]]], machine: str, commit: str) -> str:
    """Markdown for the README's "lenskern against what you run today": per
    kernel and tier, lenskern's fastest implementation against the fastest
    peer's, on one thread, both from the same asv run (``by_tier`` maps a
    tier to that run's results by thread setting)."""
    lines = [
        f"Measured on `{machine}`, commit `{commit[:8]}`, one thread (asv medians; lenskern and the "
        "peers in the same run):",
        "",
        "| kernel | tier | lenskern's best | time | best peer | its time | lenskern faster by |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kernel in registry.NAMES:
        for tier, by_threads in by_tier.items():
            one = {"1": by_threads["1"]} if "1" in by_threads else {}
            pair = best_against_peer(rows(one, kernel, tier), "1")
            if pair is None:
                continue
            ours, theirs = pair
            lines.append(
                f"| `{kernel}` | `{tier}` | `{ours.implementation}` | {time_text(ours.seconds['1'])} "
                f"| `{theirs.implementation}` | {time_text(theirs.seconds['1'])} "
                f"| {theirs.seconds['1'] / ours.seconds['1']:.2f}x |"
            )
    return "\n".join(lines)


def results_by_threads(results_dir: Path, machine: str, commit: str) -> dict[str, list[Measurement]]:
    """{LENSKERN_NUM_THREADS: that environment's measurements} of one commit."""
    return {found.threads: found.measurements for found in read(results_dir, machine, commit)}


def report(results_dir: Path, machine: str, commit: str, tier: str = "small") -> str:
    """Every kernel's table, both thread settings side by side, for one commit."""
    by_threads = results_by_threads(results_dir, machine, commit)
    if not by_threads:
        return f"no results for commit {commit[:8]} on machine {machine!r} in {results_dir}"
    settings = sorted(by_threads, key=lambda t: (t != "1", t))
    sections = [f"### {machine}, commit {commit[:8]}, tier {tier}"]
    # "likelihood": lk.Likelihood's evidence per call, by curvature implementation.
    for kernel in registry.KERNELS + registry.STREAMED + ("likelihood",) + registry.EXAMPLES:
        found = rows(by_threads, kernel, tier)
        if found:
            sections.append(table(kernel, found, settings))
    return "\n\n".join(sections)


def measured_table(by_threads: dict[str, list[Measurement]], machine: str, commit: str, tier: str) -> str:
    """Markdown for the README: per kernel, ``compute``'s first choice against
    the fastest other implementation, on one thread, from one asv run (both
    sides measured side by side), with the machine, commit and tier it came
    from. A kernel whose first choice has no result is left out."""
    one = {"1": by_threads["1"]} if "1" in by_threads else {}
    lines = [
        f"Measured on `{machine}`, commit `{commit[:8]}`, tier `{tier}`, one thread (asv medians of "
        "one run):",
        "",
        "| kernel | `compute` picks | time | fastest other | its time | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kernel in registry.NAMES:
        found = {
            row.implementation: row.seconds["1"] for row in rows(one, kernel, tier) if "1" in row.seconds
        }
        pick = recommend.preferred(kernel)[0]
        if pick not in found:
            continue
        others = sorted((seconds, name) for name, seconds in found.items() if name != pick)
        if not others:
            continue
        seconds, other = others[0]
        lines.append(
            f"| `{kernel}` | `{pick}` | {time_text(found[pick])} | `{other}` | {time_text(seconds)} "
            f"| {seconds / found[pick]:.2f} |"
        )
    return "\n".join(lines)
