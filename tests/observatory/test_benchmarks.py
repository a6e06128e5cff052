"""The asv suite cannot rot: it passes asv check, runs for real, and reports."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lenskern as lk
from conftest import asv_env
from lenskern.observatory import suite
from lenskern.observatory.report import report, results_by_threads, rows

pytest.importorskip("asv")
ROOT = Path(__file__).resolve().parents[2]


def asv(*args, home: Path, config=None, tiers="tiny", **kwargs):
    env = asv_env(home, LENSKERN_BENCH_TIERS=tiers)
    command = [sys.executable, "-m", "asv", *args] + (["--config", str(config)] if config else [])
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def config(tmp_path_factory, asv_home):
    """asv.conf.json with results and html in a temporary folder."""
    from asv.util import load_json

    tmp = tmp_path_factory.mktemp("asv")
    conf = load_json(str(ROOT / "asv.conf.json"), js_comments=True)
    conf.update(results_dir=str(tmp / "results"), html_dir=str(tmp / "html"), repo=str(ROOT))
    conf["benchmark_dir"] = str(ROOT / "benchmarks")
    path = tmp / "asv.conf.json"
    path.write_text(json.dumps(conf))
    machine = asv("machine", "--yes", "--machine", "ci-check", home=asv_home, config=path)
    assert machine.returncode == 0, machine.stdout + machine.stderr
    return path


def test_asv_check(config, asv_home):
    result = asv("check", "--python=same", home=asv_home, config=config)
    assert result.returncode == 0 and "No problems found" in result.stdout, result.stdout


def test_peers_config_is_the_main_one_on_python312():
    """asv.peers.conf.json (autoarray on Python 3.12) differs from the main
    config only where it must: the Python, the extra, one thread, its own
    folders. The main config keeps its one Python, so its series keep their names."""
    from asv.util import load_json

    main = load_json(str(ROOT / "asv.conf.json"), js_comments=True)
    peers = load_json(str(ROOT / "asv.peers.conf.json"), js_comments=True)
    assert main["pythons"] == ["3.11"] and peers["pythons"] == ["3.12"]
    assert "{wheel_file}[peers," in main["install_command"][0]  # autoarray comes with the marker on 3.12
    assert peers["matrix"] == {"env_nobuild": {"LENSKERN_NUM_THREADS": ["1"]}}
    for key in ("env_dir", "results_dir", "html_dir"):
        assert peers[key] == main[key].replace(".asv/", ".asv/peers/")
    changed = {"pythons", "matrix", "env_dir", "results_dir", "html_dir"}
    assert {k: v for k, v in peers.items() if k not in changed} == {
        k: v for k, v in main.items() if k not in changed
    }


def test_every_kernel_has_its_declared_classes(monkeypatch):
    """Each area module declares the two classes of each of its kernels,
    under the names the observatory reads results by, and each class takes
    every implementation that can run here as a parameter."""
    import importlib

    monkeypatch.syspath_prepend(str(ROOT))
    for area, kernels in suite.AREAS.items():
        module = importlib.import_module(f"benchmarks.{area}")
        declared = {name: cls for name, cls in vars(module).items()
                    if isinstance(cls, type) and cls.__module__ == module.__name__}  # fmt: skip
        for kernel in kernels:
            for suffix in ("", suite.PROFILE):
                cls = declared.pop(suite.class_name(kernel) + suffix)
                assert cls.kernel == kernel
                assert cls.params[0] == sorted(lk.implementations(kernel)), kernel
        # beside the kernels' classes: the sampler's call, and whole stores streamed
        others = {"Likelihood", "Stream", "PeerStream", "_StreamBenchmark"}
        assert set(declared) <= others, f"{area}: classes of no kernel {sorted(declared)}"
    covered = [k for kernels in suite.AREAS.values() for k in kernels]
    assert sorted(covered) == sorted(lk.NAMES)


def test_every_problem_tier_is_a_parameter_and_a_regex_selects_some(monkeypatch):
    """The kernels' benchmarks take every tier; a run's regex finds its
    tiers and the benchmarks that take none, and ANDs with other regexes."""
    import re

    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import common
    from lenskern import problems
    from lenskern.observatory.__main__ import WITHOUT_COUNTS

    assert common.ALL_TIERS == tuple(problems.PRESETS)
    regex = suite.tier_regex(["tiny", "seed-1core"])
    found = ["curvature.CurvatureMatrix.time_call('numpy.dense', 'tiny')",
             "likelihood.Likelihood.time_call('numba.offsets', 'seed-1core')",
             "counts.Instructions.track_instructions('fma/numpy.vector')",
             "stream.Stream.time_read(1000)"]  # fmt: skip
    for name in found:
        assert re.search(regex, name), name
    for name in ("curvature.CurvatureMatrix.time_call('numpy.dense', 'small')",
                 "device.Device.time_kernel('w_tilde/numba_cuda.direct', 'science')"):  # fmt: skip
        assert not re.search(regex, name), name
    both = suite.all_of(regex, WITHOUT_COUNTS, None)
    assert [name for name in found if re.search(both, name)] == [found[0], found[1], found[3]]


def test_a_narrowed_suite_counts_the_calls_its_regex_selects():
    calls = ["fma/numba.parallel", "noise_normalization/numpy.vector", "w_tilde/numpy.nufft"]
    only = r"counts\.Instructions\.track_instructions\('noise_normalization/numpy\.vector'\)|likelihood\."
    assert suite.counted_calls(calls, suite.all_of(suite.tier_regex(["small"]), only)) == [calls[1]]
    assert suite.counted_calls(calls, r"track_estimated_cycles\('fma/") == [calls[0]]
    assert suite.counted_calls(calls, r"^counts\.") == calls
    assert suite.counted_calls(calls, r"^likelihood\.") == []


def test_a_tier_that_is_no_tier_is_refused_before_anything_runs(monkeypatch, tmp_path):
    """``huge`` would select no kernel benchmark: the run would quietly
    measure nothing. Each command names where the tier came from."""
    from lenskern.observatory import alert

    with pytest.raises(ValueError, match=r"tiers: 'huge' is not a tier; expected .*tiny.*stream"):
        suite.tier_regex(["tiny", "huge"])
    with pytest.raises(ValueError, match="no tier given"):
        suite.tier_regex([])
    monkeypatch.setenv(suite.TIERS_VARIABLE, "small,huge,vast")
    with pytest.raises(ValueError, match="LENSKERN_BENCH_TIERS: 'huge', 'vast' are not tiers"):
        suite.selected_tiers("small")
    # compare: a broken comparison (exit 2, never a verdict), before asv starts
    code, text = alert.compare("HEAD", "HEAD", config=ROOT / "asv.conf.json")
    assert code == 2 and "**Broken**" in text and "LENSKERN_BENCH_TIERS: 'huge', 'vast'" in text
    monkeypatch.delenv(suite.TIERS_VARIABLE)
    home = dict(os.environ, HOME=str(tmp_path))  # no machine is recorded: the error comes first
    cases = [(["run", "--tier", "small,huge"], home, "--tier"),
             (["nightly"], dict(home, LENSKERN_BENCH_TIERS="huge"), "LENSKERN_BENCH_TIERS")]  # fmt: skip
    for command, env, named in cases:
        done = subprocess.run([sys.executable, "-m", "lenskern.observatory", *command], cwd=ROOT, env=env,
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 1 and f"{named}: 'huge' is not a tier" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / ".asv-machine.json").exists()


def test_one_benchmark_runs_for_real_and_reports(config, asv_home):
    commit = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True).strip()
    regularization = r"curvature\.RegularizationMatrix"
    run = asv("run", "--python=same", "--set-commit-hash", commit, "--machine", "ci-check",
              "--show-stderr", "-b", suite.all_of(regularization, suite.tier_regex(["tiny"])),
              home=asv_home, config=config)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    results_dir = Path(json.loads(config.read_text())["results_dir"])
    files = list((results_dir / "ci-check").glob(f"{commit[:8]}-*.json"))
    assert len(files) == 2, "one result file per LENSKERN_NUM_THREADS setting"
    by_threads = results_by_threads(results_dir, "ci-check", commit)  # the one reader of asv's files
    assert set(by_threads) == {"1", "all"}
    found = rows(by_threads, "regularization_matrix", "tiny")
    assert {"numpy.scatter", "numba.loop", "jax.scatter"} <= {row.implementation for row in found}
    for row in found:
        assert row.seconds["1"] > 0
        if row.implementation.startswith("reference."):
            # plain Python: timed on one thread, nothing compiled, nothing else tracked
            assert "all" not in row.seconds and math.isnan(row.first_call_seconds)
            continue
        assert row.seconds["all"] > 0
        assert row.first_call_seconds > 0 and row.max_relative_error < 1e-12
        # measured in the call's own process: H and its temporaries at tiny
        # are kilobytes, whole pages of them
        assert 0 <= row.peak_bytes < 64 * 2**20 and row.peak_bytes % 4096 == 0, row
    text = report(results_dir, "ci-check", commit, "tiny")
    assert "1 thread (ratio)" in text and "all threads (ratio)" in text
    assert "| numba.loop |" in text and "(1.00)" in text

    # Another tier of the same commit, one implementation: added beside tiny's results
    one = regularization + r"\.time_call\('numpy.scatter'"
    run = asv("run", "--python=same", "--set-commit-hash", commit, "--machine", "ci-check",
              "--show-stderr", "-b", suite.all_of(one, suite.tier_regex(["small"])), home=asv_home,
              config=config, tiers="small")  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    by_threads = results_by_threads(results_dir, "ci-check", commit)
    added = rows(by_threads, "regularization_matrix", "small")
    assert [row.implementation for row in added] == ["numpy.scatter"]
    kept = rows(by_threads, "regularization_matrix", "tiny")
    assert [(r.implementation, r.seconds) for r in kept] == [(r.implementation, r.seconds) for r in found]


def test_the_suite_cache_is_the_users_own(tmp_path, monkeypatch):
    """The cache of inputs and parameters lives under the user's cache
    folder, 0700, and one that another user owns is refused, never trusted."""
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import common

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = common._cache_folder()
    assert folder.parent == tmp_path and folder.stat().st_mode & 0o777 == 0o700
    if os.geteuid() == 0:
        os.chown(folder, 65534, 65534)
        with pytest.raises(RuntimeError, match="owned by another user"):
            common._cache_folder()


def test_counts_are_counted_once_per_code_not_once_per_round(tmp_path, monkeypatch):
    """asv runs setup_cache again for every round; the counts are
    deterministic, so the second round reads the first's, and changed code
    (another installed lenskern) or other calls count again."""
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import counts as bench

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(bench.counts, "supported", lambda: None)
    monkeypatch.setattr(bench, "one_thread", lambda: True)
    counted = []

    def count_many(calls, tier):
        counted.append(list(calls))
        return {call: {"instructions": 100 + i, "estimated_cycles": 200.0} for i, call in enumerate(calls)}

    monkeypatch.setattr(bench.counts, "count_many", count_many)
    suite = bench.Instructions()
    suite.params = [["fma/numpy.vector", "fma/numba.parallel"]]
    first = suite.setup_cache()
    assert suite.setup_cache() == first and len(counted) == 1
    assert first["fma/numba.parallel"]["instructions"] == 101
    suite.params = [["fma/numpy.vector"]]
    suite.setup_cache()
    assert len(counted) == 2  # other calls: counted again
    other = tmp_path / "other-lenskern"
    (other / "lenskern").mkdir(parents=True)
    (other / "lenskern" / "__init__.py").write_text("# another commit's code\n")
    monkeypatch.setattr(bench, "_package", lambda: other / "lenskern")
    suite.setup_cache()
    assert len(counted) == 3  # other code: counted again


def test_inputs_are_built_once_per_code_and_thread_setting(tmp_path, monkeypatch):
    """asv runs setup_cache again in every round; the second round of the
    same code reads the first's inputs, equal to fresh ones. Other code or
    another thread setting builds them again; the least recently used sets
    go first, and a set too large to keep is built every time."""
    import numpy as np

    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import common

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    kept = lambda: sorted((tmp_path / "lenskern-asv").glob("inputs-*.pickle"))  # noqa: E731
    first = common.suite_inputs("tiny")
    fresh = common.build_suite_inputs("tiny")
    assert first["inputs"].keys() == fresh["inputs"].keys() and len(kept()) == 1
    for name, value in fresh["inputs"].items():
        np.testing.assert_array_equal(np.asarray(first["inputs"][name]), np.asarray(value), err_msg=name)

    built = []
    monkeypatch.setattr(
        common, "build_suite_inputs", lambda tier: built.append(tier) or {"inputs": {"x": len(built)}}
    )
    assert common.suite_inputs("tiny") is not first and not built  # read, not built
    monkeypatch.setenv("LENSKERN_NUM_THREADS", "all")
    common.suite_inputs("tiny")
    assert built == ["tiny"] and len(kept()) == 2
    other = tmp_path / "other-lenskern"
    (other / "lenskern").mkdir(parents=True)
    (other / "lenskern" / "__init__.py").write_text("# another commit's code\n")
    monkeypatch.setattr(common, "_package", lambda: other / "lenskern")
    common.suite_inputs("tiny")
    assert built == ["tiny", "tiny"] and len(kept()) == 3
    monkeypatch.setattr(common, "INPUTS_KEPT", 2)
    monkeypatch.setenv("LENSKERN_NUM_THREADS", "1")
    common.suite_inputs("tiny")
    assert len(built) == 3 and len(kept()) == 2  # the oldest gone
    monkeypatch.setattr(common, "INPUTS_KEPT_BYTES", 10)
    monkeypatch.setenv("LENSKERN_NUM_THREADS", "2")
    assert common.suite_inputs("tiny") == {"inputs": {"x": 4}}
    assert common.suite_inputs("tiny") == {"inputs": {"x": 5}} and len(kept()) == 2  # too large to keep


PEAK_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from benchmarks import common

size = 16 * 2**20
held = [np.ones(size // 8) for _ in range(4)]  # 64 MiB resident before the call
freed = np.ones(size // 8)
del freed  # returned to the allocator: the call below may reuse it
print(common.own_peak_bytes(lambda: np.ones(size // 8)))  # 16 MiB touched
print(common.own_peak_bytes(lambda: np.empty(size // 8)))  # reserved, never touched
print(common.own_peak_bytes(lambda: 1.0))
"""


