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


def _result(path: Path, durations: list, others: dict, mtime: float, threads: str = "1") -> None:
    columns = ["result", "params", "version", "started_at", "duration"]
    rows = {f"area.Class.m{i}": [1.0, [], "v", 0, value] for i, value in enumerate(durations)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"result_columns": columns, "results": rows, "durations": others,
                                "env_vars": {"LENSKERN_NUM_THREADS": threads}}))  # fmt: skip
    os.utime(path, (mtime, mtime))


def _suite(tmp_path: Path) -> Path:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "__init__.py").write_text("")
    (suite / "one.py").write_text(
        "class Class:\n    params = [[1, 2, 3], ['a', 'b']]\n    param_names = ['n', 's']\n"
        "    def time_m0(self, n, s): pass\n    def time_m1(self, n, s): pass\n"
        "class ClassProfile:\n    def track_it(self): return 1\n"
    )
    return suite


def test_the_last_run_on_this_machine_gives_each_benchmark_its_duration(tmp_path):
    machine = tmp_path / "laptop"
    _result(machine / "aaaaaaaa-env1.json", [100.0], {"<build>": 50.0}, mtime=1)
    _result(machine / "bbbbbbbb-env1.json", [10.0, 20.5, None], {"<build>": 30.0}, mtime=2)
    _result(machine / "bbbbbbbb-env2.json", [5.0], {"<setup_cache common:1>": 4.5}, mtime=2, threads="all")
    last = estimate.last_run(tmp_path, "laptop")
    assert last.commit == "bbbbbbbb" and last.other_seconds == 34.5
    assert last.benchmarks == {("1", "area.Class.m0"): 10.0, ("1", "area.Class.m1"): 20.5,
                               ("1", "area.Class.m2"): 0.0, ("all", "area.Class.m0"): 5.0}  # fmt: skip
    assert estimate.last_run(tmp_path, "desktop") is None


def test_without_results_the_suite_is_counted_process_by_process(tmp_path):
    suite = _suite(tmp_path)
    processes = estimate.benchmark_processes(suite)
    assert processes == {"one.Class.time_m0": 6, "one.Class.time_m1": 6, "one.ClassProfile.track_it": 1}
    seconds, how, expected = estimate.main_job(tmp_path / "none", "laptop", suite, ["1", "all"], built=False)
    # the profile class skips off one thread: nearly free there
    assert expected[("all", "one.ClassProfile.track_it")] == estimate.SKIPPED_PROCESS_SECONDS
    assert expected[("all", "one.Class.time_m0")] == 6 * estimate.PROCESS_SECONDS
    assert seconds == pytest.approx(sum(expected.values()) + estimate.BUILD_SECONDS)
    assert "25 benchmark processes" in how and "1 that skip" in how and "building" in how


def test_a_benchmark_the_last_run_lacks_is_estimated_by_its_processes(tmp_path):
    suite = _suite(tmp_path)
    results = tmp_path / "results"
    (results / "laptop").mkdir(parents=True)
    columns = ["result", "params", "version", "started_at", "duration"]
    (results / "laptop" / "cccccccc-env1.json").write_text(json.dumps({
        "result_columns": columns, "env_vars": {"LENSKERN_NUM_THREADS": "1"}, "durations": {"<build>": 20.0},
        "results": {"one.Class.time_m0": [1.0, [], "v", 0, 42.0]}}))  # fmt: skip
    seconds, how, expected = estimate.main_job(results, "laptop", suite, ["1"], built=True)
    each = estimate.PROCESS_SECONDS
    assert expected == {("1", "one.Class.time_m0"): 42.0, ("1", "one.Class.time_m1"): 6 * each,
                        ("1", "one.ClassProfile.track_it"): each}  # fmt: skip
    assert seconds == pytest.approx(sum(expected.values()) + 20.0) and "cccccccc" in how


def test_the_projects_config_has_one_environment_per_thread_setting():
    from asv.util import load_json

    assert estimate.thread_settings(load_json(str(ROOT / "asv.conf.json"), js_comments=True)) == ["1", "all"]
    assert estimate.thread_settings({}) == ["unpinned"]


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
    assert estimate.benchmark_processes(suite) == {"counts.track_instructions": 1, "offsets.time_call": 1}
    assert estimate.benchmark_processes(suite, WITHOUT_COUNTS) == {"offsets.time_call": 1}


def test_a_regex_on_parameters_counts_the_combinations_it_finds(tmp_path):
    """asv's ``-b`` finds a parameterised benchmark's combinations by their
    names, ``one.Class.time_m0(1, 'a')``: the tier regex of the main job
    runs one tier of each, and the estimate counts the same."""
    suite = _suite(tmp_path)
    assert estimate.benchmark_processes(suite, r"'a'\)$") == {"one.Class.time_m0": 3, "one.Class.time_m1": 3}
    assert estimate.benchmark_processes(suite, r"\(2, 'b'\)|Profile") == {
        "one.Class.time_m0": 1, "one.Class.time_m1": 1, "one.ClassProfile.track_it": 1}  # fmt: skip
