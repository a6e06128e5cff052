"""Regression alerts: the logic the GitHub workflows call, kept out of YAML.

``compare`` runs ``asv continuous`` of a base against a head commit on one
pinned thread, decides pass or fail, and writes a markdown report;
``regressions`` reads a published site's ``regressions.json`` and writes the
body of the issue the nightly job opens or updates.

Exit status of ``compare`` (asv's own): 0 no benchmark got worse by more than
the factor, 1 at least one did, 2 a benchmark failed to run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
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


def markdown(base: str, head: str, factor: float, code: int, changes: list[Change], log: str) -> str:
    verdict = {
        0: f"No benchmark got slower or hungrier by more than x{factor:g}.",
        1: f"**Regression**: benchmarks got worse by more than x{factor:g}.",
        2: "**Broken**: a benchmark failed to run.",
    }.get(code, f"asv continuous exited with status {code}.")
    lines = [f"## lenskern benchmarks: `{base}` -> `{head}`", "", verdict, ""]
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
    command = [sys.executable, "-m", "asv", "continuous", "--config", str(pinned_config(config, threads)),
               "--factor", str(factor), "--show-stderr", base, head]  # fmt: skip
    if bench:
        command += ["--bench", bench]
    if machine:
        command += ["--machine", machine]
    print("$ asv " + " ".join(command[3:]), flush=True)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = []
    for line in process.stdout:  # stream it: a run takes minutes
        print(line, end="", flush=True)
        log.append(line)
    code = process.wait()
    output = "".join(log)
    return code, markdown(base, head, factor, code, parse(output), output)


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
