"""The pull-request check as GitHub runs it: benchmarks-pr.yml's steps in
order, in a clean clone, as a user that is not root (tests/observatory/workflow_runner.py).

A planted 3% slowdown (one more pass over a K-element array in the
recommended noise normalization) fails the check through the workflow's own
compare command, seen by the instruction counts; the report is counted
first, goes to the job summary, updates the one PR comment in place, and the
artifact holds the results. An unchanged commit passes, judged on its count
alone: a count is the same beside other tests, so that test needs no cores
to itself (the verdict on an unchanged commit's timing is
tests/observatory/test_alert.py's, which runs alone).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import workflow_runner

from conftest import clone_with_plant, git

pytest.importorskip("asv")
ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "benchmarks-pr.yml"
#: The PR check narrowed, through the repository variable the workflow reads,
#: to the planted kernel's count (COUNT, the unchanged commit's check) and
#: time (BENCH): the whole selection is the nightly's and the measured PR
#: check's business, not a test's.
COUNT = r"counts\.Instructions\.track_instructions\('noise_normalization/numpy\.vector'\)"
BENCH = COUNT + r"|likelihood\.NoiseNormalization\.time_call\('numpy\.vector'"
PLANT = (
    "return float(np.sum(2.0 * np.log(TWO_PI * noise**2)))",
    "return float(np.sum(2.0 * np.log(TWO_PI * noise**2) + 0.0))",  # one more pass over K elements
)
MARKER = "<!-- lenskern-benchmarks -->"


@pytest.fixture(scope="module")
def workspace(runner):
    """A clean clone the runner owns, with a planted and an unchanged commit."""
    user, home, _ = runner
    work = Path(tempfile.mkdtemp(prefix="pr-", dir=home))
    repo = work / "repo"
    base, planted, unchanged = clone_with_plant(
        repo, "lenskern/backends/numpy.py", PLANT, "plant one more pass in the noise normalization"
    )
    git(repo, "checkout", "-q", planted)
    if user:
        subprocess.run(["chown", "-R", f"{user[0]}:{user[1]}", str(work)], check=True)
    yield repo, base, planted, unchanged
    shutil.rmtree(work, ignore_errors=True)


def run_check(runner, workspace, head: str, comments: list, bench: str = BENCH) -> workflow_runner.Job:
    user, home, python_bin = runner
    repo, base, *_ = workspace
    event = {
        "number": 42,
        "repository": {"full_name": "lenskern/lenskern"},
        "pull_request": {"base": {"sha": base}, "labels": [{"name": "benchmark"}],
                         "head": {"sha": head, "repo": {"full_name": "lenskern/lenskern"}}},
    }  # fmt: skip
    return workflow_runner.run_job(
        WORKFLOW, "compare", repo, event_name="pull_request", event=event, python_bin=python_bin,
        user=user, home=home, variables={"LENSKERN_PR_BENCH": bench}, cache_root=home / ".cache" / "actions",
        comments=comments,
    )  # fmt: skip


def test_a_planted_3_percent_fails_the_check_through_the_workflow(runner, workspace):
    repo, base, planted, _ = workspace
    others = {"id": 3, "body": "a reviewer's comment"}
    ours = {"id": 7, "body": f"{MARKER}\nthe report of an earlier push"}
    job = run_check(runner, workspace, planted, [others, ours])
    steps = {step.name: step for step in job.steps}
    for name in (
        "Install Valgrind (the instruction counts)",
        "Install lenskern and asv",
        "Name this runner for asv",
    ):
        assert steps[name].outcome == "success", steps[name].output[-3000:]
    compare = steps["Compare base and head"]
    assert compare.code == 1, compare.output[-5000:]
    report = (repo / "benchmark-report.md").read_text()
    assert "**Regression**" in report
    table = report.split("Counted and timed", 1)[1].split("<details>")[0]
    (row,) = [line for line in table.splitlines() if line.startswith("| noise_normalization |")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    # counts first: kernel, implementation, instructions, ratio, threshold, then the time's three
    assert cells[1] == "`numpy.vector`" and "**slower**" in cells[3] and cells[4] == "x1.02", row
    assert 1.02 < float(cells[3].split()[0]) < 1.10, row
    assert cells[5] != "n/a", "the time sits beside the count"
    assert report in job.summary, "the report is in the job summary, where a fork's PR reads it"
    # the one comment, found by its marker and updated in place
    assert steps["Comment on the pull request"].outcome == "success"
    writes = [call for call in job.github_calls if call["name"] != "issues.listComments"]
    assert [call["name"] for call in writes] == ["issues.updateComment"], job.github_calls
    assert writes[0]["args"]["comment_id"] == 7 and writes[0]["args"]["body"].startswith(MARKER)
    # the artifact: compare's results and the report, both there
    assert steps["Upload results"].outcome == "success"
    assert {p.name for p in job.uploaded} == {"results", "benchmark-report.md"}


def test_an_unchanged_commit_passes_the_check(runner, workspace):
    repo, _, _, unchanged = workspace
    job = run_check(runner, workspace, unchanged, [], bench=COUNT)
    compare = job.step("Compare base and head")
    assert compare.code == 0, compare.output[-5000:]
    report = (repo / "benchmark-report.md").read_text()
    assert "No benchmark got slower" in report and "| noise_normalization | `numpy.vector` |" in report
    assert [call["name"] for call in job.github_calls][-1] == "issues.createComment"  # none to update yet
