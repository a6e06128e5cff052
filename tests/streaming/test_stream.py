"""Visibilities streamed from a chunked store (lenskern.store, lenskern.stream,
lenskern.cluster): the store round-trips, the sums over chunks equal the
in-memory Likelihood's to the NUFFT's accuracy at every chunk size, channels
add, bad chunks are named and lose nothing, and a Dask cluster agrees."""

from __future__ import annotations

import io
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lenskern as lk
from conftest import assert_agrees, evidence_carried_error, problems, reference_impl, with_intermediates
from lenskern import conventions, stream, uvfits
from lenskern import problems as problems_module
from lenskern import store as store_module
from lenskern.store import VisibilityStore

pytest.importorskip("zarr")

SIZES = dict(shape_native=(6, 7), K=300, S=12, B=3, P=4)


def assert_same_parts(like: lk.Likelihood, expected: lk.Likelihood) -> None:
    """Data parts equal to the NUFFT's accuracy (tables, image) or to rounding (sums)."""
    assert_agrees("w_offsets", like.w_offsets, expected.w_offsets)
    assert_agrees("dirty_image", like.dirty_image, expected.dirty_image)
    assert like.chi2_data == pytest.approx(expected.chi2_data, rel=1e-12)
    assert like.noise_normalization == pytest.approx(expected.noise_normalization, rel=1e-12, abs=1e-12)


def split_store(path, problem: dict, cuts: list[int], chunk: int) -> VisibilityStore:
    """``problem``'s visibilities as channels cut at ``cuts``, appended a few at a time."""
    store = VisibilityStore.create(path, chunk=chunk)
    bounds = [0, *cuts, len(problem["noise"])]
    for channel, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        store.add_channel(f"ch{channel}", frequency=1e9 * (channel + 1))
        for first in range(start, stop, 3):
            part = slice(first, min(first + 3, stop))
            store.append(
                f"ch{channel}", problem["uv"][part], problem["noise"][part], problem["visibilities"][part]
            )
    store.finish()
    return store


@given(problem=problems(), data=st.data())
def test_store_round_trips_exactly(problem, data):
    k_count = len(problem["noise"])
    chunk = data.draw(st.integers(1, k_count + 2), label="chunk")
    with tempfile.TemporaryDirectory() as folder:
        store = store_module.write_problem(Path(folder) / "s.zarr", problem, chunk=chunk)
        got = VisibilityStore.open(store.path).read_all()
        for name in ("uv", "noise", "visibilities"):
            assert got[name].dtype == problem[name].dtype
            np.testing.assert_array_equal(got[name], problem[name])
        blocks = store.blocks()
        assert [len(b) for b in blocks] == [min(chunk, k_count - s) for s in range(0, k_count, chunk)]


def test_a_compressed_store_round_trips_and_grows(tmp_path):
    from zarr.codecs import BloscCodec

    problem = lk.make_problem(SIZES, seed=1)
    blosc = BloscCodec(cname="lz4", shuffle="shuffle")
    store = store_module.write_problem(tmp_path / "c.zarr", problem, chunk=64, compressors=blosc)
    more = VisibilityStore.open(store.path, mode="r+", compressors=blosc)
    more.append("1", problem["uv"][:10], problem["noise"][:10], problem["visibilities"][:10])
    got = VisibilityStore.open(store.path)
    assert got.channels == ["0", "1"] and got.size() == 310 and got.size("1") == 10
    for name in ("uv", "noise", "visibilities"):
        np.testing.assert_array_equal(
            got.read_all()[name], np.concatenate([problem[name], problem[name][:10]])
        )
    with pytest.raises(ValueError, match="already exists"):
        more.add_channel("1")
    with pytest.raises(ValueError, match="uv: expected shape"):
        more.append("1", problem["uv"][:, :1], problem["noise"], problem["visibilities"])


@given(problem=problems(), data=st.data())
def test_streamed_likelihood_equals_in_memory_at_every_chunk_size(problem, data):
    """Chunk sizes from one visibility up, and store chunks that the read
    chunks do not align with; channels cut anywhere."""
    k_count = len(problem["noise"])
    stored = data.draw(st.integers(1, k_count + 1), label="store chunk")
    read = data.draw(st.one_of(st.just(1), st.integers(1, k_count + 2)), label="read chunk")
    cuts = (
        sorted(data.draw(st.sets(st.integers(1, k_count - 1), max_size=2), label="cuts"))
        if k_count > 1
        else []
    )
    library = data.draw(st.sampled_from(conventions.NUFFT_LIBRARIES), label="library")
    expected = lk.Likelihood(**problem)
    with tempfile.TemporaryDirectory() as folder:
        store = split_store(Path(folder) / "s.zarr", problem, cuts, stored)
        like = lk.Likelihood.from_store(store, chunk=read, progress=False, library=library, **problem)
    assert_same_parts(like, expected)
    inputs = with_intermediates(problem)
    expected_evidence = reference_impl("log_evidence")(**inputs)
    carried = evidence_carried_error(inputs, like)
    assert_agrees("log_evidence", like.log_evidence(**problem), expected_evidence, inputs, carried)


