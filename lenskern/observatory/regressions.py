"""The nightly job's regression issue: asv's published jumps, each kept
only where it exceeds the benchmark's own threshold (lenskern.observatory.verdict)."""

from __future__ import annotations

import json
from pathlib import Path

from lenskern.observatory import results
from lenskern.observatory.verdict import judge


def _graph_settings(graph: str) -> dict[str, str]:
    """The settings a graph's path encodes: ``.../machine-NAME/...`` -> {machine: NAME}."""
    return dict(part.split("-", 1) for part in Path(graph).parent.parts if "-" in part)


def _samples_at(results_dir: Path, settings: dict, commit: str, name: str, index: int) -> dict | None:
    """One benchmark parameter's result at one commit (the ``index``-th
    combination of its parameters), with its samples, in the result file of
    the graph's machine and thread setting."""
    machine = settings.get("machine")
    if not machine or not commit:
        return None
    for found in results.read(results_dir, machine, commit):
        if any(found.env_vars.get(k, v) != v for k, v in settings.items() if k.isupper()):
            continue
        rows = [m for m in found.measurements if m.benchmark == name]
        if not rows:
            continue
        if index >= len(rows) or rows[index].value is None:
            return None
        m = rows[index]
        return {"value": m.value, "samples": list(m.samples) if m.samples else None, "q": m.quartiles}
    return None


def regressions(html_dir: Path, results_dir: Path | None = None) -> tuple[int, str]:
    """(number of regressions, markdown) from a published site's
    regressions.json, each of asv's jumps kept only when it exceeds the
    benchmark's own threshold (the verdict's rules, from the samples of the
    two commits in ``results_dir``): asv flags every jump above one global
    fraction, and on a shared runner the noisy benchmarks cross it every night."""
    path = html_dir / "regressions.json"
    if not path.exists():
        return 0, "No regressions file: has the site been published?"
    found = json.loads(path.read_text()).get("regressions", [])
    index = json.loads((html_dir / "index.json").read_text()) if (html_dir / "index.json").exists() else {}
    to_hash = {int(k): v for k, v in index.get("revision_to_hash", {}).items()}
    results_dir = results_dir or html_dir.parent / "results"
    lines = [
        "## Performance regressions in the published lenskern benchmarks",
        "",
        "Each jump exceeds its benchmark's own threshold (from the samples' noise, as in "
        "`python -m lenskern.observatory compare`).",
        "",
        "| benchmark | graph | revisions | before -> after | ratio | threshold |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    kept = 0
    # asv's entries: [name, graph path, graph params, parameter index, last
    # value, best value, jumps], each jump (revision before or None,
    # revision after, value before, value after).
    for name, graph, _params, param_index, _last, _best, jumps in found:
        settings = _graph_settings(graph)
        benchmark = name.split("(", 1)[0]
        for before, after, value_before, value_after in jumps or []:
            sides = [_samples_at(results_dir, settings, to_hash.get(rev), benchmark, param_index or 0)
                     for rev in (before, after)]  # fmt: skip
            b = sides[0] or {"value": value_before, "samples": None, "q": (None, None)}
            a = sides[1] or {"value": value_after, "samples": None, "q": (None, None)}
            (verdict,) = judge({name: b}, {name: a}) or [None]
            if verdict is None or not verdict.regressed:
                continue
            kept += 1
            revisions = f"{before}..{after}" if before is not None else f"{after}"
            lines.append(f"| `{name}` | `{graph}` | {revisions} | {value_before:.3g} -> {value_after:.3g} "
                         f"| {verdict.ratio:.2f} | {verdict.threshold:.2f} |")  # fmt: skip
    if not kept:
        return 0, "No regressions above their benchmarks' thresholds in the published results."
    return kept, "\n".join(lines)
