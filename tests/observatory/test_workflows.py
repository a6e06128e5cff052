"""The GitHub workflows are valid: the workflow JSON schema, yamllint and
actionlint, all offline; they call the repository's scripts, not inline
logic; and what they do as a user that is not root works
(tests/observatory/test_pr_workflow.py runs the PR check's steps end to end)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import workflow_runner
import yaml

from lenskern.observatory import nightly

ROOT = Path(__file__).resolve().parents[2]
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


def test_workflows_pass_actionlint():
    """Expressions, contexts, action inputs and runtimes, as GitHub reads
    them (the self-hosted runners' labels in .github/actionlint.yaml)."""
    actionlint = Path(sys.executable).parent / "actionlint"
    result = subprocess.run([str(actionlint if actionlint.exists() else "actionlint"), *map(str, WORKFLOWS)],
                            cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_wrong_context(tmp_path):
    broken = tmp_path / "broken.yml"
    text = (ROOT / ".github/workflows/benchmarks-pr.yml").read_text()
    broken.write_text(text.replace("github.event.pull_request.base.sha", "github.evnt.pull_request.base.sha"))
    actionlint = Path(sys.executable).parent / "actionlint"
    result = subprocess.run([str(actionlint if actionlint.exists() else "actionlint"), str(broken)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode != 0 and "evnt" in result.stdout


def test_the_alert_paths_install_valgrind_and_require_counts():
    """The PR check and the nightly count instructions: Valgrind installed
    by the script that uses sudo where not root; the PR check fails as
    broken when a count is missing, and uploads compare's own results."""
    pr = yaml.safe_load((ROOT / ".github/workflows/benchmarks-pr.yml").read_text())
    nightly_spec = yaml.safe_load((ROOT / ".github/workflows/nightly.yml").read_text())
    for steps in (pr["jobs"]["compare"]["steps"], nightly_spec["jobs"]["benchmark"]["steps"]):
        assert any(step.get("run") == "bash .ci/install-valgrind" for step in steps)
    (compare,) = [s for s in pr["jobs"]["compare"]["steps"] if s.get("id") == "compare"]
    assert "--require-counts" in compare["run"]
    (upload,) = [
        s for s in pr["jobs"]["compare"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact")
    ]
    assert ".asv/compare/results" in upload["with"]["path"] and upload["with"]["if-no-files-found"] == "error"
    nightly_runs = " ".join(step.get("run", "") for step in nightly_spec["jobs"]["benchmark"]["steps"])
    assert "lenskern.observatory nightly" in nightly_runs and "asv run NEW" not in nightly_runs


def _comment_condition() -> str:
    pr = yaml.safe_load((ROOT / ".github/workflows/benchmarks-pr.yml").read_text())
    (step,) = [s for s in pr["jobs"]["compare"]["steps"] if s.get("name") == "Comment on the pull request"]
    return step["if"]


@pytest.mark.parametrize("fork", [False, True])
def test_a_fork_gets_the_summary_not_a_comment(fork, tmp_path):
    """A fork's token cannot comment: the step is skipped there (the report
    is in the job summary either way)."""
    (tmp_path / "benchmark-report.md").write_text("report")
    head = "someone/lenskern" if fork else "lenskern/lenskern"
    context = {"github": {"event_name": "pull_request", "repository": "lenskern/lenskern",
                          "event": {"pull_request": {"head": {"repo": {"full_name": head}}}}}}  # fmt: skip
    assert workflow_runner.evaluate(_comment_condition(), context, "failure", tmp_path) is (not fork)


def test_the_runner_reads_expressions_as_github():
    context = {
        "inputs": {"factor": ""},
        "vars": {},
        "github": {"event": {"labels": [{"name": "a"}, {"name": "b"}]}},
    }
    assert workflow_runner.evaluate("inputs.factor || '1.10'", context) == "1.10"
    assert workflow_runner.evaluate("contains(github.event.labels.*.name, 'b')", context) is True
    assert workflow_runner.evaluate("!always() || success()", context, "failure") is False
    assert workflow_runner.interpolate("x${{ vars.NONE || '' }}y", context) == "xy"


def _shim(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


def test_valgrind_is_installed_through_sudo_where_not_root():
    """.ci/install-valgrind as GitHub's runner user: apt-get through sudo.
    A stand-in sudo records its arguments and 'installs' a stand-in
    valgrind; PATH holds nothing else, so the real Valgrind is not found."""
    folder = Path(tempfile.mkdtemp(prefix="lenskern-sudo-"))
    try:
        folder.chmod(0o777)
        log = folder / "sudo.log"
        _shim(
            folder,
            "sudo",
            f'echo "$*" >> {log}; [ "$2" = install ] && cp {folder}/fake {folder}/valgrind; true',
        )
        _shim(folder, "fake", "true")
        for tool in ("id", "cp", "true"):
            os.symlink(shutil.which(tool), folder / tool)
        script = folder / "install-valgrind"
        shutil.copy(ROOT / ".ci" / "install-valgrind", script)
        script.chmod(0o755)
        as_user = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}
        done = subprocess.run(["/bin/bash", str(script)], env={"PATH": str(folder)}, capture_output=True,
                              text=True, **as_user)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert log.read_text().splitlines() == ["apt-get update -qq", "apt-get install -y -qq valgrind"]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_the_nightly_and_the_pr_check_share_one_cached_asv_environment():
    """Both cache .asv/env under one key, so a pull request's check restores
    the environment a night on main built instead of building its own."""
    caches = []
    for name, job in (("nightly", "benchmark"), ("benchmarks-pr", "compare")):
        spec = yaml.safe_load((ROOT / ".github" / "workflows" / f"{name}.yml").read_text())
        steps = spec["jobs"][job]["steps"]
        (cache,) = [step["with"] for step in steps if step.get("uses", "").startswith("actions/cache@")]
        caches.append(cache)
    assert caches[0] == caches[1] and caches[0]["path"] == ".asv/env"


def test_the_nightly_seeds_from_the_tip_then_takes_a_few_pending_a_night():
    commits = [f"{i:02d}" * 20 for i in range(10)]  # newest first
    assert nightly.plan(commits, set()) == (commits[:1], [])  # a new machine: the tip alone
    done = {commits[7][:8]}  # seeded at commit 7; 0-6 landed since
    tonight, pending = nightly.plan(commits, done, cap=3)
    assert tonight == commits[:3] and pending == commits[3:7]
    done |= {c[:8] for c in tonight}
    tonight, pending = nightly.plan(commits, done, cap=3)
    assert tonight == commits[3:6] and pending == commits[6:7]  # the queue drains, newest first
    assert nightly.plan(commits, {c[:8] for c in commits[:8]}) == ([], [])
    with pytest.raises(ValueError, match="cap"):
        nightly.plan(commits, done, cap=0)
