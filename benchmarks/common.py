"""The asv suite's base class, generated from lenskern's registry.

Every registered implementation of every kernel becomes a parameter of its
kernel's benchmark class, so an implementation added to a backend is
benchmarked with no code here. Each class measures, per implementation and
size tier:

- ``time_call``: one call, JIT compilation done in ``setup``; the result is
  blocked on inside the timed body (JAX dispatches asynchronously).
- ``peakmem_call`` and ``peakmem_resident``: asv's peak RSS of the process
  with and without the call. ``setup`` makes a warm call and then resets the
  kernel's high-water mark (``/proc/self/clear_refs``), so both start from
  what is resident: imports, inputs, compiled code. **The kernel's own peak
  memory is peakmem_call - peakmem_resident**: the report subtracts them.
- ``track_first_call_seconds``: the first call, compilation included.
- ``track_max_relative_error``: max |got - oracle| / max |oracle|, where the
  oracle is the reference when it runs in seconds at that size, else
  ``ORACLE[kernel]``, a NumPy implementation the property tests hold to the
  reference.

Size tiers: ``small`` by default; set ``LENSKERN_BENCH_TIERS`` (comma list of
``tiny``, ``small``, ``seed-1core``, ``seed-gpu``, ``science``) for others.
An implementation whose estimated cost exceeds a minute per call at a tier is
skipped there (asv shows n/a) and listed by :func:`skip_reason`.
"""

from __future__ import annotations

import os
import tempfile
import time

# Numba caches compiled kernels on disk (cache=True); a fresh cache directory
# per benchmark process makes track_first_call_seconds measure compilation,
# not a cache load. Set before Numba loads.
os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="lenskern-numba-")

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


def estimated_seconds(impl: lk.Implementation, sizes: dict) -> float:
    operations, kind = _cost(impl.kernel, impl.algorithm, sizes)
    if impl.backend == "reference":
        kind = "python"
    return operations / RATE[kind]


def skip_reason(impl: lk.Implementation, tier: str) -> str | None:
    """Why ``impl`` is not benchmarked at ``tier``, or None."""
    if impl.kernel in registry.EXAMPLES:
        return None
    seconds = estimated_seconds(impl, problem_sizes(tier))
    limit = MAX_SECONDS.get(tier, MAX_SECONDS_LARGE)
    if seconds > limit:
        return f"{impl.name} at {tier}: estimated {seconds:.0f} s per call (> {limit:.0f} s)"
    return None


_SIZES: dict[str, dict] = {}


def problem_sizes(tier: str) -> dict:
    """M, K, S, B, Ny, Nx of a tier, without building its arrays twice."""
    if tier not in _SIZES:
        _SIZES[tier] = lk.make_problem({"preset": tier, "K": 1}).sizes
        _SIZES[tier]["K"] = lk.PRESETS[tier]["K"]
    return _SIZES[tier]


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


def kernel_inputs(kernel: str, tier: str) -> dict:
    """A tier's problem plus the earlier kernels' outputs that this kernel's
    implementations take, each from lenskern's recommended implementation."""
    if kernel in registry.EXAMPLES:
        return example_inputs(tier)
    inputs = dict(lk.make_problem(tier))
    wanted = {name for impl in lk.implementations(kernel).values() for name in impl.inputs}
    if "curvature_matrix" in wanted:
        wanted.add("w_offsets")  # what the curvature is built from when W is not
    if "data_vector" in wanted:
        wanted.add("dirty_image")
    for name in INTERMEDIATES:
        too_big = name == "w_tilde" and 8 * len(inputs["grid"]) ** 2 > W_BYTES_MAX
        if name in wanted and not too_big:
            inputs[name] = lk.compute(name, **inputs)
    return inputs


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


class _KernelBenchmark:  # underscore: asv discovers only the generated subclasses
    """Base of the generated classes; ``kernel`` is set by :func:`generate`."""

    kernel: str
    param_names = ["implementation", "tier"]
    timeout = 600
    # JIT compilation happens in setup; each sample is then one warm call.
    warmup_time = 0
    repeat = (1, 5, 10.0)
    number = 0

    def setup_cache(self):
        return {tier: kernel_inputs(self.kernel, tier) for tier in TIERS}

    def setup(self, cache, implementation, tier):
        found = lk.implementations(self.kernel)
        if implementation not in found:
            raise NotImplementedError(
                f"{implementation}: {found.missing.get(implementation.split('.')[0], 'absent')}"
            )
        self.impl = found[implementation]
        reason = skip_reason(self.impl, tier)
        if reason:
            raise NotImplementedError(reason)
        missing = [name for name in self.impl.inputs if name not in cache[tier]]
        if missing:
            raise NotImplementedError(f"{implementation} at {tier}: input(s) {missing} not built")
        self.inputs = self.impl.bind(cache[tier])
        start = time.perf_counter()
        self.result = block(self.impl.function(**self.inputs))
        self.first_call_seconds = time.perf_counter() - start
        self.tier = tier
        reset_peak_memory()

    def time_call(self, cache, implementation, tier):
        """One warm call, blocked on until the result exists."""
        block(self.impl.function(**self.inputs))

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
        found = lk.implementations(self.kernel)
        reference = next(i for i in found.values() if i.backend == "reference")
        oracle = reference if skip_reason(reference, tier) is None else found[ORACLE[self.kernel]]
        if self.kernel in registry.EXAMPLES and tier != "tiny":
            oracle = found[ORACLE[self.kernel]]
        expected = np.asarray(oracle(**cache[tier]), dtype=np.float64)
        got = np.asarray(self.result, dtype=np.float64)
        return float(np.max(np.abs(got - expected)) / max(np.max(np.abs(expected)), 1e-300))

    track_max_relative_error.unit = "relative"


def generate(kernels: tuple[str, ...], namespace: dict) -> None:
    """Add one benchmark class per kernel to a benchmark module's namespace."""
    for kernel in kernels:
        name = "".join(part.title() for part in kernel.split("_"))
        cls = type(
            name,
            (_KernelBenchmark,),
            {
                "kernel": kernel,
                "params": [sorted(lk.implementations(kernel)), list(TIERS)],
                "__module__": namespace["__name__"],
                "__doc__": f"{kernel}: every registered implementation (see benchmarks/common.py).",
            },
        )
        namespace[name] = cls