@pytest.mark.parametrize("library", conventions.NUFFT_LIBRARIES)
def test_ill_conditioned_evidence_is_held_to_the_tables_accuracy(tmp_path, library):
    """One visibility and no neighbours: F + H's smallest eigenvalue is the
    1e-8 ridge, so the table's 1e-13 error moves the evidence by ~1e-5, which
    the tolerance must carry (a draw of the property test above)."""
    problem = lk.make_problem(
        dict(shape_native=(1, 3), K=1, S=4, B=1, P=0, mask="circular", uv="tracks"), seed=0
    )
    store = split_store(tmp_path / "s.zarr", problem, [], 1)
    like = lk.Likelihood.from_store(store, chunk=1, progress=False, library=library, **problem)
    inputs = with_intermediates(problem)
    assert np.linalg.cond(inputs["curvature_matrix"] + inputs["regularization_matrix"]) > 1e7
    carried = evidence_carried_error(inputs, like)
    assert carried < 1e-3  # first order in an error of ~1e-13: small, not a blank cheque
    expected = reference_impl("log_evidence")(**inputs)
    assert_agrees("log_evidence", like.log_evidence(**problem), expected, inputs, carried)


@pytest.mark.parametrize("library", conventions.NUFFT_LIBRARIES)
@pytest.mark.parametrize("shape", [(8, 8), (7, 6), (5, 9)], ids=["even", "even-x", "odd-y"])
def test_dirty_image_half_pixel_offsets(tmp_path, shape, library):
    """Even sides put pixel centres half a mode off the table's: the phase moved into the strengths."""
    problem = lk.make_problem(dict(shape_native=shape, K=200, S=10, B=2, P=2, mask="full"), seed=2)
    store = store_module.write_problem(tmp_path / "s.zarr", problem, chunk=64)
    assert_same_parts(lk.Likelihood.from_store(store, library=library, **problem), lk.Likelihood(**problem))


def test_the_nufft_library_is_ducc0_where_installed_and_checked():
    geometry = stream.Geometry((4, 4), 0.1, np.argwhere(np.ones((4, 4), bool)))
    assert stream.ChunkTransform(geometry, 10).library == "ducc0"  # the test extra installs it
    assert stream.ChunkTransform(geometry, 10, eps=1e-14).library == "finufft"  # below ducc0's floor
    with pytest.raises(ValueError, match="library: one of ducc0, finufft"):
        stream.ChunkTransform(geometry, 10, library="nfft")


def test_generated_chunks_are_seeded_valid_and_bounded():
    sizes = dict(N=10, K=1000, pixel_scale=0.05)
    first = list(problems_module.generate_chunks(sizes, chunk=128, seed=4, channels=3))
    again = list(problems_module.generate_chunks(sizes, chunk=128, seed=4, channels=3))
    assert sum(len(arrays["noise"]) for _, _, arrays in first) == 1000
    assert {channel for channel, _, _ in first} == {"0", "1", "2"}
    uv_max = 0.4 / (0.05 * lk.conventions.ARCSEC_TO_RADIANS)
    for (_, ratio, arrays), (_, _, same) in zip(first, again):
        assert len(arrays["noise"]) <= 128
        lk.validate.check(arrays)
        assert np.hypot(*arrays["uv"].T).max() <= uv_max * ratio * (1 + 1e-12)
        for name in arrays:
            np.testing.assert_array_equal(arrays[name], same[name])
    other = next(problems_module.generate_chunks(sizes, chunk=128, seed=5))[2]
    assert not np.array_equal(other["noise"], first[0][2]["noise"])


def test_generated_store_matches_its_generator(tmp_path):
    sizes = dict(N=10, K=500)
    store = store_module.write_generated(tmp_path / "g.zarr", sizes, seed=1, chunk=100, channels=2)
    assert store.channels == ["0", "1"] and store.size() == 500
    assert store.frequency("1") == pytest.approx(0.98)
    parts = [arrays for _, _, arrays in problems_module.generate_chunks(sizes, chunk=100, seed=1, channels=2)]
    np.testing.assert_array_equal(
        store.read_all()["visibilities"], np.concatenate([p["visibilities"] for p in parts])
    )


