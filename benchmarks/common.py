"""The asv suite's generic machinery: base classes, parameters, inputs, memory.

The area modules (``offsets.py``, ``curvature.py``, ``likelihood.py``,
``examples.py``) declare one pair of classes per kernel, explicitly::

    class CurvatureMatrix(KernelTime):
        kernel = "curvature_matrix"

and the bases here give them their parameters, generated from lenskern's
registry: every implementation that can run here, on every size tier, so an
implementation added to a backend is benchmarked with no code in this folder.

- ``<Kernel>.time_call``, on each thread setting: one call, JIT compilation
  done in ``setup``; the timed body waits for an asynchronous device
  (:func:`synchronize`: what the backend declares).
- ``<Kernel>Profile``, on one thread only (each benchmark is a process of its
  own, and the thread count changes none of these much):
  ``track_peak_bytes`` is the call's own peak memory, measured inside one
  process (:func:`own_peak_bytes`: the high-water mark of resident memory
  during one warm call above what was resident just before it, to a page);
  ``track_first_call_seconds`` is the first call, compilation included;
  ``track_max_relative_error`` is max |got - oracle| / max |oracle|, the
  oracle being the reference where it runs in seconds at that size, else
  the implementation the registry declares as the kernel's oracle
  (``registry.oracle``).

Compilation: an implementation's three Profile benchmarks are three
processes. The first of them to run compiles in a Numba cache folder of its
own, so its first call is a compilation, and records that call; the other
two load what it compiled and report its record (:func:`first_call_record`),
which spares the run two compilations per implementation. The ``<Kernel>``
classes time warm calls only and load what an earlier process of the same
run compiled (one cache folder per run), which spares the run a compilation
per implementation and thread setting.

The reference (plain Python) is timed on one thread only, with no warm call;
its memory, first call and error (zero by definition) are not tracked.

Size tiers: every benchmark of a kernel takes every tier of
:data:`ALL_TIERS` as its ``tier`` parameter, and measures those that
``LENSKERN_BENCH_TIERS`` selects (comma list; ``small`` by default); the
others are n/a. Fixed parameters are what let tiers share one result file:
asv keeps a benchmark's earlier results at the parameters its ``-b`` regex
leaves out, so a run narrowed to its tiers
(:func:`lenskern.observatory.suite.tier_regex`, as every observatory command
narrows it) adds them beside the tiers run before on that commit, instead of
replacing them. The tier ``stream`` is not a problem size: it switches on
``stream.py``'s benchmarks (visibilities streamed from a store on disk).
An implementation whose cost model (``Implementation.cost``, declared with
it) estimates more than a minute per call at a tier (a second at
``small``) is skipped there: asv shows n/a, and :func:`skip_reason` says why.
One ``setup_cache`` serves the whole suite: the inputs of every kernel are
built once per environment and loaded by each benchmark process.
"""

from __future__ import annotations

import abc
import atexit
import ctypes
import gc
import hashlib
import importlib
import importlib.util
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Numba caches compiled kernels on disk (cache=True); a fresh cache directory
# per benchmark process makes track_first_call_seconds measure compilation,
# not a cache load. asv's forkserver (asv.conf.json) imports this module once
# per environment and forks a process per benchmark, which leaves through
# os._exit: each child takes a folder of its own inside this one, which the
# server's exit removes.
_NUMBA_CACHES = tempfile.mkdtemp(prefix="lenskern-numba-")
atexit.register(shutil.rmtree, _NUMBA_CACHES, ignore_errors=True)


#: The folder the warm-call classes share: Numba writes it as one process
#: compiles and every later process of the run loads from it.
_SHARED_NUMBA_CACHE = os.path.join(_NUMBA_CACHES, "shared")


def _use_numba_cache(folder: str) -> None:
    """Numba's cache folder for what this process compiles from now on.

    Numba reads NUMBA_CACHE_DIR when it loads and fixes a function's folder
    when the function is decorated, as a backend module loads; the server
    may have loaded Numba already (below), so its configuration is read
    again. No lenskern module that decorates is loaded before a fork."""
    os.environ["NUMBA_CACHE_DIR"] = folder
    if "numba" in sys.modules:
        sys.modules["numba"].core.config.reload_config()


