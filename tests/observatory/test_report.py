"""The report's peer rows and "lenskern's best against the best peer", on
results shaped like asv's (``{name: [values, params]}``), read by
lenskern.observatory.results."""

from __future__ import annotations

import json

from lenskern import registry
from lenskern.observatory import __main__ as observatory
from lenskern.observatory.report import peers_table, rows, table
from lenskern.observatory.results import measurements

TIERS = ["seed-1core", "science"]


def asv_results(kernel_class: str, seconds: dict[str, list[float | None]]) -> list:
    """One ``time_call`` benchmark, ``{implementation: [seconds per tier]}``,
    as asv stores it, read back by the one reader."""
    names = list(seconds)
    values = [value for name in names for value in seconds[name]]
    params = [[repr(name) for name in names], [repr(tier) for tier in TIERS]]
    return measurements({f"curvature.{kernel_class}.time_call": [values, params]})


CURVATURE = asv_results(
    "CurvatureMatrix",
    {
        "numba.tiled": [0.010, 0.50],
        "numpy.sparse": [0.030, 2.0],
        "autoarray.sparse_scipy": [0.200, 4.0],
        "autoarray.sparse_jax": [0.250, None],  # n/a at science
    },
)


def test_peers_are_declared_by_backend():
    assert registry.peer("autoarray.nufft") == "PyAutoArray"
    assert registry.peer("numexpr.fused") == "numexpr"
    # ducc0's transforms are what lenskern builds its own tables on, like FINUFFT
    assert registry.peer("ducc0.nufft") == registry.peer("numba.tiled") == ""


def test_table_marks_peer_rows_and_sets_lenskern_best_against_the_best_peer():
    found = rows({"1": CURVATURE}, "curvature_matrix", "seed-1core")
    text = table("curvature_matrix", found, ["1"], profile=False)
    assert "| autoarray.sparse_scipy (peer: PyAutoArray) | 200.000 ms (20.00) |" in text
    assert "| numba.tiled | 10.000 ms (1.00) |" in text
    assert text.endswith(
        "lenskern's best against the best peer, 1 thread: `numba.tiled` 10.000 ms against "
        "`autoarray.sparse_scipy` 200.000 ms: **20.00x** faster"
    )
    # the fastest peer, not the first one: at science only sparse_scipy has a time
    science = table("curvature_matrix", rows({"1": CURVATURE}, "curvature_matrix", "science"), ["1"], False)
    assert "`numba.tiled` 500.000 ms against `autoarray.sparse_scipy` 4.000 s: **8.00x** faster" in science


def test_a_kernel_without_peer_rows_has_no_line():
    only_ours = asv_results("CurvatureMatrix", {"numba.tiled": [0.01, 0.5], "numpy.sparse": [0.03, 2.0]})
    text = table("curvature_matrix", rows({"1": only_ours}, "curvature_matrix", "science"), ["1"], False)
    assert "peer" not in text


def test_peers_table_has_a_row_per_kernel_and_tier_with_both_sides(tmp_path):
    text = peers_table(dict.fromkeys(TIERS, {"1": CURVATURE}), "vm", "0123456789abcdef")
    lines = text.splitlines()
    assert lines[0].startswith("Measured on `vm`, commit `01234567`, one thread")
    assert lines[4:] == [
        "| `curvature_matrix` | `seed-1core` | `numba.tiled` | 10.000 ms | `autoarray.sparse_scipy` "
        "| 200.000 ms | 20.00x |",
        "| `curvature_matrix` | `science` | `numba.tiled` | 500.000 ms | `autoarray.sparse_scipy` "
        "| 4.000 s | 8.00x |",
    ]
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- peers:begin -->\nold\n<!-- peers:end -->\nafter\n")
    observatory._table_out(text, readme, "peers")
    assert readme.read_text() == f"before\n<!-- peers:begin -->\n{text}\n<!-- peers:end -->\nafter\n"


def test_the_one_reader_reads_a_result_file_as_asv_writes_it(tmp_path):
    """report, verdict and regressions all read through results.read: the
    parameters' reprs become values and asv's names, cells by result_columns."""
    from lenskern.observatory import results, verdict

    folder = tmp_path / "vm"
    folder.mkdir()
    columns = ["result", "params", "version", "stats_q_25", "stats_q_75", "samples"]
    data = {
        "env_vars": {"LENSKERN_NUM_THREADS": "1", "LENSKERN_BENCH_TIMER": "cpu"},
        "result_columns": columns,
        "results": {
            "likelihood.DirtyImage.time_call": [
                [0.010, None], [["'numpy.gemv'", "'numba.direct'"], ["'small'"]], "v1",
                [0.009, None], [0.011, None], [[0.0098, 0.0102], None],
            ],
            "counts.Instructions.track_instructions": [
                [12345], [["'fma/numpy.vector'"]], "v2", None, None, None,
            ],
        },
    }  # fmt: skip
    (folder / "0123abcd-virtualenv.json").write_text(json.dumps(data))
    (found,) = results.read(tmp_path, "vm", "0123abcdef")
    assert found.threads == "1"
    by_key = {m.key: m for m in found.measurements}
    gemv = by_key["likelihood.DirtyImage.time_call('numpy.gemv', 'small')"]
    assert gemv.params == ("numpy.gemv", "small") and gemv.value == 0.010
    assert gemv.samples == (0.0098, 0.0102) and gemv.quartiles == (0.009, 0.011)
    assert by_key["likelihood.DirtyImage.time_call('numba.direct', 'small')"].value is None
    assert by_key["counts.Instructions.track_instructions('fma/numpy.vector')"].value == 12345
    judged = verdict.read_results(tmp_path, "vm", "0123abcd")
    assert judged["likelihood.DirtyImage.time_call('numpy.gemv', 'small')"] == {
        "value": 0.010,
        "samples": [0.0098, 0.0102],
        "q": (0.009, 0.011),
    }
    assert results.read(tmp_path, "vm", "ffffffff") == []
