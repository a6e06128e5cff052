"""Every machine's results on one branch: machines that push at their own
times all end up there, and a machine's record names its GPU."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lenskern.observatory import machines

pytest.importorskip("asv")


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def origin(tmp_path):
    """A bare remote with one commit on main, and a clone factory."""
    bare = tmp_path / "origin.git"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    seed = tmp_path / "seed"
    git("init", "-q", "-b", "main", str(seed), cwd=tmp_path)
    (seed / "README.md").write_text("lenskern\n")
    git("add", ".", cwd=seed)
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "start", cwd=seed)
    git("push", "-q", str(bare), "main", cwd=seed)
    return bare


def clone(origin: Path, name: str) -> Path:
    path = origin.parent / name
    git("clone", "-q", str(origin), str(path), cwd=origin.parent)
    return path


def test_machines_pushing_in_any_order_all_reach_the_branch(origin, monkeypatch):
    gpu, node = clone(origin, "gpu"), clone(origin, "node")
    for path in (gpu, node):  # both check out before either pushes: one loses the race
        monkeypatch.chdir(path)
        machines.checkout()
    for path, machine in ((gpu, "gpu-runner"), (node, "node-128c")):
        monkeypatch.chdir(path)
        (machines.RESULTS / machine).mkdir()
        (machines.RESULTS / machine / "machine.json").write_text(json.dumps({"machine": machine}))
        assert machines.push(f"{machine} results")
    assert not machines.push("nothing new")
    nightly = clone(origin, "nightly")
    monkeypatch.chdir(nightly)
    results = machines.checkout()
    assert {p.name for p in results.iterdir() if p.name != ".git"} == {"gpu-runner", "node-128c"}


def test_a_machine_record_names_its_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(machines.Path, "home", lambda: tmp_path)
    record = machines.record("gpu-test", gpu="1 x NVIDIA H100 80GB HBM3")
    assert record["gpu"] == "1 x NVIDIA H100 80GB HBM3"
    stored = json.loads((tmp_path / ".asv-machine.json").read_text())["gpu-test"]
    assert stored["gpu"] == record["gpu"] and stored["machine"] == "gpu-test"


def _results(machine: str, benchmarks: dict) -> None:
    """What asv leaves in .asv/results after a run: the machine's folder and
    the shared list of benchmarks."""
    (machines.RESULTS / machine).mkdir(exist_ok=True)
    (machines.RESULTS / machine / "machine.json").write_text(json.dumps({"machine": machine}))
    (machines.RESULTS / "benchmarks.json").write_text(json.dumps({"version": 2, **benchmarks}, indent=4))


def _branch_file(origin: Path, path: str) -> str:
    return git("show", f"{machines.BRANCH}:{path}", cwd=origin)


def test_machines_whose_benchmark_lists_differ_merge_them_and_never_push_a_conflict(origin, monkeypatch):
    """Both rewrite asv's shared benchmarks.json: the second push rebases,
    merges the lists by union and pushes; no conflict marker reaches the branch."""
    cpu, gpu = clone(origin, "cpu"), clone(origin, "gpu")
    for path in (cpu, gpu):
        monkeypatch.chdir(path)
        machines.checkout()
    monkeypatch.chdir(cpu)
    _results("node-128c", {"offsets.WTilde.time_call": {"params": ["cpu"]}})
    assert machines.push("cpu results")
    monkeypatch.chdir(gpu)
    _results("gpu-runner", {"device.WTilde.time_call": {"params": ["gpu"]}})
    # an earlier push of this machine stopped mid-rebase on the conflict (the bug: a rerun then
    # committed the markers): the next push aborts it and merges
    git("add", "-A", ".", cwd=machines.RESULTS)
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "gpu", cwd=machines.RESULTS)
    git("fetch", "-q", "origin", machines.BRANCH, cwd=machines.RESULTS)
    stopped = subprocess.run(["git", "rebase", "FETCH_HEAD"], cwd=machines.RESULTS, capture_output=True)
    assert stopped.returncode != 0  # the conflict
    assert machines.push("gpu results")
    merged = _branch_file(origin, "benchmarks.json")
    assert "<<<<<<<" not in merged and ">>>>>>>" not in merged
    assert set(json.loads(merged)) == {"version", "offsets.WTilde.time_call", "device.WTilde.time_call"}
    listing = git("ls-tree", "--name-only", machines.BRANCH, cwd=origin).split()
    assert {"node-128c", "gpu-runner", "benchmarks.json"} <= set(listing)
    assert not machines.push("nothing new")


def test_two_machines_of_one_name_conflict_loudly_and_leave_no_rebase(origin, monkeypatch):
    first, second = clone(origin, "first"), clone(origin, "second")
    for path in (first, second):
        monkeypatch.chdir(path)
        machines.checkout()
    for path, value in ((first, "one"), (second, "two")):
        monkeypatch.chdir(path)
        (machines.RESULTS / "same").mkdir()
        (machines.RESULTS / "same" / "machine.json").write_text(json.dumps({"machine": value}))
        if path == first:
            assert machines.push("first")
    with pytest.raises(RuntimeError, match=r"same/machine\.json changed on asv-results and here"):
        machines.push("second")
    assert not machines._rebasing()
    assert json.loads(_branch_file(origin, "same/machine.json")) == {"machine": "one"}


def test_push_without_a_results_worktree_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^results: .* is not the results worktree; run `results checkout`"):
        machines.push("anything")


def _observatory(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    import sys

    command = [sys.executable, "-m", "lenskern.observatory", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd)


def test_the_observatory_command_line_says_one_line_and_exits_non_zero(tmp_path):
    for args, code, text in [
        (["serve", "--port", "99999"], 2, "argument --port: a port is 0-65535"),
        (["results", "push"], 1, "results: error: results: .asv/results is not the results worktree"),
        (
            ["report", "--machine", "nowhere", "--commit", "abc"],
            1,
            "no results for commit abc on machine 'nowhere'",
        ),
    ]:
        done = _observatory(*args, cwd=tmp_path)
        assert done.returncode == code, (args, done.stderr)
        assert text in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) <= 3, done.stderr  # argparse adds its usage lines


def test_a_first_run_joins_the_results_branch_only_where_the_clone_knows_it(origin, monkeypatch):
    """A fresh clone of a repository whose machines share results starts
    with their history (the site has lines at once); a clone without the
    branch, or one with results of its own, is left as it is."""
    lonely = clone(origin, "lonely")
    monkeypatch.chdir(lonely)
    assert machines.join_history() is None and not machines.RESULTS.exists()

    node = clone(origin, "node")
    monkeypatch.chdir(node)
    machines.checkout()
    (machines.RESULTS / "node-128c").mkdir()
    (machines.RESULTS / "node-128c" / "machine.json").write_text(json.dumps({"machine": "node-128c"}))
    assert machines.push("node-128c results")

    newcomer = clone(origin, "newcomer")  # a clone made after the branch exists knows it
    monkeypatch.chdir(newcomer)
    results = machines.join_history()
    assert results is not None and (results / "node-128c" / "machine.json").is_file()
    assert machines.join_history() is None  # results of its own now: untouched
