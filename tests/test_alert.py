"""The regression alert, tested end to end: a planted 2x slowdown in one
kernel is reported and fails the check; a commit that changes no code passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lenskern.observatory import alert

pytest.importorskip("asv")
ROOT = Path(__file__).resolve().parents[1]
BENCH = r"likelihood\.DirtyImage\.time_call"

SAMPLE = """
| Change   | Before [0123abcd]   | After [4567ef01]   |   Ratio | Benchmark (Parameter)                                          |
|----------|---------------------|--------------------|---------|----------------------------------------------------------------|
| +        | 40.1±0.5ms          | 81.3±1ms           |    2.03 | likelihood.DirtyImage.time_call('numpy.gemv', 'small')         |
| -        | 2.00±0.1ms          | 1.00±0.05ms        |    0.5  | curvature.CurvatureMatrix.time_call('numba.sparse', 'small')   |
|          | 1.00±0ms            | 1.01±0ms           |    1.01 | curvature.CurvatureMatrix.time_call('numpy.dense', 'small')    |
| !        | 3.00±0ms            | failed             |     n/a | offsets.WTildeProfile.peakmem_call('jax.scan', 'small')        |
"""  # noqa: E501


def test_parse_reads_asv_tables():
    changes = alert.parse(SAMPLE)
    assert [(c.mark, c.kernel) for c in changes] == [
        ("+", "dirty_image"), ("-", "curvature_matrix"), ("!", "w_tilde")
    ]  # fmt: skip
    assert changes[0].params == "'numpy.gemv', 'small'" and changes[0].ratio == "2.03"
    report = alert.markdown("0123abcd", "4567ef01", 1.5, 1, changes, SAMPLE)
    assert "**Regression**" in report and "| dirty_image |" in report and "| w_tilde |" in report
    assert "curvature_matrix" not in report.split("<details>")[0].split("got better")[0].split("|")[1]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A clone with three commits: base, base + a 2x slower NumPy dirty image,
    and base + a README edit. Its asv config shares this checkout's
    environments, so each commit only installs its own wheel."""
    from asv.util import load_json

    repo = tmp_path_factory.mktemp("alert") / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    git(repo, "config", "user.email", "test@example.invalid")
    git(repo, "config", "user.name", "alert test")
    base = git(repo, "rev-parse", "HEAD")
    numpy_backend = repo / "lenskern" / "backends" / "numpy.py"
    original = numpy_backend.read_text()
    loop = "    for block in _blocks(len(uv), len(grid)):\n"
    assert original.count(loop) == 1, "the planted slowdown no longer finds its loop"
    planted = original.replace(loop, "    for block in list(_blocks(len(uv), len(grid))) * 2:  # planted\n")
    planted = planted.replace(
        "        image += np.cos(phase) @ real[block] - np.sin(phase) @ imag[block]\n    return image",
        "        image += np.cos(phase) @ real[block] - np.sin(phase) @ imag[block]\n    return image / 2",
    )
    numpy_backend.write_text(planted)
    git(repo, "commit", "-qam", "plant a 2x slowdown in the NumPy dirty image")
    slower = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "unchanged", base)
    (repo / "README.md").write_text((repo / "README.md").read_text() + "\nA line.\n")
    git(repo, "commit", "-qam", "touch only the README")
    unchanged = git(repo, "rev-parse", "HEAD")
    conf = load_json(str(repo / "asv.conf.json"), js_comments=True)
    conf["env_dir"] = str(ROOT / ".asv" / "env")
    conf["branches"] = ["main", "unchanged"]
    (repo / "asv.conf.json").write_text(json.dumps(conf))
    git(repo, "commit", "-qam", "share the environments")  # on `unchanged`: asv reads the config file
    return repo, base, slower, unchanged


def run_alert(repo: Path, base: str, head: str, report: Path) -> subprocess.CompletedProcess:
    """The alert of this checkout, run on the clone's commits (through its config)."""
    env = dict(os.environ, LENSKERN_BENCH_TIERS="small")
    subprocess.run([sys.executable, "-m", "asv", "machine", "--yes", "--machine", "ci-alert"],
                   cwd=repo, env=env, check=True, capture_output=True)  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "lenskern.observatory", "compare", base, head, "--factor", "1.5",
         "--bench", BENCH, "--machine", "ci-alert", "--config", str(repo / "asv.conf.json"),
         "--report", str(report)],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip


def test_planted_regression_is_reported_and_fails(clone, tmp_path):
    repo, base, slower, _ = clone
    result = run_alert(repo, base, slower, tmp_path / "report.md")
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    report = (tmp_path / "report.md").read_text()
    print(report)
    assert "**Regression**" in report
    # asv's table shows in the log and again in the report's details
    regressed = {(c.kernel, c.params) for c in alert.parse(result.stdout) if c.mark == "+"}
    assert regressed == {("dirty_image", "'numpy.gemv', 'small'")}
    assert "| dirty_image |" in report and "numpy.gemv" in report


def test_unchanged_code_passes(clone, tmp_path):
    repo, base, _, unchanged = clone
    result = run_alert(repo, base, unchanged, tmp_path / "report.md")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "No benchmark got slower" in (tmp_path / "report.md").read_text()