def _fresh_numba_cache() -> None:
    _use_numba_cache(tempfile.mkdtemp(dir=_NUMBA_CACHES))


_fresh_numba_cache()
os.register_at_fork(after_in_child=_fresh_numba_cache)

# lenskern first: it applies LENSKERN_NUM_THREADS before NumPy loads. NumPy
# first would start OpenBLAS's threads before their count and CPU affinity
# are set, and a one-thread benchmark would run BLAS on every core.
import lenskern as lk  # noqa: E402, I001
import numpy as np  # noqa: E402
from lenskern import problems, registry  # noqa: E402

#: What nearly every benchmark process loads, imported once by the forkserver
#: before it forks instead: lenskern's NumPy backend takes SciPy and Numba
#: (``lenskern.chunk``), its Numba backend Numba; 0.4 s of each process's
#: set-up (``python -X importtime``, the main job's asv environment at
#: 178c67e, 2-core VM). Loading them starts no thread: Numba's pool starts at
#: the first parallel call, in the process. lenskern's own modules that
#: decorate with Numba stay for the process to load (:func:`_use_numba_cache`).
_PRELOADED = ("numba", "scipy.fft", "scipy.linalg", "scipy.sparse")

# JAX takes a second to import, in each of the hundred-odd processes of a run
# that use it. Once a benchmark process has loaded JAX (:func:`implementation`
# leaves a mark in the run's folder), the forkserver imports it before its
# next fork, after lenskern set XLA's thread count, and every later process
# starts with it. A process that never forks (asv's discovery and
# setup_cache) and a round that loads no JAX implementation (the alert's and
# the pull request's selections mostly) import none: at 1.2 s an import,
# that was 2.4 s of each 4.2 s round of the alert's compare of one NumPy
# benchmark (measured side by side at 7929b63 on the 2-core VM). Importing
# JAX starts no thread and no device (those start at the first computation,
# in the process).
_JAX_LOADED = Path(_NUMBA_CACHES) / "jax-loaded"


#: The seeds' example arrays by tier, made by the forkserver: 320 MB at
#: small, which took each process of an example's benchmarks 1.0 s to make,
#: most of it first touching fresh pages (``make_examples("small")`` in the
#: main job's asv environment at df3d215, 2-core VM; some 85 processes a
#: main job). The first process to ask makes its own and leaves a mark; the
#: server makes them before its next fork, and every later process reads the
#: server's pages, copy-on-write: a call that wrote to its inputs would copy
#: what it writes, never change another process's.
_EXAMPLES: dict[str, dict[str, np.ndarray]] = {}
#: The marks asking the server for a tier's examples: this, then the tier.
_EXAMPLES_ASKED = "examples-"


def examples(tier: str) -> dict[str, np.ndarray]:
    """``problems.make_examples(tier)``: the server's (above) once it has them."""
    if tier in _EXAMPLES:
        return _EXAMPLES[tier]
    (Path(_NUMBA_CACHES) / f"{_EXAMPLES_ASKED}{tier}").touch()
    return problems.make_examples(tier)


#: The process that imported the suite: under asv's forkserver, the server.
_SERVER = os.getpid()


def _before_fork() -> None:
    """The forkserver's imports (:data:`_PRELOADED`, JAX once a process loaded
    it) and example arrays (:data:`_EXAMPLES`), among its before-fork hooks,
    after lenskern set the thread counts. A benchmark process that forks (a
    pool of workers) makes and imports nothing here."""
    if os.getpid() != _SERVER:
        return
    for mark in Path(_NUMBA_CACHES).glob(f"{_EXAMPLES_ASKED}*"):
        tier = mark.name.removeprefix(_EXAMPLES_ASKED)
        if tier not in _EXAMPLES:
            _EXAMPLES[tier] = problems.make_examples(tier)
    wanted = [name for name in _PRELOADED if name not in sys.modules]
    if "jax" not in sys.modules and _JAX_LOADED.exists():
        wanted.append("jax")
    if not wanted:
        return
    # A module that registers fork hooks as it loads (JAX's logging lock,
    # filelock's) would get this fork's after-fork calls without its
    # before-fork call (logging: "cannot release un-acquired lock"), so each
    # is registered once the imports are done, and given its before-fork call.
    registered = []
    register, os.register_at_fork = os.register_at_fork, lambda **hooks: registered.append(hooks)
    try:
        for name in wanted:
            importlib.import_module(name)
    finally:
        os.register_at_fork = register
    for hooks in registered:
        register(**hooks)
        if "before" in hooks:
            hooks["before"]()


