"""Tables in the seeds' style from asv's result files.

For each kernel and thread setting: implementation, median time, ratio to
the fastest, the kernel's own peak memory (``peakmem_call`` minus
``peakmem_resident``, see ``benchmarks/common.py``), first-call seconds and
the maximum relative error against the oracle.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from lenskern import registry


def class_name(kernel: str) -> str:
    """The benchmark class of a kernel, as ``benchmarks/common.py`` names it."""
    return "".join(part.title() for part in kernel.split("_"))


@dataclass
class Row:
    implementation: str
    seconds: float
    peak_bytes: float
    first_call_seconds: float
    max_relative_error: float


def _values(results: dict, name: str, tier: str) -> dict[str, float]:
    """{implementation: value} of one benchmark at one tier; NaN where n/a."""
    entry = results.get(name)
    if entry is None:
        return {}
    values, params = entry[0], entry[1]
    if values is None:
        return {}
    implementations = [json.loads(p.replace("'", '"')) for p in params[0]]
    tiers = [json.loads(p.replace("'", '"')) for p in params[1]]
    out = {}
    for i, implementation in enumerate(implementations):
        for j, each in enumerate(tiers):
            if each == tier:
                value = values[i * len(tiers) + j]
                out[implementation] = math.nan if value is None else float(value)
    return out


def result_files(results_dir: Path, machine: str, commit: str) -> list[Path]:
    """asv's result files of one commit on one machine, one per environment."""
    return sorted((results_dir / machine).glob(f"{commit[:8]}-*.json"))


def rows(results: dict, kernel: str, tier: str) -> list[Row]:
    """One row per implementation that ran, fastest first."""
    base = next((k.rsplit(".", 2)[0] for k in results if k.split(".")[-2] == class_name(kernel)), None)
    if base is None:
        return []
    name = f"{base}.{class_name(kernel)}"
    times = _values(results, f"{name}.time_call", tier)
    call = _values(results, f"{name}.peakmem_call", tier)
    resident = _values(results, f"{name}.peakmem_resident", tier)
    first = _values(results, f"{name}.track_first_call_seconds", tier)
    error = _values(results, f"{name}.track_max_relative_error", tier)
    found = [
        Row(
            implementation,
            seconds,
            call.get(implementation, math.nan) - resident.get(implementation, math.nan),
            first.get(implementation, math.nan),
            error.get(implementation, math.nan),
        )
        for implementation, seconds in times.items()
        if not math.isnan(seconds)
    ]
    return sorted(found, key=lambda row: row.seconds)


def _time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:,.3f} {unit}"
    return f"{seconds / 1e-9:,.1f} ns"


def _bytes(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{max(value, 0.0) / 2**20:,.1f} MiB"  # RSS differences carry a few pages of noise


def table(kernel: str, found: list[Row]) -> str:
    """Markdown in the seeds' format: time (ratio to the fastest)."""
    lines = [
        f"#### {kernel}",
        "",
        "| implementation | time (ratio) | kernel peak memory | first call | max rel. error |",
        "| --- | --- | --- | --- | --- |",
    ]
    fastest = found[0].seconds if found else math.nan
    for row in found:
        ratio = row.seconds / fastest
        ratio_text = ">1000" if ratio > 1000 else f"{ratio:.2f}"
        lines.append(
            f"| {row.implementation} | {_time(row.seconds)} ({ratio_text}) | "
            f"{_bytes(row.peak_bytes)} | {_time(row.first_call_seconds)} | "
            f"{row.max_relative_error:.1e} |"
        )
    return "\n".join(lines)


def report(results_dir: Path, machine: str, commit: str, tier: str = "small") -> str:
    """Every kernel's table for each thread setting of one commit on one machine."""
    sections = []
    for path in result_files(results_dir, machine, commit):
        data = json.loads(path.read_text())
        threads = data.get("env_vars", {}).get("LENSKERN_NUM_THREADS", "unpinned")
        sections.append(f"### {machine}, commit {commit[:8]}, LENSKERN_NUM_THREADS={threads}, {tier}")
        for kernel in registry.KERNELS + registry.EXAMPLES:
            found = rows(data["results"], kernel, tier)
            if found:
                sections.append(table(kernel, found))
    if not sections:
        return f"no results for commit {commit[:8]} on machine {machine!r} in {results_dir}"
    return "\n\n".join(sections)
