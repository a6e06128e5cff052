"""Pin lenskern's thread count before Numba, XLA, BLAS, numexpr and ducc0 load.

``LENSKERN_NUM_THREADS`` (``1``, ``all``, or a number) is read once, when
lenskern is imported; unset, nothing is changed. Each library sizes its
thread pool when it loads, so this must run first: ``import lenskern`` before
NumPy, Numba or JAX. The CPU affinity mask is narrowed too, so a library
that ignores its thread flag, or a BLAS loaded before lenskern, still runs on
that many cores (tests/backends/test_threads.py holds Numba, JAX and BLAS to one
CPU's time with LENSKERN_NUM_THREADS=1). This module
imports nothing but the standard library.
"""

from __future__ import annotations

import os

VARIABLE = "LENSKERN_NUM_THREADS"
#: Variables read by each library's thread pool when it loads.
POOL_VARIABLES = (
    "NUMBA_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    # numexpr sizes its pool from the first and starts with the second;
    # ducc0 reads its own variable before OMP_NUM_THREADS.
    "NUMEXPR_MAX_THREADS",
    "NUMEXPR_NUM_THREADS",
    "DUCC0_NUM_THREADS",
)
_XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def available_cpus() -> list[int]:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def requested(value: str | None = None) -> int | None:
    """The thread count ``LENSKERN_NUM_THREADS`` asks for, or None if unset."""
    value = os.environ.get(VARIABLE) if value is None else value
    if value is None or value.strip() == "":
        return None
    cpus = len(available_cpus())
    if value.strip().lower() == "all":
        return cpus
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"{VARIABLE}: expected 'all' or a positive integer, got {value!r}") from None
    if count < 1:
        raise ValueError(f"{VARIABLE}: expected 'all' or a positive integer, got {value!r}")
    return min(count, cpus)


def apply_from_environment() -> int | None:
    """Apply ``LENSKERN_NUM_THREADS``; return the thread count, or None if unset."""
    count = requested()
    if count is None:
        return None
    for name in POOL_VARIABLES:
        os.environ[name] = str(count)
    if count == 1 and "intra_op_parallelism_threads" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _XLA_ONE_THREAD).strip()
    # Idle OpenMP threads (Numba's omp layer, FINUFFT) sleep instead of
    # spinning, so they do not take the cores a BLAS or the next Numba region
    # needs (the likelihood's tiled curvature runs between two LAPACK calls).
    # A user's own setting is kept.
    if count > 1:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if hasattr(os, "sched_setaffinity"):
        # A window of `count` CPUs that starts where the process id says:
        # concurrent one-thread processes (asv's benchmarks, a test suite)
        # spread over the CPUs instead of all queueing on the first one.
        cpus = available_cpus()
        start = os.getpid() % len(cpus)
        os.sched_setaffinity(0, [cpus[(start + i) % len(cpus)] for i in range(count)])
    return count
