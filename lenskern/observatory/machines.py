"""Every machine's results in one place: the ``asv-results`` branch.

The nightly job, the GPU runner and a many-core node each benchmark on their
own machine and keep their results on one branch, ``asv-results``, each in
the folder asv names after the machine (``<machine>/``). The nightly job
publishes the site from that branch, so the site offers every machine side
by side. The workflows call :func:`checkout` before benchmarking and
:func:`push` after; :func:`record` names the machine for asv with what asv
itself does not record: the GPU model.

A machine has one name, which every command uses (:func:`default_name`):
``--machine NAME`` where given, else ``$LENSKERN_MACHINE``, else the host
name, asv's own default. A new machine joins by running, on it, with the
repository checked out::

    export LENSKERN_MACHINE=NAME                # or --machine NAME on each command
    lenskern-observatory machine                # once: asv's record, with the GPU
    lenskern-observatory results checkout       # .asv/results <- the branch
    lenskern-observatory run                    # benchmarks HEAD
    lenskern-observatory results push           # the branch <- .asv/results

(or through a self-hosted runner with its own label, as ``gpu.yml`` and
``node.yml`` do).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

BRANCH = "asv-results"
RESULTS = Path(".asv/results")
#: Names this machine for every command that takes ``--machine``.
VARIABLE = "LENSKERN_MACHINE"


def default_name() -> str:
    """This machine's name where no ``--machine`` is given: ``$LENSKERN_MACHINE``,
    else the host name (what ``asv machine --yes`` picks itself)."""
    return os.environ.get(VARIABLE, "").strip() or platform.node() or "this-machine"


def _git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def gpu_model() -> str | None:
    """The GPU's model name from the driver (nvidia-smi), or None."""
    if shutil.which("nvidia-smi") is None:
        return None
    query = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                           capture_output=True, text=True)  # fmt: skip
    names = sorted({line.strip() for line in query.stdout.splitlines() if line.strip()})
    if query.returncode != 0 or not names:
        return None
    count = len(query.stdout.strip().splitlines())
    return f"{count} x {', '.join(names)}"


def record(machine: str, gpu: str | None = None) -> dict:
    """asv's record of this machine (``asv machine``) plus its GPU model,
    which asv copies into every result folder of the machine."""
    # asv prints its whole questionnaire with --yes: kept out of the log unless it fails
    done = subprocess.run([sys.executable, "-m", "asv", "machine", "--yes", "--machine", machine],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"asv machine failed: {(done.stderr or done.stdout).strip()[-2000:]}")
    path = Path.home() / ".asv-machine.json"
    records = json.loads(path.read_text())
    records[machine]["gpu"] = gpu or gpu_model() or "none"
    path.write_text(json.dumps(records, indent=4))
    return records[machine]


def checkout(remote: str = "origin") -> Path:
    """``.asv/results`` as a worktree of the results branch (a new orphan
    branch the first time), so a run adds to every machine's history."""
    if (RESULTS / ".git").exists():
        return RESULTS
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if _git("fetch", remote, BRANCH, check=False).returncode == 0:
        _git("worktree", "add", "-B", BRANCH, str(RESULTS), "FETCH_HEAD")
    else:
        _git("worktree", "add", "--detach", str(RESULTS))
        _git("checkout", "--orphan", BRANCH, cwd=RESULTS)
        _git("rm", "-rfq", ".", cwd=RESULTS, check=False)
    return RESULTS


def join_history(remote: str = "origin") -> Path | None:
    """:func:`checkout`, from the clone's own copy of the remote's results
    branch, where it has one and no results of its own yet, so a first run's site shows every
    machine's history beside it; None (nothing touched) otherwise."""
    if RESULTS.exists():
        return None
    ref = f"refs/remotes/{remote}/{BRANCH}"
    if _git("rev-parse", "--verify", "--quiet", ref, check=False).returncode != 0:
        return None
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    # the branch as the clone knows it: no network needed (push fetches first)
    _git("worktree", "add", "-B", BRANCH, str(RESULTS), ref)
    return RESULTS


#: The one file every machine writes: asv's list of benchmarks, a JSON
#: object keyed by benchmark name (plus "version"). Machines whose suites
#: differ (a GPU runner lists device benchmarks a CPU node lacks) change it
#: at once, so it is merged by union, never left with conflict markers.
SHARED = "benchmarks.json"
_AUTHOR = ("-c", "user.name=lenskern benchmarks", "-c", "user.email=actions@users.noreply.github.com")


