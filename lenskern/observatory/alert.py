"""Regression alerts: the logic the GitHub workflows call, kept out of YAML.

``compare`` runs ``asv continuous`` of a base against a head commit on one
pinned thread, decides pass or fail by :mod:`lenskern.observatory.verdict`,
and writes a markdown report; :mod:`lenskern.observatory.regressions` writes
the nightly job's issue.

Exit status of ``compare``: 0 no benchmark got worse by more than its own
threshold (the verdict's: from each timing's measured noise, fixed for
instruction counts and memory), 1 at least one did, 2 a benchmark failed to
run. Also 2, whatever was measured, when a side did not run its own commit:
each benchmark process records the commit asv is benchmarking and the commit
its lenskern was built from (stamped at build time by asv.conf.json,
recorded by benchmarks/common.py), and the two must agree for both sides.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lenskern.observatory import suite
from lenskern.observatory.verdict import (
    ALPHA,
    NOISE_MULTIPLE,
    REPEAT,
    ROUNDS,
    TIME_FLOOR,
    Verdict,
    judge,
    read_results,
    write_noise,
)

#: A benchmark cell of asv's tables: name, then (parameters), then [machine/env].
_NAME = re.compile(r"^(?P<name>[\w.]+)(?:\((?P<params>.*)\))?(?:\s+\[(?P<env>.*)\])?$")


@dataclass
class Change:
    mark: str  # "+" slower, "-" faster, "!" failed, "x" cannot compare
    before: str
    after: str
    ratio: str
    benchmark: str
    params: str

    @property
    def kernel(self) -> str:
        """The kernel a benchmark class measures: ``CurvatureMatrixProfile`` -> curvature_matrix."""
        return suite.kernel_of(self.benchmark.split(".")[-2])


def parse(output: str) -> list[Change]:
    """The rows of asv continuous's comparison tables (GitHub markdown:
    Change | Before | After | Ratio | Benchmark (Parameter)) that carry a mark."""
    changes = []
    for line in output.splitlines():
        line = line.strip()
        if not (line.startswith("|") and line.endswith("|")):
            continue
        cells = [cell.strip() for cell in line[1:-1].split("|")]
        if len(cells) != 5 or cells[0] not in ("+", "-", "!", "x"):
            continue
        match = _NAME.match(cells[4])
        if match:
            params = match["params"] or ""
            if match["env"]:
                params = f"{params} [{match['env']}]".strip()
            changes.append(Change(cells[0], cells[1], cells[2], cells[3], match["name"], params))
    return changes


# ------------------------------------------------------- what a PR check runs
#
# The whole suite, five interleaved rounds a side, takes over 45 minutes on a
# 2-core runner (the suite-wide A/A of the timings alone took 45 min 16 s).
# A pull request's check runs what its users call and what it changed: each
# kernel's first choice (what ``compute`` runs) and every implementation of
# the backends whose modules the diff touches, each counted under Valgrind
# (x1.02) and timed at ``small``. The nightly job runs everything.

#: The tier a pull request is counted and timed at.
PR_TIER = "small"


#: The most seconds per call at PR_TIER (the registry's cost model) that a
#: call may be estimated at and still be counted under Valgrind, which runs
#: it 50-100x slower: w_tilde's numpy.blocked (estimated 16 s at small) ran
#: over 7 minutes under Callgrind before it was stopped, where the PR check
#: has ~10 minutes for every count (2026-12-05, this project's 2-core VM).
#: Calls above it are timed only, and the report says so.
COUNT_BUDGET_SECONDS = 0.1


@dataclass
class Selection:
    """What a comparison counts and times: ``kernel/implementation`` calls."""

    calls: list[str]
    touched: list[str]  # backends whose modules the diff changed
    #: the calls also counted under Valgrind (the others are timed only)
    counted: list[str] = field(default_factory=list)

    def bench(self) -> str:
        """asv's ``-b`` regex: the counts of the calls and their time_call."""
        timed = []
        for call in self.calls:
            kernel, name = call.split("/")
            timed.append(
                rf"{suite.area(kernel)}\.{suite.class_name(kernel)}\.time_call\({re.escape(repr(name))}"
            )
        return "|".join([r"counts\.Instructions\.", *timed]) if self.counted else "|".join(timed)


