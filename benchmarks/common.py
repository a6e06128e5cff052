"""The asv suite's base classes, generated from lenskern's registry.

Every registered implementation of every kernel becomes a parameter of its
kernel's two benchmark classes, so an implementation added to a backend is
benchmarked with no code here. Per implementation and size tier:

- ``<Kernel>.time_call``, on each thread setting: one call, JIT compilation
  done in ``setup``; the result is blocked on inside the timed body (JAX
  dispatches asynchronously).

``<Kernel>Profile``, on one thread only (the thread count changes none of
these much, and each benchmark is a process of its own):

- ``peakmem_call`` and ``peakmem_resident``: asv's peak RSS of the process
  with and without the call. ``setup`` makes a warm call and then resets the
  kernel's high-water mark (``/proc/self/clear_refs``), so both start from
  what is resident: imports, inputs, compiled code. **The kernel's own peak
  memory is peakmem_call - peakmem_resident**: the report subtracts them.
- ``track_first_call_seconds``: the first call, compilation included.
- ``track_max_relative_error``: max |got - oracle| / max |oracle|, where the
  oracle is the reference when it runs in seconds at that size, else
  ``ORACLE[kernel]``, a NumPy implementation the property tests hold to the
  reference. The oracle's output is computed once per installed lenskern and
  kept in a file, not recomputed by every implementation's process.

The reference (plain Python, the executable spec) is timed on one thread
only, with no warm call: it compiles nothing and uses one core whatever the
setting; its memory, first call and error (zero by definition) are not
tracked.

Size tiers: ``small`` by default; set ``LENSKERN_BENCH_TIERS`` (comma list of
``tiny``, ``small``, ``seed-1core``, ``seed-gpu``, ``science``) for others.
An implementation whose estimated cost exceeds a minute per call at a tier
(five seconds at ``small``, the tier that promises every kernel in seconds)
is skipped there: asv shows n/a, and :func:`skip_reason` gives the estimate.
One ``setup_cache`` serves the whole suite: the inputs of every kernel are
built once per environment and loaded by each benchmark process.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

# Numba caches compiled kernels on disk (cache=True); a fresh cache directory
# per benchmark process makes track_first_call_seconds measure compilation,
# not a cache load. Set before Numba loads.
os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="lenskern-numba-")
atexit.register(shutil.rmtree, os.environ["NUMBA_CACHE_DIR"], ignore_errors=True)

import numpy as np  # noqa: E402, I001

import lenskern as lk  # noqa: E402  first: applies LENSKERN_NUM_THREADS before NumPy, Numba, JAX
from lenskern import registry  # noqa: E402

TIERS = tuple(t for t in os.environ.get("LENSKERN_BENCH_TIERS", "small").split(",") if t)
#: Elements per array of the seeds' small examples (the seed used 5,000,000).
EXAMPLE_SIZES = {"tiny": 10_000}
EXAMPLE_SIZE = 5_000_000

#: The oracle of track_max_relative_error where the reference is too slow.
ORACLE = {
    "w_tilde": "numpy.gemm",
    "w_offsets": "numpy.half",
    "w_tilde_from_offsets": "numpy.gather",
    "dirty_image": "numpy.gemv",
    "mapping_matrix": "numpy.scatter",
    "data_vector": "numpy.dense",
    "curvature_matrix": "numpy.dense",
    "regularization_matrix": "numpy.scatter",
    "reconstruction": "numpy.cholesky",
    "noise_normalization": "numpy.vector",
    "log_evidence": "numpy.offsets",
    "quadratic_formula": "numpy.vector",
    "fma": "numpy.vector",
    "fused_expression": "numpy.vector",
}

#: A call estimated to take longer than this is skipped at that tier: the
#: small tier promises every kernel in seconds, the larger ones a minute.
MAX_SECONDS = {"tiny": 5.0, "small": 5.0}
MAX_SECONDS_LARGE = 60.0
#: Rough single-core rates: interpreted Python operations, transcendental
#: calls (cos, sin, exp) and multiply-adds. Only the order of magnitude matters.
RATE = {"python": 3e6, "trig": 5e7, "flop": 5e9}


def _cost(kernel: str, algorithm: str, z: dict) -> tuple[float, str]:
    """(operations, kind) of one call: the cost lines of the docstrings."""
    m, k, s, b = z["M"], z["K"], z["S"], z["B"]
    table = (2 * z["Ny"] - 1) * (2 * z["Nx"] - 1)
    if algorithm == "nufft":  # spreading w^2 = 15^2 points per visibility, then one FFT
        points = k + (m if kernel == "dirty_image" else 0)
        gather = m * m if kernel == "w_tilde" else 0
        return 2 * 225 * points + 20 * 4 * table * np.log2(4 * table + 1) + gather, "flop"
    if kernel == "w_tilde":
        if algorithm == "gemm":
            return 2 * m * m * k, "flop"
        if algorithm == "offsets":
            return table * k / 2, "trig"
        return m * m * k / 2, "trig"
    if kernel == "w_offsets":
        return table * k, "trig"
    if kernel == "dirty_image":
        return 2 * m * k, "trig"
    if kernel == "curvature_matrix":
        if algorithm in ("dense", "loop"):
            return m * m * s, "flop"
        if algorithm == "direct":
            return m * m * b * b, "flop"
        return m * m * b, "flop"
    if kernel == "log_evidence":
        return (m * m * k / 2 if algorithm == "direct" else table * k / 2 + m * k), "trig"
    if kernel in ("reconstruction",):
        return s**3, "flop"
    if kernel == "w_tilde_from_offsets":
        return m * m, "flop"
    return m * s + k + s * s, "flop"


def estimated_seconds(impl: lk.Implementation, sizes: dict, tier: str) -> float:
    if impl.kernel in registry.EXAMPLES:
        n = EXAMPLE_SIZES.get(tier, EXAMPLE_SIZE)
        # ~5 floating-point operations per element (2 per weight for fma)
        operations, kind = n * (8 if impl.kernel == "fma" else 5), "flop"
    else:
        operations, kind = _cost(impl.kernel, impl.algorithm, sizes)
    if impl.backend == "reference":
        kind = "python"
    return operations / RATE[kind]


def skip_reason(impl: lk.Implementation, tier: str, sizes: dict) -> str | None:
    """Why ``impl`` is not benchmarked at ``tier`` (of these sizes), or None."""
    seconds = estimated_seconds(impl, sizes, tier)
    limit = MAX_SECONDS.get(tier, MAX_SECONDS_LARGE)
    if seconds > limit:
        return f"{impl.name} at {tier}: estimated {seconds:.0f} s per call (> {limit:.0f} s)"
    return None


def example_inputs(tier: str) -> dict:
    """The seeds' example arrays: quadratic coefficients with real roots, x >= 0."""
    n = EXAMPLE_SIZES.get(tier, EXAMPLE_SIZE)
    rng = np.random.default_rng(0)
    return dict(
        a=rng.uniform(5, 10, n),
        b=rng.uniform(10, 20, n),
        c=rng.uniform(-0.1, 0.1, n),
        x=rng.uniform(0, 10, n),
        weights=rng.uniform(-1, 1, 4),
        arrays=rng.uniform(-1, 1, (4, n)),
    )