def bad_store(tmp_path, problem, chunk=50):
    store = store_module.write_problem(tmp_path / "bad.zarr", problem, chunk=chunk)
    noise, visibilities = problem["noise"].copy(), problem["visibilities"].copy()
    noise[120] = -1.0  # chunk 2
    visibilities[260] = np.nan  # chunk 5
    rewritten = VisibilityStore.open(store.path, mode="r+")
    rewritten.write("0", 0, problem["uv"], noise, visibilities)
    rewritten.finish()
    return store


def repair(store, problem):
    rewritten = VisibilityStore.open(store.path, mode="r+")
    rewritten.write("0", 0, problem["uv"], problem["noise"], problem["visibilities"])
    rewritten.finish()


def test_a_bad_chunk_is_named_and_the_sums_so_far_are_kept(tmp_path):
    problem = lk.make_problem(SIZES, seed=3)
    store = bad_store(tmp_path, problem)
    with pytest.raises(
        stream.ChunkError, match=r"channel '0' chunk 2 \(visibilities 100:150\): noise"
    ) as caught:
        lk.Likelihood.from_store(store.path, **problem)
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.partial.done == {("0", 0), ("0", 1)} and error.partial.visibilities == 100
    assert [b.index for b in error.remaining] == [2, 3, 4, 5]
    assert "start=error.partial" in str(error)
    repair(store, problem)
    resumed = lk.Likelihood.from_store(store.path, start=error.partial, **problem)
    assert_same_parts(resumed, lk.Likelihood(**problem))
    with pytest.raises(ValueError, match="chunk size"):  # resume with other chunks: refused, not miscounted
        stream.accumulate(store, chunk=30, start=error.partial, **problem)


def test_partial_sums_refuse_to_count_twice_or_mix_geometries(tmp_path):
    problem = lk.make_problem(SIZES, seed=3)
    store = store_module.write_problem(tmp_path / "s.zarr", problem, chunk=100)
    whole = stream.accumulate(store, **problem)
    with pytest.raises(ValueError, match="counted twice"):
        _ = whole + whole
    other = lk.make_problem(dict(SIZES, shape_native=(5, 5)), seed=3)
    with pytest.raises(ValueError, match="geometry"):
        stream.accumulate(store, start=whole, **other)
    with pytest.raises(TypeError, match="'pixel_scale'"):
        stream.accumulate(store, shape_native=(6, 7), native_index=problem["native_index"])
    with pytest.raises(ValueError, match="no store"):
        stream.accumulate(tmp_path / "missing.zarr", **problem)


