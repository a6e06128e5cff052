"""The main job's duration said before it starts: from the last run's
durations where there is one, else from the suite's processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lenskern.observatory import estimate

pytest.importorskip("asv_runner")
ROOT = Path(__file__).resolve().parents[2]


def _result(path: Path, durations: list, others: dict, mtime: float) -> None:
    columns = ["result", "params", "version", "started_at", "duration"]
    rows = {f"area.Class.m{i}": [1.0, [], "v", 0, value] for i, value in enumerate(durations)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"result_columns": columns, "results": rows, "durations": others}))
    os.utime(path, (mtime, mtime))


def test_the_last_run_on_this_machine_is_summed_over_its_environments(tmp_path):
    machine = tmp_path / "laptop"
    _result(machine / "aaaaaaaa-env1.json", [100.0], {"<build>": 50.0}, mtime=1)
    _result(machine / "bbbbbbbb-env1.json", [10.0, 20.5, None], {"<build>": 30.0}, mtime=2)
    _result(machine / "bbbbbbbb-env2.json", [5.0], {"<setup_cache common:1>": 4.5}, mtime=2)
    assert estimate.last_run_seconds(tmp_path, "laptop") == (70.0, "bbbbbbbb")
    assert estimate.last_run_seconds(tmp_path, "desktop") is None
    seconds, how = estimate.main_job_seconds(tmp_path, "laptop", ROOT / "benchmarks", 2, built=True)
    assert seconds == 70.0 and "bbbbbbbb" in how


def test_without_results_the_suite_is_counted_process_by_process(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "__init__.py").write_text("")
    (suite / "one.py").write_text(
        "class Grid:\n    params = [[1, 2, 3], ['a', 'b']]\n    param_names = ['n', 's']\n"
        "    def time_it(self, n, s): pass\n    def peakmem_it(self, n, s): pass\n"
        "def time_plain(): pass\n"
    )
    assert estimate.planned_processes(suite, environments=2) == (6 + 6 + 1) * 2
    seconds, how = estimate.main_job_seconds(tmp_path / "none", "laptop", suite, 2, built=False)
    assert seconds == pytest.approx(26 * estimate.PROCESS_SECONDS + estimate.BUILD_SECONDS)
    assert "26 benchmark processes" in how and "building" in how


def test_the_projects_config_has_one_environment_per_thread_setting():
    from asv.util import load_json

    assert estimate.environments(load_json(str(ROOT / "asv.conf.json"), js_comments=True)) == 2
    assert estimate.environments({}) == 1


def test_the_main_job_leaves_out_the_counts_and_only_them(tmp_path):
    """``run`` passes asv ``-b WITHOUT_COUNTS`` unless ``--counts``: the
    estimate counts the same selection."""
    import re

    from lenskern.observatory.__main__ import WITHOUT_COUNTS

    assert not re.search(WITHOUT_COUNTS, "counts.Instructions.track_instructions")
    for kept in ("offsets.WTilde.time_call", "stream.DataParts.time_call", "device.Device.time_kernel"):
        assert re.search(WITHOUT_COUNTS, kept), kept
    suite = tmp_path / "areas"
    suite.mkdir()
    (suite / "__init__.py").write_text("")
    (suite / "counts.py").write_text("def track_instructions(): return 1\n")
    (suite / "offsets.py").write_text("def time_call(): pass\n")
    assert estimate.planned_processes(suite, 2) == 4
    assert estimate.planned_processes(suite, 2, WITHOUT_COUNTS) == 2