#: Earlier kernels' outputs, in the order each can be built from the ones before.
INTERMEDIATES = (
    "w_tilde",
    "w_offsets",
    "dirty_image",
    "mapping_matrix",
    "data_vector",
    "curvature_matrix",
    "regularization_matrix",
)
#: W is built as an input only while it fits in this much memory (it is
#: 40 GiB at the science size, where only algorithms that never form it run).
W_BYTES_MAX = 2 << 30


def suite_inputs(tier: str) -> dict:
    """Everything the kernels' benchmarks take at a tier: the problem and
    every intermediate output (each from lenskern's recommended
    implementation), W only while it fits in W_BYTES_MAX. The examples'
    arrays (360 MB) are made in their own benchmarks' setup instead, so no
    other benchmark process loads them."""
    problem = lk.make_problem(tier)
    inputs = dict(problem)
    for name in INTERMEDIATES:
        if name == "w_tilde" and 8 * len(inputs["grid"]) ** 2 > W_BYTES_MAX:
            continue
        inputs[name] = lk.compute(name, **inputs)
    return {"inputs": inputs, "sizes": problem.sizes}


def _implementation(kernel: str, name: str) -> lk.Implementation:
    """One implementation, importing only its backend where lenskern can."""
    found = getattr(registry, "implementation", None)  # newer lenskern: lazy, one backend
    try:
        if found is not None:
            return found(kernel, name)
        return lk.implementations(kernel)[name]
    except (KeyError, ValueError) as error:
        raise NotImplementedError(f"{name}: {error}") from None