def touched_backends(repo: str, base: str, head: str) -> list[str]:
    """The CPU backends (the reference aside: it is the oracle, not a speed)
    whose modules changed between ``base`` and ``head``."""
    from lenskern import registry

    done = subprocess.run(["git", "-C", repo, "diff", "--name-only", base, head], capture_output=True,
                          text=True, check=True)  # fmt: skip
    changed = done.stdout.split()
    found = []
    for backend, module in registry.BACKENDS.items():
        path = module.replace(".", "/")
        touched = any(name == f"{path}.py" or name.startswith(f"{path}/") for name in changed)
        if backend == "reference" or not touched:
            continue
        try:
            device = registry.declaration(backend).device
        except ImportError:  # its library is not installed here: nothing of it to count
            continue
        if device == "cpu":
            found.append(backend)
    return found


def selection(repo: str, base: str, head: str) -> Selection:
    """Each kernel's first choice, then every implementation (runnable here)
    of the backends the diff touched."""
    import lenskern as lk
    from lenskern import registry
    from lenskern.observatory import counts

    touched = touched_backends(repo, base, head)
    calls = counts.recommended_calls()
    for kernel in registry.NAMES:
        for name, impl in sorted(lk.implementations(kernel).items()):
            if impl.backend in touched and f"{kernel}/{name}" not in calls:
                calls.append(f"{kernel}/{name}")
    counted = [call for call in calls if estimated_seconds(call, PR_TIER) <= COUNT_BUDGET_SECONDS]
    return Selection(calls, touched, counted)


def estimated_seconds(call: str, tier: str) -> float:
    """The registry's cost model for ``kernel/implementation`` at ``tier``."""
    import lenskern as lk
    from lenskern import problems, registry

    kernel, name = call.split("/")
    impl = lk.implementations(kernel).get(name)
    if impl is None:
        return float("inf")
    if kernel in registry.EXAMPLES:
        return impl.estimated_seconds(problems.example_sizes(tier))
    return impl.estimated_seconds(_tier_sizes(tier))


@functools.cache
def _tier_sizes(tier: str) -> dict:
    """A tier's sizes, from its problem made once (not once per call estimated)."""
    import lenskern as lk

    return dict(lk.make_problem(tier).sizes)


def pinned_config(config: Path, threads: str) -> Path:
    """A copy of asv.conf.json whose thread matrix holds one setting only.

    On one thread the calls are timed in CPU seconds of the process
    (``LENSKERN_BENCH_TIMER=cpu``, benchmarks/common.py), which other jobs on
    a shared runner do not inflate the way they inflate wall time; its
    results go to a folder of their own (``.asv/compare``), apart from the
    published wall-time series."""
    from asv.util import load_json  # asv is the bench extra

    conf = load_json(str(config), js_comments=True)
    matrix = {"LENSKERN_NUM_THREADS": [threads]}
    if threads == "1":
        matrix["LENSKERN_BENCH_TIMER"] = ["cpu"]
    conf["matrix"] = {"env_nobuild": matrix}
    root = config.resolve().parent
    for key in ("repo", "benchmark_dir", "env_dir", "results_dir", "html_dir"):
        if key in conf and not os.path.isabs(conf[key]):
            conf[key] = str(root / conf[key])
    compare_dir = Path(conf.get("results_dir", root / ".asv/results")).parent / "compare"
    conf["results_dir"] = str(compare_dir / "results")
    conf["html_dir"] = str(compare_dir / "html")
    path = Path(tempfile.mkdtemp(prefix="lenskern-alert-")) / "asv.conf.json"
    path.write_text(json.dumps(conf, indent=2))
    return path


