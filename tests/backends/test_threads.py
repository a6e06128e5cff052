"""LENSKERN_NUM_THREADS=1 really means one thread: CPU time over wall time."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lenskern import threads

PROBE = """
import time
import lenskern as lk
import numpy as np
from lenskern import registry

x = np.random.default_rng(0).uniform(0, 10, 4_000_000)
a = np.random.default_rng(1).normal(size=(900, 900))
work = {
    "numba": lambda f=lk.implementations("fused_expression")["numba.parallel"].function: f(x),
    "jax": lambda f=lk.implementations("fused_expression")["jax.jit"].function: f(x),
    "blas": lambda: a @ a,
}
for name, call in work.items():
    call()
    wall, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < 0.6:
        call()
    print(name, (time.process_time() - cpu) / (time.perf_counter() - wall))
"""


def cpu_over_wall(value: str) -> dict[str, float]:
    env = dict(os.environ, LENSKERN_NUM_THREADS=value)
    env.pop("XLA_FLAGS", None)
    output = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout
    return {name: float(ratio) for name, ratio in (line.split() for line in output.splitlines())}


def test_one_thread_is_one_thread():
    ratios = cpu_over_wall("1")
    assert set(ratios) == {"numba", "jax", "blas"}
    for name, ratio in ratios.items():
        assert ratio < 1.15, f"{name} used {ratio:.2f} CPUs with LENSKERN_NUM_THREADS=1"


POOLS = """
import lenskern, numexpr, ducc0
print(numexpr.get_num_threads(), numexpr.MAX_THREADS, ducc0.misc.thread_pool_size())
"""


def test_one_thread_reaches_numexpr_and_ducc0():
    """numexpr and ducc0 size their pools from their own variables when they
    load: LENSKERN_NUM_THREADS=1 must have set those first."""
    pytest.importorskip("numexpr")
    pytest.importorskip("ducc0")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMEXPR_", "DUCC0_", "OMP_"))}
    env["LENSKERN_NUM_THREADS"] = "1"
    output = subprocess.run(
        [sys.executable, "-c", POOLS], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert output.split() == ["1", "1", "1"]


@pytest.mark.parametrize(
    ("value", "expected"), [("1", 1), ("all", len(threads.available_cpus())), ("999", None)]
)
def test_requested_thread_count(value, expected):
    count = threads.requested(value)
    assert count == (expected if expected is not None else len(threads.available_cpus()))


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_bad_thread_count_is_named(value):
    with pytest.raises(ValueError, match="LENSKERN_NUM_THREADS"):
        threads.requested(value)


@pytest.mark.parametrize(("preset", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_idle_openmp_threads_sleep_unless_the_user_says(preset, expected):
    env = dict(os.environ, LENSKERN_NUM_THREADS="all")
    env.pop("OMP_WAIT_POLICY", None)
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    probe = "import os, lenskern; print(os.environ.get('OMP_WAIT_POLICY'))"
    output = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == (expected if len(threads.available_cpus()) > 1 else str(preset))
