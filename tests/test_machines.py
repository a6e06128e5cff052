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