def test_progress_line_on_stderr_can_be_turned_off(tmp_path, capsys):
    problem = lk.make_problem(SIZES, seed=3)
    store = store_module.write_problem(tmp_path / "s.zarr", problem, chunk=30)
    stream.accumulate(store, progress=False, **problem)
    assert capsys.readouterr().err == ""
    stream.accumulate(store, progress=True, **problem)
    lines = capsys.readouterr().err.splitlines()
    assert lines[-2].startswith("lenskern: 100%") and "300/300" in lines[-2] and "10/10 chunks" in lines[-2]
    assert lines[-1].startswith("lenskern: 300 visibilities in 10 chunks")
    assert len(lines) == 11  # in a log: a line per tenth of the work, then the summary
    out = io.StringIO()
    meter = stream.Progress(10, 2, out=out)  # not a terminal: off unless asked
    meter.update(5)
    meter.close()
    assert out.getvalue() == ""


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("dask.distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_dask_cluster_sums_what_one_machine_sums(tmp_path, client):
    from lenskern import cluster

    problem = lk.make_problem(SIZES, seed=3)
    store = split_store(tmp_path / "s.zarr", problem, [100, 170], chunk=40)
    here = stream.accumulate(store, **problem)
    for per_task, library in ((1, "finufft"), (3, None)):
        there = cluster.accumulate(
            store.path, client=client, chunks_per_task=per_task, library=library, **problem
        )
        assert there.done == here.done and there.visibilities == 300
        np.testing.assert_allclose(there.table, here.table, rtol=0, atol=1e-12 * np.abs(here.table).max())
    like = lk.Likelihood.from_store(store.path, client=client, **problem)
    assert_same_parts(like, lk.Likelihood(**problem))


def test_dask_cluster_names_bad_chunks_and_keeps_the_rest(tmp_path, client):
    from lenskern import cluster

    problem = lk.make_problem(SIZES, seed=3)
    store = bad_store(tmp_path, problem)
    with pytest.raises(stream.ChunkError) as caught:
        cluster.accumulate(store.path, client=client, chunks_per_task=2, **problem)
    error = caught.value
    assert set(error.failed) == {("0", 2), ("0", 5)}
    assert "chunk 2 (visibilities 100:150): noise: every value must be > 0" in str(error)
    assert "chunk 5 (visibilities 250:300): visibilities: contains NaN" in str(error)
    # the good chunks of a task with a bad one are kept too
    assert error.partial.done == {("0", i) for i in (0, 1, 3, 4)}
    assert [b.index for b in error.remaining] == [2, 5]
    repair(store, problem)
    resumed = cluster.accumulate(store.path, client=client, start=error.partial, **problem)
    assert resumed.done == {("0", i) for i in range(6)}
    assert_same_parts(lk.Likelihood.from_parts(**resumed.parts()), lk.Likelihood(**problem))


def test_uvfits_through_pyuvdata_round_trips_into_a_store(tmp_path):
    """A UVFITS file pyuvdata writes from a problem: two frequencies, one
    flagged visibility; read back as two channels, uv scaled by frequency."""
    pytest.importorskip("pyuvdata")
    problem = lk.make_problem(dict(SIZES, K=60), seed=5)
    flagged = np.zeros(60, bool)
    flagged[7] = True
    filename = tmp_path / "p.uvfits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the placeholder antennas do not match the problem's uvw
        uvfits.write_uvfits(problem, filename, frequencies=[230e9, 234.6e9], flagged=flagged)
        store = uvfits.read_uvfits(filename, tmp_path / "p.zarr", chunk=16, rows_per_read=25)
    assert store.channels == ["spw0-0", "spw0-1"]
    assert [store.frequency(c) for c in store.channels] == [230e9, 234.6e9]
    keep = ~flagged
    for channel, ratio in zip(store.channels, (1.0, 1.02)):
        got = store.read(channel, 0, store.size(channel))
        np.testing.assert_allclose(got["uv"], problem["uv"][keep] * ratio, rtol=1e-14, atol=0)
        np.testing.assert_allclose(got["noise"], problem["noise"][keep], rtol=1e-14)
        np.testing.assert_array_equal(got["visibilities"], problem["visibilities"][keep])
    both = store.read_all()
    summed = {**problem, **both}  # the two channels' visibilities, one list
    assert_same_parts(lk.Likelihood.from_store(store, **problem), lk.Likelihood(**summed))


def test_command_line_writes_and_streams_a_store(tmp_path, capsys):
    from lenskern.__main__ import main

    path = str(tmp_path / "cli.zarr")
    main(["store", path, "-K", "3000", "--grid", "tiny", "--chunk", "1000", "--channels", "2"])
    assert "channels=2, K=3000, chunk=1000" in capsys.readouterr().out
    main(["stream", path, "--grid", "tiny", "--no-progress"])
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "visibilities: 3,000 in 4 chunks, grid tiny (6, 7)" in captured.out
    assert "peak RSS" in captured.out and "nufft" in captured.out and "NUFFT by ducc0" in captured.out
    main(["stream", path, "--grid", "tiny", "--no-progress", "--library", "finufft"])
    assert "visibilities: 3,000 in 4 chunks" in capsys.readouterr().out


def test_stream_benchmarks_are_a_tier_of_their_own(monkeypatch):
    """Off (n/a) unless LENSKERN_BENCH_TIERS names the stream tier; on, they
    run (here at a small K and grid)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    from benchmarks import stream as bench

    off = bench.Stream()
    monkeypatch.setattr(bench, "ENABLED", False)
    assert off.setup_cache() == {}
    with pytest.raises(NotImplementedError, match="LENSKERN_BENCH_TIERS"):
        off.setup({}, 10**6)
    monkeypatch.setattr(bench, "ENABLED", True)
    monkeypatch.setattr(bench, "VISIBILITIES", [3000])
    monkeypatch.setattr(bench, "GRID", "small")
    on = bench.Stream()
    cache = on.setup_cache()
    assert bench.write_store(3000) == bench.store_path(3000)  # kept, not written again
    on.setup(cache, 3000)
    assert 0 < on.track_seconds_per_visibility(cache, 3000) < 1e-2
    on.peakmem_accumulate(cache, 3000)
    peer = bench.PeerStream()
    missing = lk.implementations("w_offsets").missing.get("autoarray")
    if missing:  # Python 3.11: autoarray's release needs 3.12
        with pytest.raises(NotImplementedError, match="autoarray"):
            peer.setup(cache, 3000)
    else:
        peer.setup(cache, 3000)
        assert 0 < peer.track_seconds_per_visibility(cache, 3000) < 1e-1
