"""The numba_cuda backend: missing with its reason where there is no GPU,
every kernel checked against the reference on Numba's CUDA simulator, and
every kernel compiled for a real GPU where the CUDA toolkit is installed.

The simulator runs in a subprocess (``tests/backends/simulated_cuda.py``): it must be
switched on before numba.cuda is first imported, and this session's NumPy,
Numba and JAX tests must not run under it. It runs the kernels as Python, so
it cannot tell whether Numba's CUDA compiler accepts them; compiling each to
PTX, with the argument types of its simulated launches, can.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import lenskern as lk
from conftest import nested_pytest
from lenskern import registry

ROOT = Path(__file__).resolve().parents[2]

#: The compute capability the kernels are compiled for without a GPU: the
#: A100's (float64 atomics need 6.0 or later).
COMPUTE_CAPABILITY = (8, 0)


def test_without_a_gpu_the_backend_is_missing_with_its_reason():
    """No GPU and no simulator: every kernel lists numba_cuda as missing, with
    the module's reason, and none of its implementations is runnable; its
    kernels are still declared (the README's table lists them). With a GPU
    they are registered for it instead."""
    from numba import cuda

    from lenskern.backends import numba_cuda

    for kernel in lk.NAMES:
        found = lk.implementations(kernel)
        mine = [impl for impl in found.values() if impl.backend == "numba_cuda"]
        if kernel in numba_cuda.BACKEND.gaps:
            assert not registry.declared(kernel, "numba_cuda") and "numba_cuda" in found.missing, kernel
            continue
        assert registry.declared(kernel, "numba_cuda"), kernel
        if cuda.is_available():
            assert mine and all(impl.device == "gpu" for impl in mine), kernel
        else:
            assert found.missing["numba_cuda"] == numba_cuda.unavailable("gpu"), kernel
            assert found.missing["numba_cuda"] == "numba.cuda sees no CUDA GPU here"
            assert not mine, kernel


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """tests/backends/simulated_cuda.py (and the registry's checks of names,
    docstrings, cost models and gaps, which a GPU machine would run on this
    backend) under NUMBA_ENABLE_CUDASIM=1: (output, exit code, the launches'
    argument types by kernel)."""
    launches = tmp_path_factory.mktemp("cuda") / "launches.json"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", LENSKERN_CUDA_LAUNCHES=str(launches))
    modules = ["tests/backends/simulated_cuda.py", "tests/contract/test_registry.py"]
    only = ["-k", "not test_registry or numba_cuda or cost_model or recommended_names"]
    result = subprocess.run(
        nested_pytest(sys.executable, *modules, *only),
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    recorded = json.loads(launches.read_text()) if launches.exists() else {}
    return result.stdout + result.stderr, result.returncode, recorded


def test_every_kernel_agrees_with_the_reference_on_the_simulator(simulated):
    """Every numba_cuda implementation against the reference on the edge
    problems, drawn problems and the examples' inputs."""
    output, returncode, _ = simulated
    assert returncode == 0, output[-6000:]
    summary = output.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary, summary


def _numba_type(name: str):
    from numba import types

    array = re.fullmatch(r"array\((\w+), (\d)d, C\)", name)
    if array:
        return types.Array(getattr(types, array[1]), int(array[2]), "C")
    return getattr(types, name)


def test_every_kernel_compiles_for_the_gpu(simulated, monkeypatch):
    """Each kernel of the module, launched on the simulator, compiles to PTX
    with Numba's CUDA compiler for the argument types it was launched with."""
    from numba import cuda
    from numba.cuda import dispatcher
    from numba.cuda.cudadrv import nvvm

    from lenskern.backends import numba_cuda

    if not nvvm.is_available():
        pytest.skip("no CUDA toolkit (NVVM) to compile with")
    _, _, launched = simulated
    dispatchers = {
        name: v for name, v in vars(numba_cuda).items() if isinstance(v, dispatcher.CUDADispatcher)
    }
    kernels = {name for name, v in dispatchers.items() if not v.targetoptions["device"]}
    never = kernels - {name for name, signatures in launched.items() if signatures}
    assert not never, f"kernels the simulator never launched: {sorted(never)}"
    if not cuda.is_available():
        # A kernel's calls to device functions are compiled for the current
        # device's compute capability: without a GPU, name one.
        device = SimpleNamespace(compute_capability=COMPUTE_CAPABILITY)
        monkeypatch.setattr(dispatcher, "get_current_device", lambda: device)
    for name, signatures in sorted(launched.items()):
        for signature in signatures:
            argument_types = tuple(_numba_type(t) for t in signature)
            ptx, _ = cuda.compile_ptx(
                getattr(numba_cuda, name).py_func, argument_types, cc=COMPUTE_CAPABILITY
            )
            assert ".entry" in ptx, name
