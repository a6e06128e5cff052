"""The seeds' tables and charts from asv results (the asv run itself is the
benchmark suite's; test_benchmarks runs one benchmark for real)."""

from __future__ import annotations

import numpy as np
import pytest

from lenskern.observatory import seeds, suite
from lenskern.observatory.results import measurements

pytest.importorskip("matplotlib")


def _results(times: dict[str, float], tier: str) -> list:
    """asv's results layout, [values, [implementations, tiers]], read back."""
    names = [f"'{n}'" for n in times]
    return measurements(
        {"curvature.CurvatureMatrix.time_call": [list(times.values()), [names, [f"'{tier}'"]]]}
    )


def test_bonus_round_table_and_chart(tmp_path):
    one = _results({"numba.sparse": 0.052, "numba.tiled": 0.011, "numpy.fft": 0.1}, "seed-1core")
    both = _results({"numba.sparse": 0.023, "numba.tiled": 0.0055, "numpy.fft": None}, "seed-1core")
    text = seeds.tables({"seed-1core": {"1": one, "all": both}}, tmp_path)
    lines = text.splitlines()
    assert lines[0] == "#### Bonus round 1 (1 core): curvature_matrix at seed-1core"
    rows = [line for line in lines if line.startswith("| numba") or line.startswith("| numpy")]
    assert rows[0].startswith("| numba.tiled | 11.000 ms (1.00) | 5.500 ms (1.00)")
    assert "| numba.sparse | 52.000 ms (4.73) | 23.000 ms (4.18)" in rows[1]
    assert "n/a" in rows[2]  # numpy.fft not timed on all threads
    png = tmp_path / "bonus-round-1--1-core---curvature-matrix-at-seed-1core.png"
    assert f"]({png.name})" in text and (tmp_path / "seeds.md").read_text().strip() == text.strip()
    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 400
    assert np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0).shape[0] > 10  # bars, not a blank canvas


def test_rounds_without_results_are_left_out(tmp_path):
    assert seeds.tables({}, tmp_path) == ""
    assert suite.time_regex({"w_tilde", "curvature_matrix"}) == (
        r"^(curvature\.CurvatureMatrix|offsets\.WTilde)\.time_call"
    )
