"""The GitHub workflows are valid: the workflow JSON schema and yamllint,
both offline; and they call the repository's scripts, not inline logic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_the_workflows_exist():
    assert {p.stem for p in WORKFLOWS} == {"tests", "benchmarks-pr", "nightly", "gpu", "node"}


def test_every_benchmarking_machine_keeps_its_results_on_one_branch():
    """The nightly job, the GPU runner and the node each check out and push
    the results branch, so the published site offers every machine."""
    for name in ("nightly", "gpu", "node"):
        text = (ROOT / ".github/workflows" / f"{name}.yml").read_text()
        assert "lenskern.observatory results checkout" in text, name
        assert "lenskern.observatory results push" in text, name


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_the_github_schema(workflow):
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
         str(workflow)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_pass_yamllint():
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "-c", str(ROOT / ".yamllint.yml"),
         str(ROOT / ".github" / "workflows")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_typo(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text((ROOT / ".github/workflows/tests.yml").read_text().replace("runs-on", "run-on"))
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
         str(broken)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode != 0


def test_workflows_stay_thin():
    """Decisions live in lenskern.observatory; the YAML only calls it, and
    never pipes the comparison (a pipe would hide its exit status)."""
    pr = (ROOT / ".github/workflows/benchmarks-pr.yml").read_text()
    assert "python -m lenskern.observatory compare" in pr
    assert "compare" in pr and "| tee" not in pr
    nightly = (ROOT / ".github/workflows/nightly.yml").read_text()
    assert "python -m lenskern.observatory regressions" in nightly
    assert "python -m lenskern.observatory publish" in nightly
    for workflow in WORKFLOWS:
        text = workflow.read_text()
        assert "bash .ci/run" in text or "lenskern.observatory" in text, workflow.name
