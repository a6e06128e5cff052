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


def test_the_bar_counts_expected_seconds_not_asvs_benchmark_count():
    """A cheap benchmark and a dear one are one step each in asv's
    percentage; the tracker gives each its expected seconds, per thread
    setting, a long name cut to its tail by asv included."""
    expected = {("1", "offsets.WTilde.time_call"): 30.0,
                ("1", "offsets.WTildeProfile.track_max_relative_error"): 90.0,
                ("all", "offsets.WTilde.time_call"): 20.0,
                ("all", "offsets.WTildeProfile.track_max_relative_error"): 0.5}  # fmt: skip
    tracker = progress.Tracker(expected)
    lines = ["[ 0.00%] ·· Benchmarking virtualenv-py3.11-LENSKERN_NUM_THREADS1",
             "[ 0.74%] ··· Setting up common:483                                 ok",
             "[25.00%] ··· offsets.WTilde.time_call                              ok",
             "[25.00%] ··· ================ =============",
             "[50.00%] ··· ...WTildeProfile.track_max_relative_error             ok",
             "[50.00%] ·· Benchmarking virtualenv-py3.11-LENSKERN_NUM_THREADSall",
             "[75.00%] ··· offsets.WTilde.time_call                              failed",
             "[100.00%] ··· ...WTildeProfile.track_max_relative_error            n/a"]  # fmt: skip
    assert [tracker.advance(line) for line in lines] == [0.0, 0.0, 30.0, 0.0, 90.0, 0.0, 20.0, 0.5]
    assert tracker.total == 140.5


def test_with_expected_seconds_the_bar_ends_full_and_never_overshoots(tmp_path, capsys):
    script = FAKE_ASV.replace("sys.exit(2)", "sys.exit(0)")
    expected = {("unpinned", "offsets.WTilde.time_call"): 3.0,
                ("unpinned", "curvature.CurvatureMatrix.time_call"): 1.0}  # fmt: skip
    code = progress.run_with_bars([sys.executable, "-c", script], tmp_path / "log", ("set-up", "benchmarks"),
                                  expected)  # fmt: skip
    assert code == 0
    shown = capsys.readouterr().err.replace("\r", "\n")
    assert "benchmarks: 100%" in shown
