"""The main job's progress: asv's lines drive the bars, all go to the log,
failures are shown as they come, and asv's exit status is kept."""

from __future__ import annotations

import sys

from lenskern.observatory import progress

FAKE_ASV = r"""
import sys
print("· Creating environments")
print("·· Installing lenskern")
print("[ 0.00%] · For lenskern commit 0123abcd <main>:")
print("[50.00%] ··· offsets.WTilde.time_call   ok")
print("[60.00%] ··· offsets.WTildeProfile.track_max_relative_error   ok")
print("[75.00%] ··· curvature.CurvatureMatrix.time_call   failed")
print("ValueError: curvature_matrix: bad input")
print("[100.00%] ··· done")
sys.exit(2)
"""


def test_asv_lines_drive_the_bars_and_failures_are_shown(tmp_path, capsys):
    log = tmp_path / "run.log"
    code = progress.run_with_bars([sys.executable, "-c", FAKE_ASV], log, ("set-up", "benchmarks"))
    assert code == 2
    assert log.read_text().splitlines()[0] == "· Creating environments"
    assert len(log.read_text().splitlines()) == 8
    shown = capsys.readouterr().err
    assert "curvature.CurvatureMatrix.time_call   failed" in shown
    assert "ValueError: curvature_matrix: bad input" in shown
    assert "track_max_relative_error" not in shown.replace("\r", "\n").split("benchmarks:")[0]
    assert "benchmarks:" in shown and "set-up:" in shown