def test_peak_memory_is_the_calls_own_in_pages():
    """What the call touches, not what was resident before it, nor what it
    reserved and never touched; in a fresh process, as asv measures."""
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(ROOT)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    touched, untouched, nothing = (float(line) for line in done.stdout.split())
    mib = 2**20
    assert 16 * mib <= touched < 17 * mib
    assert untouched < 1 * mib and nothing < 1 * mib
    assert touched % 4096 == 0


FORKSERVER_SCRIPT = """
import os, sys, threading
sys.path.insert(0, sys.argv[1])
import benchmarks.curvature, benchmarks.offsets, benchmarks.likelihood, benchmarks.examples
import benchmarks.stream, benchmarks.device
from benchmarks import common

def loaded():
    return sorted({"numba", "scipy.fft", "jax"} & set(sys.modules))

def fork(work):
    pid = os.fork()
    if pid == 0:
        work()
        sys.stdout.flush()
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0

def compiled(folder):
    return any(name.endswith(".nbi") for _, _, names in os.walk(folder) for name in names)

def fma(shared):
    def work():
        if shared:
            common._use_numba_cache(common._SHARED_NUMBA_CACHE)
        impl = common.implementation("fma", "numba.serial")
        impl.function(**impl.bind(common.problems.make_examples("tiny")))
        own = os.environ["NUMBA_CACHE_DIR"]
        print("compiled in", "shared" if own == common._SHARED_NUMBA_CACHE else "own", compiled(own),
              "shared holds", compiled(common._SHARED_NUMBA_CACHE), flush=True)
    return work

print(loaded())
fork(lambda: common.implementation("dirty_image", "numpy.gemv"))
print(loaded())
fork(lambda: common.implementation("dirty_image", "jax.gemv"))
print(loaded())
fork(lambda: None)
print(loaded(), threading.active_count(), os.environ.get("XLA_FLAGS", ""))
fork(fma(shared=False))
fork(fma(shared=True))
fork(fma(shared=False))

def ask_examples():
    got = common.examples("tiny")
    whose = "the server's" if got is common._EXAMPLES.get("tiny") else "its own"
    fresh = common.problems.make_examples("tiny")
    print("examples", whose, all((got[name] == fresh[name]).all() for name in fresh), flush=True)
    got["x"][:] = -1  # a call that writes to its inputs
    fork(lambda: None)  # a benchmark's own fork (a pool of workers): the server's business only
    print("made by a benchmark's fork:", "tiny" in common._EXAMPLES and whose == "its own", flush=True)

for _ in range(3):
    fork(ask_examples)
"""