def _rebasing() -> bool:
    """Whether a rebase is stopped in the results worktree (an earlier push that failed)."""
    for name in ("rebase-merge", "rebase-apply"):
        path = _git("rev-parse", "--git-path", name, cwd=RESULTS).stdout.strip()
        if (RESULTS / path).exists() or Path(path).exists():
            return True
    return False


def _union_benchmarks() -> None:
    """Resolve a conflict in benchmarks.json by the union of both sides
    (the branch's and this machine's), this machine's entry winning where
    both list a benchmark."""
    theirs = json.loads(_git("show", f":2:{SHARED}", cwd=RESULTS).stdout)  # the branch, rebased onto
    ours = json.loads(_git("show", f":3:{SHARED}", cwd=RESULTS).stdout)  # this machine's commit
    merged = {**theirs, **ours}
    (RESULTS / SHARED).write_text(json.dumps(merged, indent=4, sort_keys=True) + "\n")
    _git("add", SHARED, cwd=RESULTS)


def _rebase_onto(remote: str) -> None:
    """Rebase this machine's results commit onto the branch as pushed,
    benchmarks.json merged by union; any other conflict aborts the rebase
    (the worktree is left as before) and raises."""
    _git("fetch", remote, BRANCH, cwd=RESULTS)
    if _git(*_AUTHOR, "rebase", "FETCH_HEAD", cwd=RESULTS, check=False).returncode == 0:
        return
    while True:
        conflicted = set(_git("diff", "--name-only", "--diff-filter=U", cwd=RESULTS).stdout.split())
        if conflicted - {SHARED}:
            _git("rebase", "--abort", cwd=RESULTS, check=False)
            raise RuntimeError(
                f"results push: {', '.join(sorted(conflicted - {SHARED}))} changed on {BRANCH} and here; "
                "each machine writes only its own folder, so another machine wrote this one's "
                "(two machines with one name?)"
            )
        if conflicted:
            _union_benchmarks()
        step = _git(*_AUTHOR, "-c", "core.editor=true", "rebase", "--continue", cwd=RESULTS, check=False)
        if step.returncode == 0:
            return
        if not _git("diff", "--name-only", "--diff-filter=U", cwd=RESULTS).stdout.strip():
            _git("rebase", "--abort", cwd=RESULTS, check=False)
            raise RuntimeError(f"results push: the rebase onto {BRANCH} stopped: {step.stderr.strip()}")


def push(message: str, remote: str = "origin", tries: int = 5) -> bool:
    """Commit the results worktree and push it to the results branch.

    Machines push at their own times; each writes only its own folder, so a
    push that lost a race is rebased onto the other machines' results and
    tried again, asv's shared benchmarks.json merged by union. A rebase an
    earlier push left stopped is aborted first, so no conflict marker is
    ever committed. Returns False when there was nothing to commit."""
    if not (RESULTS / ".git").exists():
        raise ValueError(f"results: {RESULTS} is not the results worktree; run `results checkout` first")
    if _rebasing():
        _git("rebase", "--abort", cwd=RESULTS, check=False)
    _git("add", "-A", ".", cwd=RESULTS)
    if _git(*_AUTHOR, "commit", "-m", message, cwd=RESULTS, check=False).returncode != 0:
        if _git("status", "--porcelain", cwd=RESULTS).stdout.strip():
            raise RuntimeError(f"results push: could not commit in {RESULTS}")
        # nothing new to commit: push only what an earlier, failed push left
        if _git("rev-parse", "--verify", "-q", "HEAD", cwd=RESULTS, check=False).returncode != 0:
            return False
        if _git("fetch", remote, BRANCH, cwd=RESULTS, check=False).returncode == 0:
            ahead = _git("rev-list", "--count", "FETCH_HEAD..HEAD", cwd=RESULTS).stdout.strip()
            if ahead == "0":
                return False
    for _ in range(tries):
        if _git("push", remote, f"HEAD:refs/heads/{BRANCH}", cwd=RESULTS, check=False).returncode == 0:
            return True
        _rebase_onto(remote)
    raise RuntimeError(f"could not push to {BRANCH} after {tries} tries")
