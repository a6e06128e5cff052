"""A store is a trustworthy container: what a writer did not finish, a
chunk that went missing or was cut short, a dtype or length edited, a store
of another geometry, or another store's partial sums are refused with an
error that names them, in-process and on Dask alike; never read as zeros or
summed into a wrong answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import lenskern as lk
from lenskern import store as store_module
from lenskern import stream, uvfits
from lenskern.store import VisibilityStore

pytest.importorskip("zarr")

SIZES = dict(shape_native=(6, 7), K=300, S=12, B=3, P=4)
PROBLEM = lk.make_problem(SIZES, seed=3)


@pytest.fixture
def written(tmp_path) -> VisibilityStore:
    """A complete store of six chunks of 50."""
    return store_module.write_problem(tmp_path / "s.zarr", PROBLEM, chunk=50)


def _sum(store, **options):
    return stream.accumulate(
        store.path if isinstance(store, VisibilityStore) else store, **PROBLEM, **options
    )


def _zarr_json(store: VisibilityStore, array: str) -> Path:
    return Path(store.path) / "0" / array / "zarr.json"


def test_a_finished_store_is_complete_and_sums_as_before(written):
    assert written.complete and len(written.identity) == 16
    assert written.geometry == {"shape_native": [6, 7], "pixel_scale": PROBLEM["pixel_scale"]}
    assert _sum(written).visibilities == 300


def test_a_missing_chunk_is_named_not_read_as_zeros(written):
    (Path(written.path) / "0" / "visibilities" / "c" / "3").unlink()
    with pytest.raises(
        ValueError, match=r"^store: channel '0' visibilities chunk 3 \(visibilities 150:200\) is missing"
    ):
        _sum(written)
    (Path(written.path) / "0" / "uv" / "c" / "0" / "0").unlink()
    with pytest.raises(ValueError, match=r"uv chunk 0/0 \(visibilities 0:50\) is missing"):
        lk.Likelihood.from_store(written.path, **PROBLEM)


def test_a_truncated_chunk_is_named(written):
    chunk = Path(written.path) / "0" / "noise" / "c" / "2"
    chunk.write_bytes(chunk.read_bytes()[:100])
    with pytest.raises(
        ValueError, match=r"noise chunk 2 \(visibilities 100:150\) has 100 bytes, 400 were written"
    ):
        _sum(written)


def test_a_chunk_that_cannot_be_decoded_is_a_chunk_error_with_the_sums_kept(tmp_path):
    """Compressed chunks of the right size but garbage content pass the
    manifest; reading them fails, in the reader thread: a ChunkError naming
    the chunk, like bad values, not a bare ValueError from Zarr."""
    from zarr.codecs import BloscCodec

    store = store_module.write_problem(tmp_path / "c.zarr", PROBLEM, chunk=50, compressors=BloscCodec())
    chunk = Path(store.path) / "0" / "noise" / "c" / "4"
    chunk.write_bytes(b"\x00" * chunk.stat().st_size)
    with pytest.raises(
        stream.ChunkError, match=r"channel '0' chunk 4 \(visibilities 200:250\): cannot be read"
    ) as caught:
        _sum(store)
    assert caught.value.partial.visibilities == 200


def test_an_edited_dtype_or_length_is_refused(written):
    meta = json.loads(_zarr_json(written, "noise").read_text())
    meta["data_type"] = "int64"
    _zarr_json(written, "noise").write_text(json.dumps(meta))
    with pytest.raises(
        ValueError, match=r"^store: channel '0' noise is int64 \(300,\), the layout says float64 \(K\)"
    ):
        _sum(written)
    meta["data_type"], meta["shape"] = "float64", [200]
    _zarr_json(written, "noise").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"uv, noise and visibilities differ in length \(300, 200, 300\)"):
        _sum(written)


def test_an_unfinished_store_is_refused_until_finished(tmp_path):
    store = VisibilityStore.create(tmp_path / "u.zarr", chunk=100)
    store.append("0", PROBLEM["uv"], PROBLEM["noise"], PROBLEM["visibilities"])
    with pytest.raises(ValueError, match=r"^store: .* is incomplete: its writer did not finish"):
        _sum(store)
    store.finish(PROBLEM["shape_native"], PROBLEM["pixel_scale"])
    assert _sum(store).visibilities == 300
    store.append("0", PROBLEM["uv"][:5], PROBLEM["noise"][:5], PROBLEM["visibilities"][:5])  # a later write
    assert not VisibilityStore.open(store.path).complete


def test_a_writer_killed_mid_store_leaves_a_store_that_is_refused(tmp_path):
    """The writer dies between growing the arrays and writing them (the
    state that used to read as zeros), killed outright."""
    path = tmp_path / "killed.zarr"
    code = f"""
        import os, signal
        import lenskern as lk
        from lenskern.store import VisibilityStore
        problem = lk.make_problem({SIZES!r}, seed=3)
        store = VisibilityStore.create({str(path)!r}, chunk=50)
        store.append("0", problem["uv"][:100], problem["noise"][:100], problem["visibilities"][:100])
        group = store._channel("0")
        for name in ("uv", "noise", "visibilities"):
            group[name].resize((300, *group[name].shape[1:]))
        os.kill(os.getpid(), signal.SIGKILL)
    """
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    with pytest.raises(ValueError, match="is incomplete"):
        _sum(path)


def test_a_store_of_another_geometry_is_refused(written):
    other = lk.make_problem(dict(SIZES, shape_native=(5, 5)), seed=3)
    with pytest.raises(
        ValueError, match=r"^shape_native: the store was written for the geometry shape_native \(6, 7\)"
    ):
        stream.accumulate(written.path, **other)


def test_another_stores_partial_sums_are_refused(tmp_path):
    first = store_module.write_problem(tmp_path / "a.zarr", PROBLEM, chunk=50)
    second = store_module.write_problem(tmp_path / "b.zarr", PROBLEM, chunk=50)
    assert first.identity != second.identity  # the same data, two stores
    with pytest.raises(ValueError, match=r"^start: partial sums of another store"):
        _sum(second, start=_sum(first))
    with pytest.raises(TypeError, match=r"^start: expected the partial sums of a ChunkError"):
        _sum(first, start="garbage")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(eps=1.0), r"^eps: the NUFFT's relative accuracy must be in \(0, 1e-07\]"),
        (dict(eps=0.0), r"^eps: "),
        (dict(nthreads=-1), r"^nthreads: must be an integer >= 0"),
        (dict(chunk="10"), r"^chunk: expected an integer"),
    ],
)
def test_stream_options_are_checked(written, options, message):
    with pytest.raises((ValueError, TypeError), match=message):
        _sum(written, **options)


def test_a_dask_cluster_refuses_a_damaged_store_too(written):
    distributed = pytest.importorskip("dask.distributed")
    from lenskern import cluster

    (Path(written.path) / "0" / "noise" / "c" / "5").unlink()
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as lc:
        with distributed.Client(lc) as client:
            with pytest.raises(ValueError, match=r"noise chunk 5 \(visibilities 250:300\) is missing"):
                cluster.accumulate(written.path, client=client, **PROBLEM)


# --------------------------------------------------------- the writers


def test_a_store_is_not_overwritten_unless_asked(written):
    with pytest.raises(ValueError, match=r"^store: .* already exists; pass overwrite=True"):
        store_module.write_problem(written.path, PROBLEM, chunk=50)
    assert _sum(written).visibilities == 300  # the refused writer left it alone
    again = store_module.write_problem(written.path, PROBLEM, chunk=100, overwrite=True)
    assert again.chunk == 100 and again.identity != written.identity


def test_a_failed_writer_removes_what_it_started(tmp_path):
    pytest.importorskip("pyuvdata")
    import warnings

    filename = tmp_path / "p.uvfits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the placeholder antennas do not match the problem's uvw
        uvfits.write_uvfits(lk.make_problem(dict(SIZES, K=40), seed=5), filename)
        with pytest.raises(ValueError, match=r"^polarization: 'xx' is not in the file's \['pI'\]"):
            uvfits.read_uvfits(filename, tmp_path / "p.zarr", polarization="xx")
    assert not (tmp_path / "p.zarr").exists()
    with pytest.raises(ValueError, match=r"^rows_per_read: must be an integer >= 1, got 0"):
        uvfits.read_uvfits(filename, tmp_path / "p.zarr", rows_per_read=0)
    truncated = tmp_path / "cut.uvfits"
    truncated.write_bytes(filename.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"^filename: .*cut\.uvfits is not a readable UVFITS file"):
        uvfits.read_uvfits(truncated, tmp_path / "q.zarr")
    assert not (tmp_path / "q.zarr").exists()


# --------------------------------------------------------- the command line


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, LENSKERN_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "lenskern", *args], capture_output=True, text=True, cwd=cwd, env=env
    )


def test_the_command_line_says_one_line_and_exits_non_zero_on_bad_input(tmp_path):
    path = str(tmp_path / "cli.zarr")
    for args, code, line in [
        (
            ["store", path, "-K", "lots"],
            2,
            "argument --visibilities/-K: expected a number such as 2e8, got 'lots'",
        ),
        (["store", path, "--grid", "huge"], 2, "argument --grid: invalid choice: 'huge'"),
        (["stream", str(tmp_path / "none.zarr"), "--grid", "tiny"], 1, "error: store: no store at"),
    ]:
        done = _cli(*args, cwd=tmp_path)
        assert done.returncode == code, done.stderr
        assert line in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not Path(path).exists()  # a refused store command leaves nothing behind to block the rerun
    assert _cli("store", path, "-K", "600", "--grid", "tiny", "--chunk", "100", cwd=tmp_path).returncode == 0
    again = _cli("store", path, "-K", "600", "--grid", "tiny", cwd=tmp_path)
    assert (
        again.returncode == 1
        and "already exists; pass overwrite=True (lenskern store --overwrite)" in again.stderr
    )
    done = _cli("stream", path, "--grid", "small", "--no-progress", cwd=tmp_path)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "shape_native: the store was written for the geometry shape_native (6, 7)" in done.stderr
    (Path(path) / "0" / "visibilities" / "c" / "3").unlink()
    done = _cli("stream", path, "--grid", "tiny", "--no-progress", cwd=tmp_path)
    assert done.returncode == 1 and "visibilities chunk 3 (visibilities 300:400) is missing" in done.stderr
    assert _cli("store", path, "-K", "600", "--grid", "tiny", "--overwrite", cwd=tmp_path).returncode == 0