def implementation_names(kernel: str) -> list[str]:
    """The registered implementations of ``kernel``, the classes' parameter.

    Every benchmark process imports its module and so rebuilds this list;
    loading all backends for it costs each process over a second. The list is
    kept in a file keyed by the installed lenskern's backend files, so only
    the first process of an environment and commit pays.
    """
    spec = importlib.util.find_spec("lenskern")
    package = Path(next(iter(spec.submodule_search_locations)))
    stamp = [(p.name, p.stat().st_mtime_ns, p.stat().st_size)
             for p in sorted((package / "backends").glob("*.py"))]  # fmt: skip
    key = hashlib.sha256(json.dumps([str(package), stamp]).encode()).hexdigest()[:20]
    path = Path(tempfile.gettempdir()) / "lenskern-asv" / f"implementations-{key}.json"
    if path.exists():
        return json.loads(path.read_text())[kernel]
    names = {k: sorted(lk.implementations(k)) for k in registry.KERNELS + registry.EXAMPLES}
    path.parent.mkdir(exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}")
    partial.write_text(json.dumps(names))
    partial.replace(path)  # atomic: a concurrent reader sees all or nothing
    return names[kernel]


def _stamp(paths) -> str:
    """A digest of files' contents: the same code gives the same key."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:20]


def oracle_output(kernel: str, tier: str, sizes: dict, inputs: dict) -> np.ndarray:
    """The oracle's output for ``kernel`` at ``tier``, as float64.

    Computed by the first process that asks and kept in a file keyed by the
    code that makes it (problems, registry, validation, reference and NumPy
    backends), so the reference's seconds are paid once per lenskern version,
    not once per implementation."""
    reference = _implementation(kernel, next(
        name for name in implementation_names(kernel) if name.startswith("reference.")))  # fmt: skip
    cheap = skip_reason(reference, tier, sizes) is None
    oracle = reference if cheap else _implementation(kernel, ORACLE[kernel])
    package = Path(next(iter(importlib.util.find_spec("lenskern").submodule_search_locations)))
    files = [package / name for name in ("problems.py", "registry.py", "validate.py",
                                         "backends/reference.py", "backends/numpy.py")]  # fmt: skip
    key = f"{kernel}-{tier}-{oracle.name}-{_stamp(files)}"
    path = Path(tempfile.gettempdir()) / "lenskern-asv" / f"oracle-{key}.npy"
    if path.exists():
        return np.load(path)
    expected = np.asarray(block(oracle.function(**oracle.bind(inputs))), dtype=np.float64)
    path.parent.mkdir(exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.npy")
    np.save(partial, expected)
    partial.replace(path)  # atomic, as for the manifest
    return expected


def block(result):
    """Wait for an asynchronous result (JAX) so timing covers the work."""
    if hasattr(result, "block_until_ready"):
        result.block_until_ready()
    return result


def reset_peak_memory() -> None:
    """Restart the process's peak-RSS count from what is resident now (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:  # not Linux: peakmem_call then also counts setup's warm call
        pass