os.register_at_fork(before=_before_fork)


def record_imported_commit() -> None:
    """Append which commit this process's lenskern was built from, next to the
    commit asv says it is benchmarking (ASV_COMMIT), to the file named by
    LENSKERN_IMPORT_RECORD, when set.

    ``python -m lenskern.observatory compare`` sets it and treats any
    difference as a broken comparison: a side that ran the other side's code
    must not read as "no change". The code is here, not in lenskern, because
    the benchmarks come from the current checkout for both sides, while the
    base's lenskern may predate the check. ``lenskern._commit`` is written by
    asv.conf.json's build_command; a wheel built without it records None.
    """
    path = os.environ.get("LENSKERN_IMPORT_RECORD")
    if not path:
        return
    try:
        from lenskern._commit import COMMIT as imported
    except ImportError:
        imported = None
    record = {"asked": os.environ.get("ASV_COMMIT"), "imported": imported, "pid": os.getpid()}
    with open(path, "a") as handle:  # one short append per process: lines do not interleave
        handle.write(json.dumps(record) + "\n")


record_imported_commit()

#: The problem tiers (lenskern.problems.PRESETS, smallest first), written out
#: because asv runs this suite against older commits, which may lack some.
ALL_TIERS = ("tiny", "small", "seed-1core", "seed-gpu", "science", "peer-800")
#: The tiers this run measures.
TIERS = tuple(t for t in os.environ.get("LENSKERN_BENCH_TIERS", "small").split(",") if t)
#: The tier that switches on the streaming benchmarks (benchmarks/stream.py).
STREAM_TIER = "stream"
#: The problem-size tiers, whose inputs are built.
PROBLEM_TIERS = tuple(t for t in TIERS if t != STREAM_TIER)

#: A call estimated to take longer than this is skipped at that tier: the
#: small tier, the main job's, promises every call within a second, the
#: larger ones a minute. At 5 s, four plain-Python references of 1-6 s a
#: call (w_offsets, data_parts, quadratic_formula, fused_expression: 2-5
#: samples each) took about 40 s of a 9-minute main job (the d99c644 run);
#: they are still timed at tiny.
MAX_SECONDS = {"tiny": 5.0, "small": 1.0}
MAX_SECONDS_LARGE = 60.0

#: W is built as an input only while it fits in this much memory: every
#: benchmark process loads the shared inputs, so a W of gigabytes (1.9 GB at
#: peer-800, 40 GiB at science) would be read by each; there only the
#: algorithms that never form W run.
W_BYTES_MAX = 1 << 30


def skip_reason(kernel: str, name: str, tier: str) -> str | None:
    """Why implementation ``name`` of ``kernel`` is not benchmarked at
    ``tier``, or None: its cost model's estimate (the checkout's, so every
    commit skips the same calls) against the tier's limit."""
    seconds = checkout_facts()["seconds"][tier][kernel][name]
    limit = MAX_SECONDS.get(tier, MAX_SECONDS_LARGE)
    if seconds > limit:
        return f"{name} at {tier}: estimated {seconds:.0f} s per call (> {limit:.0f} s)"
    return None


def skip_unselected_tier(tier: str) -> None:
    """n/a at a tier LENSKERN_BENCH_TIERS does not select."""
    if tier not in PROBLEM_TIERS:
        raise NotImplementedError(f"tier {tier!r} not selected (LENSKERN_BENCH_TIERS={','.join(TIERS)})")


