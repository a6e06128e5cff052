"""Regression alerts: the logic the GitHub workflows call, kept out of YAML.

``compare`` runs ``asv continuous`` of a base against a head commit on one
pinned thread, decides pass or fail, and writes a markdown report;
``regressions`` reads a published site's ``regressions.json`` and writes the
body of the issue the nightly job opens or updates.

Exit status of ``compare`` (asv's own): 0 no benchmark got worse by more than
the factor, 1 at least one did, 2 a benchmark failed to run. Also 2, whatever
asv said, when a side did not run its own commit: each benchmark process
records the commit asv is benchmarking and the commit its lenskern was built
from (stamped at build time by asv.conf.json, recorded by
benchmarks/common.py), and the two must agree for both sides.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lenskern.observatory import suite

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


def pinned_config(config: Path, threads: str) -> Path:
    """A copy of asv.conf.json whose thread matrix holds one setting only."""
    from asv.util import load_json  # asv is the bench extra

    conf = load_json(str(config), js_comments=True)
    conf["matrix"] = {"env_nobuild": {"LENSKERN_NUM_THREADS": [threads]}}
    root = config.resolve().parent
    for key in ("repo", "benchmark_dir", "env_dir", "results_dir", "html_dir"):
        if key in conf and not os.path.isabs(conf[key]):
            conf[key] = str(root / conf[key])
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


def markdown(base: str, head: str, factor: float, code: int, changes: list[Change], log: str,
             problems: list[str] | None = None, imported: str = "") -> str:  # fmt: skip
    """The report. ``problems``: why a side did not run its own commit (the
    verdict is then broken, whatever asv measured); ``imported``: a line
    saying which commit each side imported, when it was checked."""
    verdict = {
        0: f"No benchmark got slower or hungrier by more than x{factor:g}.",
        1: f"**Regression**: benchmarks got worse by more than x{factor:g}.",
        2: "**Broken**: a benchmark failed to run.",
    }.get(code, f"asv continuous exited with status {code}.")
    if problems:
        verdict = "**Broken**: a side's benchmarks did not provably run that side's commit, so the "
        verdict += "timings compare nothing:\n\n"
        verdict += "\n".join(f"- {problem}" for problem in problems)
    lines = [f"## lenskern benchmarks: `{base}` -> `{head}`", "", verdict, ""]
    if imported:
        lines += [imported, ""]
    worse = [c for c in changes if c.mark in "+!"]
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
    factor: float = 1.1,
    bench: str | None = None,
    threads: str = "1",
    config: Path = Path("asv.conf.json"),
    machine: str | None = None,
) -> tuple[int, str]:
    """asv continuous of base against head; (exit status, markdown report)."""
    pinned = pinned_config(config, threads)
    command = [sys.executable, "-m", "asv", "continuous", "--config", str(pinned),
               "--factor", str(factor), "--show-stderr", base, head]  # fmt: skip
    if bench:
        command += ["--bench", bench]
    if machine:
        command += ["--machine", machine]
    # Each benchmark process appends the commit it imported here (benchmarks/common.py).
    record = pinned.parent / "imported.jsonl"
    env = dict(os.environ, LENSKERN_IMPORT_RECORD=str(record))
    print("$ asv " + " ".join(command[3:]), flush=True)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    log = []
    for line in process.stdout:  # stream it: a run takes minutes
        print(line, end="", flush=True)
        log.append(line)
    code = process.wait()
    output = "".join(log)
    repo = json.loads(pinned.read_text())["repo"]
    commits = {"base": resolve(repo, base), "head": resolve(repo, head)}
    records = read_records(record)
    problems = check_imports(records, commits)
    imported = ""
    if problems:
        code = 2  # never a verdict on speed when a side timed the wrong code
        print("\nbroken comparison: a side did not run its own commit\n" + "\n".join(problems), flush=True)
    else:
        counts = {side: sum(r.get("asked") == commit for r in records) for side, commit in commits.items()}
        imported = ("Each side imported lenskern built from its own commit: "
                    f"base `{commits['base'][:8]}` ({counts['base']} benchmark processes), "
                    f"head `{commits['head'][:8]}` ({counts['head']}).")  # fmt: skip
        print("\n" + imported, flush=True)
    return code, markdown(base, head, factor, code, parse(output), output, problems, imported)


def regressions(html_dir: Path) -> tuple[int, str]:
    """(number of regressions, markdown) from a published site's regressions.json."""
    path = html_dir / "regressions.json"
    if not path.exists():
        return 0, "No regressions file: has the site been published?"
    data = json.loads(path.read_text())
    found = data.get("regressions", [])
    if not found:
        return 0, "No regressions in the published results."
    lines = [
        "## Performance regressions in the published lenskern benchmarks",
        "",
        "| benchmark | graph | revisions | before -> after |",
        "| --- | --- | --- | --- |",
    ]
    # asv's entries: [name, graph path, graph params, parameter index, last
    # value, best value, jumps], each jump (revision before or None,
    # revision after, value before, value after).
    for name, graph, _params, _index, _last, _best, jumps in found:
        for before, after, value_before, value_after in jumps or []:
            revisions = f"{before}..{after}" if before is not None else f"{after}"
            lines.append(f"| `{name}` | `{graph}` | {revisions} | {value_before:.3g} -> {value_after:.3g} |")
    return len(found), "\n".join(lines)