def resolve(repo: str, name: str) -> str | None:
    """The full hash of commit ``name`` in ``repo``, or None."""
    done = subprocess.run(["git", "-C", repo, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"],
                          capture_output=True, text=True)  # fmt: skip
    return done.stdout.strip() if done.returncode == 0 else None


def read_records(path: Path) -> list[dict]:
    """The lines benchmarks/common.py appended: one per benchmark process."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_imports(records: list[dict], commits: dict[str, str | None]) -> list[str]:
    """Why a side did not run its own commit; empty when each did.

    ``commits``: side ("base", "head") -> the hash asked for. ``records``: one
    per benchmark process, {"asked": the commit asv was benchmarking,
    "imported": the commit its lenskern was built from}. Records for other
    commits (asv may discover the suite on a branch tip) are not checked.
    """
    problems = []
    for side, commit in commits.items():
        if commit is None:
            problems.append(f"{side}: git does not know this commit")
            continue
        imported = Counter(record.get("imported") for record in records if record.get("asked") == commit)
        if not imported:
            problems.append(
                f"{side} `{commit[:8]}`: no benchmark process recorded which lenskern it imported"
            )
        for other, count in sorted(imported.items(), key=lambda item: str(item[0])):
            if other == commit:
                continue
            if other is None:
                problems.append(
                    f"{side} `{commit[:8]}`: {count} benchmark process(es) imported a lenskern without "
                    "the build stamp (lenskern._commit), so which code ran is unknown; a wheel built "
                    "before the stamp existed stays in asv's build cache: delete .asv/env/*/asv-build-cache"
                )
            else:
                problems.append(f"{side} `{commit[:8]}`: {count} benchmark process(es) imported lenskern "
                                f"built from `{other[:8]}`, not from this commit")  # fmt: skip
    return problems


def _counted_key(call: str) -> str:
    return suite.count_name(call)


def _timed_key(call: str, tier: str = PR_TIER) -> str:
    kernel, name = call.split("/")
    return f"{suite.area(kernel)}.{suite.class_name(kernel)}.time_call({name!r}, {tier!r})"


def side_by_side(calls: list[str], verdicts: list[Verdict]) -> list[str]:
    """A table row per call: its instruction count and its time, each
    before and after with its ratio and threshold; counts first, as the
    signal that sees a few per cent."""
    by_key = {v.benchmark: v for v in verdicts}

    def cells(verdict: Verdict | None, unit: str) -> str:
        if verdict is None:
            return "n/a | | |"
        mark = " **slower**" if verdict.regressed else ""
        if unit == "instructions":
            values = f"{verdict.before:,.0f} -> {verdict.after:,.0f}"
        else:
            values = f"{_seconds(verdict.before)} -> {_seconds(verdict.after)}"
        noise = "" if verdict.noise is None else f", noise {verdict.noise:.1%}"
        return f"{values} | {verdict.ratio:.3f}{mark} | x{verdict.threshold:.2f}{noise} |"

    lines = [
        f"| kernel | implementation | instructions before -> after | ratio | threshold | time at {PR_TIER} "
        "before -> after | ratio | threshold |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for call in calls:
        kernel, name = call.split("/")
        counted = cells(by_key.get(_counted_key(call)), "instructions")
        timed = cells(by_key.get(_timed_key(call)), "seconds")
        lines.append(f"| {kernel} | `{name}` | {counted} {timed}".rstrip("|").rstrip() + " |")
    return lines


def _seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def markdown(base: str, head: str, factor: float, code: int, changes: list[Change], log: str,
             problems: list[str] | None = None, imported: str = "",
             verdicts: list[Verdict] | None = None, chosen: Selection | None = None) -> str:  # fmt: skip
    """The report. ``problems``: why a side did not run its own commit (the
    verdict is then broken, whatever asv measured); ``imported``: a line
    saying which commit each side imported, when it was checked."""
    verdict = {
        0: "No benchmark got slower or hungrier by more than its threshold.",
        1: "**Regression**: benchmarks got worse by more than their thresholds.",
        2: "**Broken**: a benchmark failed to run.",
    }.get(code, f"asv continuous exited with status {code}.")
    if problems:
        verdict = "**Broken**: a side's benchmarks did not provably run that side's commit, or a signal "
        verdict += "is missing, so the comparison says nothing:\n\n"
        verdict += "\n".join(f"- {problem}" for problem in problems)
    lines = [f"## lenskern benchmarks: `{base}` -> `{head}`", "", verdict, ""]
    if imported:
        lines += [imported, ""]
    if verdicts is not None:
        lines += [
            f"Thresholds: timings 1 + {NOISE_MULTIPLE:g} x their noise (the larger relative spread of "
            f"the two sides: interquartile range of {ROUNDS * REPEAT} samples or half the range of "
            f"{ROUNDS} processes' medians, rounds interleaved), at least x{factor:g}, and one-sided "
            f"Mann-Whitney p < {ALPHA:g} over the processes' medians; instruction counts and cycle "
            "estimates under Valgrind (one "
            "thread, AVX2 code paths: Valgrind does not model AVX-512) x1.02; peak memory x1.10.",
            "",
        ]
        if chosen is not None:
            touched = ", ".join(f"`{b}`" for b in chosen.touched) or "none"
            lines += [
                f"Counted and timed: each kernel's first choice (what `compute` runs) and every "
                f"implementation of the backends this change touched ({touched}).",
                "",
                *side_by_side(chosen.calls, verdicts),
                "",
            ]
            timed_only = [call for call in chosen.calls if call not in chosen.counted]
            if timed_only:
                lines += [
                    f"Timed only, not counted: {', '.join(f'`{c}`' for c in timed_only)} (estimated above "
                    f"{COUNT_BUDGET_SECONDS:g} s per call at {PR_TIER}, which Valgrind would stretch past "
                    "the check's time).",
                    "",
                ]
        regressed = [v for v in verdicts if v.regressed]
        if regressed:
            lines += ["| kernel | benchmark | before | after | ratio | threshold | noise | p |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
            for v in regressed:
                noise = "n/a" if v.noise is None else f"{v.noise:.1%}"
                p = "n/a" if v.p_value is None else f"{v.p_value:.3g}"
                kernel = suite.kernel_of(v.benchmark.split("(", 1)[0].split(".")[-2])
                lines.append(f"| {kernel} | `{v.benchmark}` | {v.before:.4g} | {v.after:.4g} | "
                             f"{v.ratio:.2f} | {v.threshold:.2f} | {noise} | {p} |")  # fmt: skip
            lines.append("")
    worse = [c for c in changes if c.mark == "!" or (verdicts is None and c.mark == "+")]
    if worse:
        lines += [
            "| kernel | benchmark | implementation, tier | before | after | ratio |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for c in worse:
            after = "failed" if c.mark == "!" else c.after
            lines.append(f"| {c.kernel} | `{c.benchmark}` | {c.params} | {c.before} | {after} | {c.ratio} |")
        lines.append("")
    better = [c for c in changes if c.mark == "-"]
    if better:
        lines.append(f"{len(better)} benchmark(s) got better.")
        lines.append("")
    tail = "\n".join(log.strip().splitlines()[-80:])
    lines += ["<details><summary>asv continuous output</summary>", "", "```", tail, "```",
              "", "</details>"]  # fmt: skip
    return "\n".join(lines)


def compare(
    base: str,
    head: str,
    factor: float = TIME_FLOOR,
    bench: str | None = None,
    threads: str = "1",
    config: Path = Path("asv.conf.json"),
    machine: str | None = None,
    require_counts: bool = False,
) -> tuple[int, str]:
    """Benchmark base and head (asv continuous, samples recorded, rounds
    interleaved) and judge each benchmark by its own threshold; (exit
    status, markdown report). ``factor``: the least ratio a timing must
    exceed, whatever its noise. ``bench``: asv's regex; by default the
    pull request's :func:`selection`, counted and timed. ``require_counts``:
    a selected call without instruction counts on both sides makes the
    comparison broken (exit 2), as where Valgrind is missing."""
    pinned = pinned_config(config, threads)
    try:
        return _compare(base, head, factor, bench, pinned, machine, require_counts)
    finally:
        shutil.rmtree(pinned.parent, ignore_errors=True)


def _compare(base: str, head: str, factor: float, bench: str | None, pinned: Path, machine: str | None,
             require_counts: bool) -> tuple[int, str]:  # fmt: skip
    from lenskern.observatory import counts as counting

    try:
        tiers = suite.selected_tiers(PR_TIER)
    except ValueError as error:  # broken, not a regression: exit 2, as compare's other bad inputs
        return 2, markdown(base, head, factor, 2, [], "", [str(error)])
    repo = json.loads(pinned.read_text())["repo"]
    commits = {"base": resolve(repo, base), "head": resolve(repo, head)}
    if None in commits.values():
        unknown = [f"{side}: git does not know {name!r}" for side, name in (("base", base), ("head", head))
                   if commits[side] is None]  # fmt: skip
        return 2, markdown(base, head, factor, 2, [], "", unknown)
    chosen = selection(repo, commits["base"], commits["head"])
    if bench:  # the calls of the selection that the regex names
        chosen.calls = [
            c for c in chosen.calls if any(re.search(bench, key(c)) for key in (_counted_key, _timed_key))
        ]
        chosen.counted = [
            c for c in chosen.counted if c in chosen.calls and re.search(bench, _counted_key(c))
        ]
    bench = suite.all_of(bench or chosen.bench(), suite.tier_regex(tiers))
    env = dict(os.environ, **{suite.TIERS_VARIABLE: ",".join(tiers)})
    env[counting.CALLS_VARIABLE] = ",".join(chosen.counted)
    print(f"timing {len(chosen.calls)} calls and counting {len(chosen.counted)} of them (each kernel's first "
          f"choice; backends touched: {', '.join(chosen.touched) or 'none'})", flush=True)  # fmt: skip
    command = [sys.executable, "-m", "asv", "continuous", "--config", str(pinned), "--factor", str(factor),
               "--record-samples", "--interleave-rounds", "-a", f"rounds={ROUNDS}", "-a", f"repeat={REPEAT}",
               "--show-stderr", "--bench", bench, base, head]  # fmt: skip
    if machine:
        command += ["--machine", machine]
    # Each benchmark process appends the commit it imported here (benchmarks/common.py).
    record = pinned.parent / "imported.jsonl"
    env["LENSKERN_IMPORT_RECORD"] = str(record)
    print("$ asv " + " ".join(command[3:]), flush=True)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    log = []
    for line in process.stdout:  # stream it: a run takes minutes
        print(line, end="", flush=True)
        log.append(line)
    process.wait()
    output = "".join(log)
    records = read_records(record)
    problems = check_imports(records, commits)
    imported = ""
    verdicts: list[Verdict] = []
    if not problems:
        processes = {side: sum(r.get("asked") == commit for r in records) for side, commit in commits.items()}
        imported = ("Each side imported lenskern built from its own commit: "
                    f"base `{commits['base'][:8]}` ({processes['base']} benchmark processes), "
                    f"head `{commits['head'][:8]}` ({processes['head']}).")  # fmt: skip
        print("\n" + imported, flush=True)
        results_dir = Path(json.loads(pinned.read_text())["results_dir"])
        name = machine or _only_machine(results_dir)
        if name:
            verdicts = judge(read_results(results_dir, name, commits["base"]),
                             read_results(results_dir, name, commits["head"]), floor=factor)  # fmt: skip
            write_noise(results_dir / name / "noise.json", commits, verdicts)
        if require_counts:
            judged = {v.benchmark for v in verdicts}
            uncounted = [call for call in chosen.counted if _counted_key(call) not in judged]
            if uncounted:
                problems.append(
                    f"no instruction count on both sides for {len(uncounted)} of {len(chosen.counted)} calls "
                    f"({', '.join(uncounted[:5])}{', ...' if len(uncounted) > 5 else ''}): "
                    f"{counting.supported() or 'see the setup_cache output above'}"
                )
    if problems:
        code = 2  # never a verdict on speed when a side timed the wrong code or a signal is missing
        print("\nbroken comparison:\n" + "\n".join(problems), flush=True)
    else:
        failed = any(c.mark == "!" for c in parse(output))
        code = 2 if failed else (1 if any(v.regressed for v in verdicts) else 0)
    return code, markdown(base, head, factor, code, parse(output), output, problems, imported, verdicts,
                          chosen)  # fmt: skip


def _only_machine(results_dir: Path) -> str | None:
    """The machine of the results, when there is exactly one."""
    names = [p.name for p in results_dir.iterdir() if p.is_dir()] if results_dir.exists() else []
    return names[0] if len(names) == 1 else None
