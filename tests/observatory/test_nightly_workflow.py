"""The nightly job as GitHub runs it: nightly.yml's benchmark job, step by
step, in a clean clone, as a user that is not root (tests/observatory/workflow_runner.py),
against a bare copy of the repository as its origin.

The first night seeds the machine with the tip alone, publishes a site that
works offline, pushes the results to the asv-results branch and opens no
regression issue; the next night, after two new commits, benchmarks those
two and nothing else. The suite is narrowed through the repository variable
the workflow reads (LENSKERN_NIGHTLY_BENCH): the whole suite is the main
job's to measure, not a test's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import workflow_runner

from conftest import ROOT, git

pytest.importorskip("asv")
WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"
#: One count and one timing of the recommended noise normalization.
BENCH = (
    r"counts\.Instructions\.track_instructions\('noise_normalization/numpy\.vector'\)"
    r"|likelihood\.NoiseNormalization\.time_call\('numpy\.vector'"
)


@pytest.fixture(scope="module")
def night(runner):
    """A clean clone on main whose origin is a bare copy of this repository,
    owned by the runner."""
    user, home, _ = runner
    work = Path(tempfile.mkdtemp(prefix="nightly-", dir=home))
    origin, repo = work / "origin.git", work / "repo"
    subprocess.run(["git", "clone", "-q", "--bare", str(ROOT), str(origin)], check=True)
    subprocess.run(["git", "clone", "-q", str(origin), str(repo)], check=True)
    git(repo, "checkout", "-q", "-B", "main")
    if user:
        subprocess.run(["chown", "-R", f"{user[0]}:{user[1]}", str(work)], check=True)
    yield origin, repo
    shutil.rmtree(work, ignore_errors=True)


def run_night(runner, repo: Path) -> workflow_runner.Job:
    user, home, python_bin = runner
    event = {"repository": {"full_name": "lenskern/lenskern"}}
    return workflow_runner.run_job(
        WORKFLOW, "benchmark", repo, event_name="schedule", event=event, python_bin=python_bin, user=user,
        home=home, variables={"LENSKERN_NIGHTLY_BENCH": BENCH}, cache_root=home / ".cache" / "actions",
    )  # fmt: skip


def pushed_commits(origin: Path) -> set[str]:
    """The commit prefixes with results on the asv-results branch of ``origin``."""
    listing = git(origin, "ls-tree", "-r", "--name-only", "asv-results").split()
    machine = [name.split("/", 1)[1] for name in listing if name.startswith("github-actions/")]
    return {name.split("-", 1)[0] for name in machine if name != "machine.json"}


def test_two_nights_seed_the_tip_then_take_the_new_commits(runner, night):
    origin, repo = night
    first = run_night(runner, repo)
    for step in first.steps:
        assert step.outcome in ("success", "skipped"), f"{step.name}: {step.outcome}\n{step.output[-4000:]}"
    tip = git(repo, "rev-parse", "HEAD")
    assert pushed_commits(origin) == {tip[:8]}, "the first night seeds the tip alone"
    assert (repo / ".asv" / "html" / "index.html").is_file() and first.uploaded == [repo / ".asv" / "html"]
    assert first.step("Open or update the regression issue").outcome == "skipped"
    result = json.loads(
        next((repo / ".asv" / "results" / "github-actions").glob(f"{tip[:8]}-*THREADS1.json")).read_text()
    )
    names = " ".join(result["results"])
    assert "track_instructions" in names and "NoiseNormalization.time_call" in names
    # on one thread, Valgrind counted the one call the narrowed suite selects, not all fifteen
    counted = dict(zip(result["result_columns"], result["results"]["counts.Instructions.track_instructions"]))
    assert counted["params"] == [["'noise_normalization/numpy.vector'"]] and counted["result"][0] > 0

    # the next night: two commits landed on main since
    user, _, _ = runner
    for message in ("a first change", "a second change"):
        (repo / "README.md").write_text((repo / "README.md").read_text() + f"\n{message}\n")
        git(repo, "commit", "-qam", message)
    if user:
        subprocess.run(["chown", "-R", f"{user[0]}:{user[1]}", str(repo)], check=True)
    new = git(repo, "rev-list", "--max-count=2", "HEAD").split()
    second = run_night(runner, repo)
    nightly = second.step("Benchmark tonight's commits")
    assert nightly.outcome == "success", nightly.output[-4000:]
    assert "benchmarking 2 commit(s) of main" in nightly.output and "0 left pending" in nightly.output
    assert pushed_commits(origin) == {tip[:8]} | {commit[:8] for commit in new}
