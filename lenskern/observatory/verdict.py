"""The verdict on two commits' results: per benchmark, its own threshold
from its measured noise (timings) or a fixed one (instruction counts,
memory), and a significance test over the benchmark processes' medians.
``alert.compare`` and ``regressions`` both judge by these rules."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lenskern.observatory import results

# asv continuous applies one factor to every benchmark. Their noise differs by
# orders of magnitude (a sub-millisecond call wobbles far more than a
# 100-millisecond one), so one factor either cries wolf on the noisy ones or
# misses real changes in the quiet ones. The verdict here is per benchmark:
# each timing's threshold comes from its own measured noise, and a change
# must also be significant in asv's recorded samples.

#: Samples per side of each timing: ROUNDS rounds of REPEAT calls, each
#: round a benchmark process of its own, the rounds of base and head
#: interleaved, so a slow spell of the machine hits both. The process is the
#: unit of noise: the same call can settle in a different mode per process
#: (NumPy 2.4's numpy.gemv dirty image at small took 136-138 ms in some
#: processes and 178-186 ms in others, on one pinned CPU each, 2026-11-25),
#: so samples of one process are not independent draws. Five processes a
#: side let a test over their medians reach p < 0.01.
ROUNDS, REPEAT = 5, 2
#: A timing's threshold is 1 + NOISE_MULTIPLE x its noise (the larger of the
#: two sides' relative spread: the interquartile range of its samples or
#: half the range of its rounds' medians, whichever is larger, so a side
#: whose processes settle in two modes gets a threshold above their ratio),
#: never below TIME_FLOOR (or the --factor given).
NOISE_MULTIPLE = 2.0
TIME_FLOOR = 1.10
#: One-sided Mann-Whitney test of head's round medians above base's: with
#: five a side the smallest p is 1/252, so 0.01 is reachable by a clean
#: shift of every process.
ALPHA = 0.01
#: Deterministic or nearly so: instruction counts and cycle estimates
#: (Valgrind), peak memory; first-call seconds include JIT compilation.
FIXED_THRESHOLDS = {
    "track_instructions": 1.02,
    "track_estimated_cycles": 1.02,
    "peakmem_": 1.10,
    "track_peak_bytes": 1.10,
    "track_first_call_seconds": 2.0,
}
#: Memory is counted in pages, and an allocator's arenas move it by a page or
#: a few: a peak that grew by less than this is no regression, whatever its ratio.
MEMORY_SLACK_BYTES = 1 << 20
MEMORY = ("peakmem_", "track_peak_bytes")
#: Not speed: accuracy is the tests' business, and a ratio of two errors
#: near 1e-16 means nothing.
NOT_ALERTED = ("track_max_relative_error",)


@dataclass
class Verdict:
    benchmark: str  # name(params)
    before: float
    after: float
    threshold: float
    noise: float | None  # relative spread (see NOISE_MULTIPLE), for timings
    p_value: float | None
    regressed: bool

    @property
    def ratio(self) -> float:
        return self.after / self.before if self.before else float("inf")


def read_results(results_dir: Path, machine: str, commit: str) -> dict[str, dict]:
    """{benchmark(params): {"value": median, "samples": [...], "q": (q25, q75)}}
    from asv's result files of one commit on one machine."""
    return {
        m.key: {"value": m.value, "samples": list(m.samples) if m.samples else None, "q": m.quartiles}
        for found in results.read(results_dir, machine, commit)
        for m in found.measurements
    }


def rounds(samples: list[float]) -> list[float]:
    """The medians of each round's REPEAT samples (asv appends rounds in
    order), or the samples themselves when they do not split so."""
    import numpy as np

    if len(samples) % REPEAT or len(samples) == REPEAT:
        return list(samples)
    return [float(np.median(samples[i : i + REPEAT])) for i in range(0, len(samples), REPEAT)]


def _relative_spread(entry: dict) -> float | None:
    """One side's relative spread: the larger of its samples' interquartile
    range and half its rounds' medians' range (or asv's quartiles when it
    kept no samples), over its median."""
    import numpy as np

    samples = entry.get("samples")
    if samples and len(samples) >= 4:
        q25, q75 = np.percentile(samples, [25, 75])
        medians = rounds(samples)
        median = float(np.median(samples))
        spread = max(q75 - q25, (max(medians) - min(medians)) / 2)
    else:
        (q25, q75), median = entry.get("q", (None, None)), entry.get("value")
        if q25 is None or q75 is None or not median:
            return None
        spread = q75 - q25
    return float(spread / median) if median else None


def judge(before: dict[str, dict], after: dict[str, dict], floor: float = TIME_FLOOR) -> list[Verdict]:
    """One verdict per benchmark both sides measured (see the section's comment)."""
    from scipy.stats import mannwhitneyu

    verdicts = []
    for key in sorted(set(before) & set(after)):
        b, a = before[key], after[key]
        if not isinstance(b["value"], (int, float)) or not isinstance(a["value"], (int, float)):
            continue  # failed or skipped on a side: asv's table reports those
        method = key.split("(", 1)[0].rsplit(".", 1)[-1]
        if method.startswith(NOT_ALERTED):
            continue
        fixed = next((t for prefix, t in FIXED_THRESHOLDS.items() if method.startswith(prefix)), None)
        noise = p_value = None
        if fixed is not None:
            threshold = fixed
            significant = True  # one deterministic value a side: nothing to test
        else:
            spreads = [x for x in (_relative_spread(b), _relative_spread(a)) if x is not None]
            noise = max(spreads) if spreads else None
            threshold = max(floor, 1 + NOISE_MULTIPLE * (noise or 0.0))
            if b["samples"] and a["samples"] and len(b["samples"]) >= 3 and len(a["samples"]) >= 3:
                p_value = float(
                    mannwhitneyu(rounds(a["samples"]), rounds(b["samples"]), alternative="greater").pvalue
                )
                significant = p_value < ALPHA
            else:
                significant = True
        ratio = a["value"] / b["value"] if b["value"] else float("inf")
        if method.startswith(MEMORY) and a["value"] - b["value"] < MEMORY_SLACK_BYTES:
            significant = False
        verdicts.append(Verdict(key, b["value"], a["value"], threshold, noise, p_value,
                                ratio > threshold and significant))  # fmt: skip
    return verdicts


def write_noise(path: Path, commits: dict, verdicts: list[Verdict]) -> None:
    """Each benchmark's measured noise and threshold, kept with the results."""
    path.write_text(json.dumps({
        "commits": commits,
        "benchmarks": {v.benchmark: {"noise": v.noise, "threshold": v.threshold, "p_value": v.p_value,
                                     "ratio": v.ratio} for v in verdicts},
    }, indent=1))  # fmt: skip
