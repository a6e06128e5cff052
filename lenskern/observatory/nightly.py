"""Which commits of the main branch the nightly job benchmarks tonight.

``asv run NEW`` benchmarks every commit after the newest one with results;
on a machine with none that is the whole history (100 commits when this was
written), far past the job's time limit. Here, instead:

- a machine with no results is seeded with the branch's tip alone;
- after that, the pending commits are those of the branch (first parent)
  since the oldest benchmarked one that have no results on this machine;
  tonight takes at most ``cap`` of them, newest first, so the tip is always
  current, and the rest stay pending for the nights after (their results
  fill the graphs' gaps as they come).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

#: Commits benchmarked per night: the whole suite at one commit took about
#: 28 minutes of a 2-core machine (the main job, issue 22), and the nightly
#: job's limit is 300 minutes, with building, publishing and pushing.
CAP = 5


def benchmarked(results_dir: Path, machine: str) -> set[str]:
    """The 8-character prefixes of the commits with results on ``machine``
    (asv names its result files ``<commit[:8]>-<environment>.json``)."""
    folder = results_dir / machine
    if not folder.is_dir():
        return set()
    return {p.name.split("-", 1)[0] for p in folder.glob("*-*.json")}


def branch_commits(branch: str, repo: str = ".") -> list[str]:
    """The branch's first-parent commits, newest first."""
    done = subprocess.run(["git", "-C", repo, "rev-list", "--first-parent", branch], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return done.stdout.split()


def plan(commits: list[str], done: set[str], cap: int = CAP) -> tuple[list[str], list[str]]:
    """(tonight's commits, the ones left pending), newest first, from the
    branch's ``commits`` (newest first) and the prefixes already ``done``."""
    if cap < 1:
        raise ValueError(f"cap: expected at least 1 commit per night, got {cap}")
    if not commits:
        return [], []
    seen = [i for i, commit in enumerate(commits) if commit[:8] in done]
    if not seen:
        return commits[:1], []  # seed: the tip alone
    pending = [commit for commit in commits[: seen[-1]] if commit[:8] not in done]
    return pending[:cap], pending[cap:]