def build_suite_inputs(tier: str) -> dict:
    """Everything the kernels' benchmarks take at a tier: the problem and
    every intermediate output (each from lenskern's recommended
    implementation), W only while it fits in W_BYTES_MAX. The examples'
    arrays (320 MB) are not among them, so no other benchmark process loads
    them: :func:`examples` serves them."""
    inputs = dict(lk.make_problem(tier))
    for name in checkout_facts()["intermediates"]:  # SPEC's names, in pipeline order
        if name == "w_tilde" and 8 * len(inputs["grid"]) ** 2 > W_BYTES_MAX:
            continue
        inputs[name] = lk.compute(name, **inputs)
    return {"inputs": inputs}


#: Input sets kept on disk by :func:`suite_inputs`: the least recently
#: used go first, and a set whose pickle is larger is built every time, so
#: the cache stays under 512 MiB.
INPUTS_KEPT = 8
INPUTS_KEPT_BYTES = 64 << 20


def suite_inputs(tier: str) -> dict:
    """:func:`build_suite_inputs`, kept on disk keyed by all they are made of.

    asv runs ``setup_cache`` again in every round of every commit: the pull
    request's check and the alert run five rounds a side, and building the
    small tier's inputs took 8.4 s of each round's 10 (the recommended
    implementations compiled and called; a 2.6 MB pickle; timed in a clean
    clone's asv environment at commit 3ea742b on the project's 2-core VM,
    2026-12-06). The same installed code, suite, Python,
    libraries and thread setting give the same arrays, and asv pickles
    ``setup_cache``'s answer for every benchmark process anyway, so a
    benchmark cannot tell a kept set from a fresh one. (``setup_cache``
    keeps calling this name: asv versions a benchmark by the source of its
    ``setup_cache``, and a new version hides every earlier result.)"""
    key = "\n".join([
        _digest(_sources(_package()), _package()),  # the code under test
        hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),  # how the suite builds its inputs
        json.dumps(checkout_facts()["intermediates"]), tier, sys.executable,
        os.environ.get("LENSKERN_NUM_THREADS", ""), *library_versions(),
    ])  # fmt: skip
    path = _cache_folder() / f"inputs-{hashlib.sha256(key.encode()).hexdigest()[:20]}.pickle"
    if path.exists():
        path.touch()  # recently used
        return pickle.loads(path.read_bytes())
    inputs = build_suite_inputs(tier)
    data = pickle.dumps(inputs, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) <= INPUTS_KEPT_BYTES:
        _write_atomically(path, lambda partial: partial.write_bytes(data))
        kept = sorted(_cache_folder().glob("inputs-*.pickle"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in kept[INPUTS_KEPT:]:
            old.unlink(missing_ok=True)
    return inputs


def library_versions() -> list[str]:
    """``name=version`` of each numerical library a result may depend on
    (``name=none`` where it is not installed)."""
    from importlib import metadata

    versions = []
    for name in ("numpy", "scipy", "numba", "jax", "jaxlib", "finufft", "ducc0", "numexpr"):
        try:
            versions.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name}=none")
    return versions


def implementation(kernel: str, name: str) -> lk.Implementation:
    """One implementation, loading only its backend; n/a in asv if it cannot
    run here, or if the commit under test does not have it."""
    try:
        found = registry.implementation(kernel, name)
    except ValueError as error:
        raise NotImplementedError(f"{name}: {error}") from None
    except AttributeError as error:  # a commit from before registry.implementation
        raise lacks_feature(error) from None
    if "jax" in sys.modules:  # for the forkserver's next fork (above)
        _JAX_LOADED.touch()
    return found


def _package() -> Path:
    """The installed lenskern: the code under test, the commit asv benchmarks."""
    return Path(next(iter(importlib.util.find_spec("lenskern").submodule_search_locations)))


#: The checkout this suite belongs to: asv runs the suite of the current
#: checkout against every commit it benchmarks, so its parameters must be
#: the checkout's too (below).
CHECKOUT = Path(__file__).resolve().parents[1]


def checkout_module(relative: str):
    """A module of the checkout's lenskern that imports only the standard
    library (a tool of the suite), loaded by path under a name of its own,
    beside the installed lenskern under test."""
    path = CHECKOUT / relative
    name = "_lenskern_checkout_" + path.stem
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def _sources(package: Path) -> list[Path]:
    """A lenskern's Python files, less the build stamp (asv's build writes
    ``_commit.py`` into the wheel only)."""
    return sorted(p for p in package.rglob("*.py") if p.name != "_commit.py")


def _digest(files: list[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _cache_folder() -> Path:
    """The suite's cache, the user's own: a folder in ``$XDG_CACHE_HOME``
    (``~/.cache``), created 0700 and refused unless this user owns it. A
    fixed folder in /tmp was whoever made it first's: another user's asv
    could not write it, and its files were trusted whoever wrote them."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = base / "lenskern-asv"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_uid != os.getuid():
        raise RuntimeError(f"{folder}: owned by another user; lenskern's benchmark cache must be your own")
    return folder


def _cache_path(stem: str, files: list[Path], suffix: str) -> Path:
    """A file in the shared temporary folder, keyed by the contents of
    ``files``: the same code gives the same key, changed code a new one."""
    digest = hashlib.sha256(str(_package()).encode())
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return _cache_folder() / f"{stem}-{digest.hexdigest()[:20]}{suffix}"


def _write_atomically(path: Path, write) -> None:
    partial = path.with_name(f"{path.stem}.{os.getpid()}{path.suffix}")
    write(partial)
    partial.replace(path)  # a concurrent reader sees all or nothing


#: What the suite's parameters are made of, asked of the checkout's lenskern
#: in a child of this environment's Python (the installed lenskern, which may
#: be an older commit's, holds the same module names): every implementation
#: that can run here with its inputs and its estimated seconds per call at
#: each problem tier of this run, the intermediates and examples, the
#: backends running on a GPU here, the inputs a Likelihood takes per call,
#: and each area's kernels with their benchmark classes' names.
_FACTS_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
import lenskern as lk
from lenskern import likelihood, problems, registry
from lenskern.observatory import suite
kernels = registry.NAMES
found = {k: dict(sorted(lk.implementations(k).items())) for k in kernels}
seconds = {}
for tier in sys.argv[2:]:
    sizes = lk.make_problem(tier).sizes
    seconds[tier] = {k: {n: i.estimated_seconds(problems.example_sizes(tier) if k in registry.EXAMPLES
                                                else sizes) for n, i in found[k].items()} for k in kernels}
print(json.dumps({
    "implementations": {k: {n: list(i.inputs) for n, i in found[k].items()} for k in kernels},
    "seconds": seconds,
    "intermediates": list(registry.INTERMEDIATES),
    "examples": list(registry.EXAMPLES),
    "gpu_backends": sorted({i.backend for k in kernels for i in found[k].values() if i.device == "gpu"}),
    "likelihood_inputs": list(likelihood.CALL_INPUTS),
    "classes": {area: {k: suite.class_name(k) for k in names} for area, names in suite.AREAS.items()},
    "profile_suffix": suite.PROFILE,
}))
"""


def checkout_facts() -> dict:
    """:data:`_FACTS_SCRIPT`'s answer for this suite's checkout.

    asv discovers the suite with one commit installed and then runs each
    benchmark by its parameter's index in a process of its own, with the
    commit under test installed. Parameters taken from the installed
    lenskern would shift at a commit with other implementations, and its
    results be filed under another implementation's name. Taken from the
    checkout they are the same in every process; an implementation the
    commit lacks is n/a there (:func:`implementation`).

    Kept in a file keyed by the checkout's code, the script and the Python, so only the
    first process of a run pays for loading every backend.
    """
    # the script too: a suite that asks for more facts must not read an older answer
    key = (
        _digest(_sources(CHECKOUT / "lenskern"), CHECKOUT)
        + sys.executable
        + ",".join(PROBLEM_TIERS)
        + _FACTS_SCRIPT
    )
    path = _cache_folder() / f"checkout-{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"
    if path.exists():
        return json.loads(path.read_text())
    command = [sys.executable, "-c", _FACTS_SCRIPT, str(CHECKOUT), *PROBLEM_TIERS]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise RuntimeError(f"the checkout's lenskern ({CHECKOUT}) did not load:\n{done.stderr[-3000:]}")
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    _write_atomically(path, lambda p: p.write_text(json.dumps(facts)))
    return facts


def manifest() -> dict[str, dict[str, list[str]]]:
    """``{kernel: {implementation name: its inputs}}`` for every implementation
    of the checkout that can run here: the parameters of the suite's classes."""
    return checkout_facts()["implementations"]


def installed_is_checkout() -> bool:
    """Whether the lenskern under test is the checkout's code (HEAD in a
    working tree), not another commit's."""
    return _digest(_sources(_package()), _package()) == _digest(_sources(CHECKOUT / "lenskern"),
                                                                CHECKOUT / "lenskern")  # fmt: skip


def lacks_feature(error: Exception) -> NotImplementedError:
    """An older commit's lenskern without a name the suite uses: n/a for that
    commit, so history runs up to each kernel's first commit. At the
    checkout's own code the same error is a bug, and is raised."""
    if installed_is_checkout():
        raise error
    return NotImplementedError(f"this commit's lenskern lacks what the benchmark uses: {error!r}")


def implementation_names(kernel: str) -> list[str]:
    """The implementations of ``kernel`` that can run here, the classes' parameter."""
    return list(manifest()[kernel])


def oracle_output(kernel: str, tier: str, inputs: dict) -> np.ndarray:
    """The oracle's output for ``kernel`` at ``tier``, as float64.

    Computed by the first process that asks and kept in a file keyed by the
    installed lenskern's code, so the reference's seconds are paid once per
    lenskern version, not once per implementation."""
    path = _cache_path(f"oracle-{kernel}-{tier}", sorted(_package().rglob("*.py")), ".npy")
    if path.exists():
        return np.load(path)
    (name,) = [name for name in implementation_names(kernel) if name.startswith("reference.")]
    reference = implementation(kernel, name)
    oracle = reference if skip_reason(kernel, name, tier) is None else registry.oracle(kernel)
    expected = np.asarray(flat(synchronize(oracle.function(**oracle.bind(inputs)))), dtype=np.float64)
    _write_atomically(path, lambda p: np.save(p, expected))
    return expected


def flat(result):
    """A streamed kernel's parts (a dict) as one vector, in their order, so
    its error against the oracle's is one number like any kernel's; any
    other result as it is."""
    if isinstance(result, dict):
        return np.concatenate([np.ravel(np.asarray(part, dtype=np.float64)) for part in result.values()])
    return result


def synchronize(result):
    """Wait until the devices of the backends loaded here have finished
    ``result``, so a timer stopped after this covers the work; each backend
    declares how (``registry.Backend.synchronize``), and a benchmark process
    loads the one it measures. Returns ``result``.

    The timed methods call this by this name: asv versions a benchmark by the
    source of its timed method, so renaming the call would restart every
    series' history."""
    if not hasattr(registry, "synchronizers"):
        return _wait_before_declarations(result)
    for wait in registry.synchronizers():
        wait(result)
    return result


def _wait_before_declarations(result):
    """The wait for a commit from before backends declared themselves
    (history runs): block on JAX arrays, synchronise a CUDA context Numba opened."""
    if hasattr(result, "block_until_ready"):
        result.block_until_ready()
    cuda = sys.modules.get("numba.cuda")
    if cuda is not None and cuda.is_available():
        cuda.synchronize()
    return result


def reset_peak_memory() -> None:
    """Restart the process's peak-RSS count from what is resident now (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:  # not Linux: a peak then also counts what came before
        pass


def _status_bytes(field: str) -> int:
    """A ``kB`` line of /proc/self/status (``VmRSS``, ``VmHWM``), in bytes."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {field}")


def _release_free_heap() -> None:
    """Hand the C heap's free pages back to the kernel (glibc's malloc_trim),
    so that a call reusing memory an earlier call freed counts it again as it
    touches it, instead of hiding its footprint in the allocator's free lists."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the peak may then read low
        pass


def own_peak_bytes(call) -> float:
    """The peak memory ``call()`` adds to what is resident before it: the
    high-water mark of the process's resident set during the call minus the
    resident set just before, both from /proc/self/status after the mark is
    reset (Linux). Resolution: one page (4 KiB); 0 means less than that.
    Counts every allocator alike (NumPy, Numba's runtime, XLA on the CPU);
    memory on a GPU is ``device.Device``'s business."""
    gc.collect()
    _release_free_heap()
    try:
        reset_peak_memory()
        before = _status_bytes("VmRSS")
        synchronize(call())
        return float(max(_status_bytes("VmHWM") - before, 0))
    except OSError as error:
        raise NotImplementedError(f"no peak memory here: {error}") from None


#: How a call is timed: wall seconds (asv's default), or with
#: ``LENSKERN_BENCH_TIMER=cpu`` the process's CPU seconds, which other jobs on
#: a shared machine do not inflate: the pinned one-thread comparison of
#: ``python -m lenskern.observatory compare`` sets it. CPU seconds miss a
#: GPU's work: compare GPU implementations with ``--threads all`` (wall time).
TIMER = time.process_time if os.environ.get("LENSKERN_BENCH_TIMER") == "cpu" else time.perf_counter


def one_thread() -> bool:
    return os.environ.get("LENSKERN_NUM_THREADS", "1") == "1"


def first_call_record(kernel: str, implementation_name: str, tier: str) -> Path:
    """Where the first Profile process of an implementation at a tier records
    its first call (seconds, and the Numba cache folder it compiled in), in
    the server's folder: one record per run and thread setting. Memory and
    error do not depend on whether the code was compiled or loaded."""
    folder = Path(_NUMBA_CACHES) / "first-calls"
    folder.mkdir(exist_ok=True)
    return folder / f"{kernel}-{implementation_name}-{tier}.json"


#: The key of the suite's setup_cache when the commit under test could not
#: build the inputs: why, for every benchmark to say.
LACKS = "lacks"


class _KernelBenchmark(abc.ABC):
    """A benchmark of every implementation of one kernel, at every tier.

    Abstract, so asv skips it: a subclass names its ``kernel`` and gets its
    parameters from the registry."""

    @property
    @abc.abstractmethod
    def kernel(self) -> str: ...

    param_names = ["implementation", "tier"]
    timeout = 600
    # JIT compilation happens in setup; each sample is then one warm call.
    warmup_time = 0
    repeat = (1, 5, 10.0)
    number = 0
    rounds = 1
    #: The profile classes measure what does not depend on the thread count.
    one_thread_only = False
    #: Whether the first call must compile (see the module docstring).
    compiles_afresh = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if isinstance(cls.__dict__.get("kernel"), str):
            cls.params = [implementation_names(cls.kernel), list(ALL_TIERS)]

    def setup_cache(self):
        # Defined once here, so asv keys one cache for the whole suite: every
        # class shares the inputs built by the first.
        try:
            return {tier: suite_inputs(tier) for tier in PROBLEM_TIERS}
        except (AttributeError, ImportError, KeyError, TypeError, ValueError) as error:
            # an older commit without this tier or an intermediate: each
            # benchmark is n/a there, instead of the whole suite failing
            return {LACKS: str(lacks_feature(error))}

    def setup(self, cache, implementation_name, tier):
        self.prepare(cache, self.kernel, implementation_name, tier)

    def prepare(self, cache, kernel, implementation_name, tier):
        """Inputs bound, skips decided, the call compiled and warmed."""
        skip_unselected_tier(tier)
        if LACKS in cache:
            raise NotImplementedError(cache[LACKS])
        try:
            self._prepare(cache, kernel, implementation_name, tier)
        except (AttributeError, ImportError) as error:
            raise lacks_feature(error) from None

    def _prepare(self, cache, kernel, implementation_name, tier):
        if self.one_thread_only and not one_thread():
            raise NotImplementedError("memory, compilation and error are measured on one thread")
        self.kernel = kernel
        record = first_call_record(kernel, implementation_name, tier) if self.compiles_afresh else None
        recorded = json.loads(record.read_text()) if record and record.exists() else None
        # before the backend loads, which decorates its Numba functions
        if not self.compiles_afresh:
            _use_numba_cache(_SHARED_NUMBA_CACHE)
        elif recorded:
            _use_numba_cache(recorded["numba_cache"])
        self.impl = implementation(kernel, implementation_name)
        if self.impl.backend == "reference" and (self.one_thread_only or not one_thread()):
            raise NotImplementedError("the reference is plain Python: timed on one thread only")
        in_examples = kernel in checkout_facts()["examples"]
        reason = skip_reason(kernel, implementation_name, tier)
        if reason:
            raise NotImplementedError(reason)
        inputs = examples(tier) if in_examples else cache[tier]["inputs"]
        missing = [name for name in self.impl.inputs if name not in inputs]
        if missing:
            raise NotImplementedError(f"{implementation_name} at {tier}: input(s) {missing} not built")
        self.inputs = self.impl.bind(inputs)
        self.all_inputs = inputs  # what the oracle of track_max_relative_error takes
        self.tier = tier
        if self.impl.backend == "reference":
            return  # nothing to compile: no warm call
        start = time.perf_counter()
        self.result = synchronize(self.impl.function(**self.inputs))
        self.first_call_seconds = time.perf_counter() - start
        self.result = flat(self.result)
        if recorded:
            self.first_call_seconds = recorded["seconds"]
        elif self.compiles_afresh:
            cache_folder = os.environ["NUMBA_CACHE_DIR"]
            state = {"seconds": self.first_call_seconds, "numba_cache": cache_folder}
            _write_atomically(record, lambda partial: partial.write_text(json.dumps(state)))


class KernelTime(_KernelBenchmark):
    """``time_call``: one warm call of each implementation, on every thread setting."""

    timer = staticmethod(TIMER)
    compiles_afresh = False

    def time_call(self, cache, implementation, tier):
        """One warm call, waited on until the result exists."""
        synchronize(self.impl.function(**self.inputs))


class KernelProfile(_KernelBenchmark):
    """Peak memory, first call and error of each implementation, on one thread."""

    one_thread_only = True

    def track_peak_bytes(self, cache, implementation, tier):
        """The peak memory one warm call adds to what was resident before it."""
        return own_peak_bytes(lambda: self.impl.function(**self.inputs))

    track_peak_bytes.unit = "bytes"

    def track_first_call_seconds(self, cache, implementation, tier):
        """The first call's seconds, JIT compilation included."""
        return self.first_call_seconds

    track_first_call_seconds.unit = "seconds"

    def track_max_relative_error(self, cache, implementation, tier):
        """max |got - oracle| / max |oracle|, oracle as the module docstring says."""
        expected = oracle_output(self.kernel, self.tier, self.all_inputs)
        got = np.asarray(self.result, dtype=np.float64)
        return float(np.max(np.abs(got - expected)) / max(np.max(np.abs(expected)), 1e-300))

    track_max_relative_error.unit = "relative"


def kernel_classes(module: str) -> dict[str, type]:
    """The benchmark classes of every kernel whose ``Kernel`` record (the
    checkout's registry) places it in the area of ``module``, the calling
    ``benchmarks.<area>``: ``<Kernel>`` (:class:`KernelTime`) and
    ``<Kernel>Profile`` (:class:`KernelProfile`), under the names the
    observatory reads results by, so a new kernel needs no class written.
    asv versions a benchmark by its methods' source, which these inherit:
    made here or written out, a class's series is the same."""
    facts = checkout_facts()
    classes = {}
    for kernel, name in facts["classes"].get(module.rpartition(".")[2], {}).items():
        for base, suffix in ((KernelTime, ""), (KernelProfile, facts["profile_suffix"])):
            qualname = name + suffix
            namespace = {"kernel": kernel, "__module__": module, "__qualname__": qualname,
                         "__doc__": f"``{kernel}``: {base.__doc__}"}  # fmt: skip
            classes[qualname] = type(qualname, (base,), namespace)
    return classes