def test_the_forkserver_loads_once_what_its_processes_share():
    """The forkserver that imported the suite has loaded neither Numba nor
    JAX; it imports Numba and SciPy before its first fork, which spares each
    benchmark process their import, and JAX, a second to import, once a
    benchmark process loaded a JAX implementation (not after one that loaded
    only NumPy), after lenskern set the thread counts, with no thread
    started (asv's forkserver, played with os.fork). Each process still
    compiles into the Numba cache folder it chose: its own (a first call is
    a compilation) or the run's shared one. The examples' arrays are made
    once a process asked for them."""
    env = dict(os.environ, LENSKERN_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", FORKSERVER_SCRIPT, str(ROOT)], env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    # nothing said: a fork hook of a module JAX loads, run out of its pairs,
    # prints a traceback in the forkserver's output
    assert done.stderr == "", done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == ["[]", "['numba', 'scipy.fft']", "['numba', 'scipy.fft']"], lines
    # one thread (the main one); XLA's thread count set before JAX loaded
    assert lines[3].startswith("['jax', 'numba', 'scipy.fft'] 1 "), lines
    assert "intra_op_parallelism_threads=1" in lines[3], lines
    # a folder of its own, then the shared one, then a new one of its own
    # (compiled afresh there, not loaded from the shared one)
    assert lines[4:7] == [
        "compiled in own True shared holds False",
        "compiled in shared True shared holds True",
        "compiled in own True shared holds True",
    ], lines
    # the first process to ask makes the examples; the server then makes
    # them before it forks again, and a process that writes to them changes
    # only its own copy
    made = "made by a benchmark's fork: False"
    assert lines[7:] == ["examples its own True", made] + ["examples the server's True", made] * 2, lines


PROFILE_SCRIPT = """
import os, sys
sys.path.insert(0, sys.argv[1])
from benchmarks import examples

def profile(method):
    bench = examples.FmaProfile()
    bench.setup({}, "numba.serial", "tiny")
    value = getattr(bench, method)({}, "numba.serial", "tiny")
    print(method, repr(bench.first_call_seconds), os.environ["NUMBA_CACHE_DIR"], value, flush=True)

for method in ("track_max_relative_error", "track_first_call_seconds", "track_peak_bytes"):
    pid = os.fork()
    if pid == 0:
        profile(method)
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
"""


def test_an_implementations_profile_compiles_once_and_each_reports_that_first_call():
    """An implementation's three Profile benchmarks, each a process: the
    first to run (in any order) compiles in a Numba folder of its own and
    records its first call; the others load from that folder and report the
    same first call, memory and error measured as before."""
    env = dict(os.environ, LENSKERN_NUM_THREADS="1", LENSKERN_BENCH_TIERS="tiny")
    done = subprocess.run([sys.executable, "-c", PROFILE_SCRIPT, str(ROOT)], env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (_, first, folder, error), (_, *also, seconds), (_, *again, peak) = (
        line.split() for line in done.stdout.splitlines()
    )
    assert also == again == [first, folder]
    assert float(seconds) == float(first) > 0
    assert float(error) < 1e-12 and float(peak) >= 0