def one_thread() -> bool:
    return os.environ.get("LENSKERN_NUM_THREADS", "1") == "1"


class _KernelBenchmark:  # underscore: asv discovers only the generated subclasses
    """Base of the generated classes; ``kernel`` is set by :func:`generate`."""

    kernel: str
    param_names = ["implementation", "tier"]
    timeout = 600
    # JIT compilation happens in setup; each sample is then one warm call.
    warmup_time = 0
    repeat = (1, 5, 10.0)
    number = 0
    rounds = 1
    #: The profile classes measure what does not depend on the thread count.
    one_thread_only = False

    def setup_cache(self):
        # Defined once here, so asv keys one cache for the whole suite: every
        # class shares the inputs built by the first.
        return {tier: suite_inputs(tier) for tier in TIERS}

    def setup(self, cache, implementation, tier):
        if self.one_thread_only and not one_thread():
            raise NotImplementedError("memory, compilation and error are measured on one thread")
        self.impl = _implementation(self.kernel, implementation)
        if self.impl.backend == "reference" and (self.one_thread_only or not one_thread()):
            raise NotImplementedError("the reference is plain Python: timed on one thread only")
        self.sizes = cache[tier]["sizes"]
        reason = skip_reason(self.impl, tier, self.sizes)
        if reason:
            raise NotImplementedError(reason)
        inputs = example_inputs(tier) if self.kernel in registry.EXAMPLES else cache[tier]["inputs"]
        missing = [name for name in self.impl.inputs if name not in inputs]
        if missing:
            raise NotImplementedError(f"{implementation} at {tier}: input(s) {missing} not built")
        self.inputs = self.impl.bind(inputs)
        self.all_inputs = inputs  # what the oracle of track_max_relative_error takes
        self.tier = tier
        if self.impl.backend == "reference":
            return  # nothing to compile: no warm call
        start = time.perf_counter()
        self.result = block(self.impl.function(**self.inputs))
        self.first_call_seconds = time.perf_counter() - start
        reset_peak_memory()


class _Time(_KernelBenchmark):
    def time_call(self, cache, implementation, tier):
        """One warm call, blocked on until the result exists."""
        block(self.impl.function(**self.inputs))


class _Profile(_KernelBenchmark):
    one_thread_only = True

    def peakmem_call(self, cache, implementation, tier):
        """Peak RSS with one warm call; subtract peakmem_resident for the kernel's own."""
        block(self.impl.function(**self.inputs))

    def peakmem_resident(self, cache, implementation, tier):
        """Peak RSS without the call: imports, inputs and compiled code."""

    def track_first_call_seconds(self, cache, implementation, tier):
        """The first call's seconds, JIT compilation included."""
        return self.first_call_seconds

    track_first_call_seconds.unit = "seconds"

    def track_max_relative_error(self, cache, implementation, tier):
        """max |got - oracle| / max |oracle|, oracle as the module docstring says."""
        expected = oracle_output(self.kernel, tier, self.sizes, self.all_inputs)
        got = np.asarray(self.result, dtype=np.float64)
        return float(np.max(np.abs(got - expected)) / max(np.max(np.abs(expected)), 1e-300))

    track_max_relative_error.unit = "relative"


def generate(kernels: tuple[str, ...], namespace: dict) -> None:
    """Add two benchmark classes per kernel to a benchmark module's namespace:
    ``<Kernel>`` (time, on every thread setting) and ``<Kernel>Profile``
    (memory, first call and error, on one thread)."""
    for kernel in kernels:
        name = "".join(part.title() for part in kernel.split("_"))
        for suffix, base in (("", _Time), ("Profile", _Profile)):
            namespace[name + suffix] = type(
                name + suffix,
                (base,),
                {
                    "kernel": kernel,
                    "params": [implementation_names(kernel), list(TIERS)],
                    "__module__": namespace["__name__"],
                    "__doc__": f"{kernel}: every registered implementation (benchmarks/common.py).",
                },
            )
