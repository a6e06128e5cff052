"""Every numba_cuda implementation against the reference, on Numba's CUDA simulator.

``tests/backends/test_cuda.py`` runs this module in a subprocess with
``NUMBA_ENABLE_CUDASIM=1``: the simulator must be chosen before numba.cuda is
first imported, and the rest of the suite must not run under it. A plain
pytest run does not collect it (its name does not start with ``test_``).

The simulator runs every CUDA thread of a block as a Python thread, so these
are the kernels' own code paths (grid-stride loops, shared memory, barriers,
atomics) with the backend's simulator launch sizes (a few threads and blocks,
so every stride and tile boundary is crossed at these small sizes).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lenskern as lk
from conftest import assert_agrees, problems, reference_impl, with_intermediates
from lenskern import registry
from lenskern.problems import make_examples

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("run by test_cuda.py with NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)

import numba  # noqa: E402
from numba.cuda.simulator import kernel as simulated_kernel  # noqa: E402  only under the simulator
from numba.cuda.simulator.cudadrv import devicearray  # noqa: E402

# At each barrier a manager thread polls the block's threads; a shorter GIL
# switch interval than the default 5 ms hands over sooner (about 4x faster
# barriers here), which is most of these tests' time.
sys.setswitchinterval(5e-4)

CUDA_IMPLS = [
    registry.implementation(kernel, f"numba_cuda.{algorithm}")
    for kernel in lk.NAMES
    for algorithm in registry.declared(kernel, "numba_cuda")
]
KERNEL_IMPLS = [impl for impl in CUDA_IMPLS if impl.kernel in lk.KERNELS]
EXAMPLE_IMPLS = [impl for impl in CUDA_IMPLS if impl.kernel in lk.EXAMPLES]


def _ids(impls):
    return [f"{i.kernel}-{i.name}" for i in impls]


def _type_name(argument) -> str:
    """The Numba type a real launch would give ``argument``; a host array is
    an error: every transfer is meant to be explicit (cuda.to_device)."""
    if isinstance(argument, np.ndarray):
        raise TypeError("a host array passed to a kernel: transfers must be explicit")
    return str(numba.typeof(argument._ary if isinstance(argument, devicearray.FakeCUDAArray) else argument))


@pytest.fixture(scope="session", autouse=True)
def launches():
    """Every kernel launch's argument types; written as JSON to the file that
    LENSKERN_CUDA_LAUNCHES names, so test_cuda.py can compile each kernel for
    a real GPU with the types it was run with here."""
    seen: dict[str, set] = {}
    call = simulated_kernel.FakeCUDAKernel.__call__

    def recording(self, *args):
        if not self._device:
            types = tuple(_type_name(a) for a in args)
            seen.setdefault(self.fn.__name__, set()).add(types)
        return call(self, *args)

    simulated_kernel.FakeCUDAKernel.__call__ = recording
    yield seen
    simulated_kernel.FakeCUDAKernel.__call__ = call
    if os.environ.get("LENSKERN_CUDA_LAUNCHES"):
        with open(os.environ["LENSKERN_CUDA_LAUNCHES"], "w") as file:
            json.dump({name: sorted(types) for name, types in seen.items()}, file, indent=1)


@pytest.fixture(autouse=True)
def no_negative_indexes(monkeypatch):
    """Device arrays that refuse a negative index, as a -1 padding slot would
    give. NumPy (and Numba's compiled indexing) would wrap it to the last
    element: a silent wrong answer the simulator should show."""
    array = devicearray.FakeWithinKernelCUDAArray
    get, put = array.__getitem__, array.__setitem__

    def check(index):
        for part in index if isinstance(index, tuple) else (index,):
            if isinstance(part, int | np.integer) and part < 0:
                raise IndexError(f"negative index {index} into a device array")

    def checked_get(self, index):
        check(index)
        return get(self, index)

    def checked_put(self, index, value):
        check(index)
        put(self, index, value)

    monkeypatch.setattr(array, "__getitem__", checked_get)
    monkeypatch.setattr(array, "__setitem__", checked_put)


def test_available_on_the_simulator_for_every_kernel():
    """The simulator counts as a device: every kernel but the gaps it declares
    (the streamed NUFFT) has a numba_cuda implementation, registered for the
    GPU, with a cost of a compiled kind."""
    from lenskern.backends import numba_cuda

    for kernel in [k for k in lk.NAMES if k not in numba_cuda.BACKEND.gaps]:
        found = lk.implementations(kernel)
        assert "numba_cuda" not in found.missing, found.missing.get("numba_cuda")
        mine = [impl for impl in found.values() if impl.backend == "numba_cuda"]
        assert mine, kernel
        for impl in mine:
            assert impl.device == "gpu" and impl.cost.kind in ("flop", "trig"), impl.name


@pytest.mark.parametrize("impl", KERNEL_IMPLS, ids=_ids(KERNEL_IMPLS))
def test_agrees_on_edge_sizes(impl, edge_inputs):
    expected = reference_impl(impl.kernel)(**edge_inputs)
    assert_agrees(impl.kernel, impl(**edge_inputs), expected, edge_inputs)


@settings(max_examples=8)
@given(problem=problems())
def test_agrees_on_drawn_problems(problem):
    """Each drawn problem through every CUDA kernel (the reference's
    intermediates are computed once per problem)."""
    inputs = with_intermediates(problem)
    for impl in KERNEL_IMPLS:
        expected = reference_impl(impl.kernel)(**inputs)
        try:
            assert_agrees(impl.kernel, impl(**inputs), expected, inputs)
        except AssertionError as error:
            raise AssertionError(f"{impl.name}: {error}") from None


def test_symmetric_outputs_are_exactly_symmetric(edge_inputs):
    """F = G + G^T and H row by row: symmetric to the last bit; the offset
    table is even to the last bit (each entry and its mirror share a writer)."""
    for kernel in ("curvature_matrix", "regularization_matrix"):
        for impl in KERNEL_IMPLS:
            if impl.kernel == kernel:
                matrix = impl(**edge_inputs)
                np.testing.assert_array_equal(matrix, matrix.T, err_msg=impl.name)
    table = registry.implementation("w_offsets", "numba_cuda.direct")(**edge_inputs)
    np.testing.assert_array_equal(table, table[::-1, ::-1])


def test_duplicate_slots_and_fully_padded_rows():
    """A pixel mapping twice to one source pixel (T_is sums both weights) and
    pixels with every slot padded, which the generator never makes."""
    problem = dict(lk.make_problem(dict(shape_native=(3, 5), K=6, S=4, B=3, P=2), seed=3))
    indexes = problem["pix_indexes"].copy()
    weights = problem["pix_weights"].copy()
    indexes[0] = [2, 2, 1]
    weights[0] = [0.25, 0.5, 0.25]
    indexes[1], weights[1] = -1, 0.0
    problem.update(pix_indexes=indexes, pix_weights=weights)
    inputs = with_intermediates(problem)
    for impl in KERNEL_IMPLS:
        expected = reference_impl(impl.kernel)(**inputs)
        assert_agrees(impl.kernel, impl(**inputs), expected, inputs)


def test_not_positive_definite_raises():
    impl = registry.implementation("reconstruction", "numba_cuda.cholesky")
    with pytest.raises(np.linalg.LinAlgError):
        impl(curvature_matrix=-2 * np.eye(3), regularization_matrix=np.eye(3), data_vector=np.ones(3))


@st.composite
def example_inputs(draw) -> dict:
    n = draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    w_count = draw(st.integers(1, 5))
    return dict(
        a=rng.uniform(5, 10, n),
        b=rng.uniform(10, 20, n),
        c=rng.uniform(-0.1, 0.1, n),
        x=rng.uniform(0, 10, n),
        weights=rng.normal(size=w_count),
        arrays=rng.normal(size=(w_count, n)),
    )


@pytest.mark.parametrize("impl", EXAMPLE_IMPLS, ids=_ids(EXAMPLE_IMPLS))
@settings(max_examples=5)
@given(inputs=example_inputs())
def test_examples_agree_with_reference(impl, inputs):
    assert_agrees(impl.kernel, impl(**inputs), reference_impl(impl.kernel)(**inputs))


PARTS_INPUTS = {**with_intermediates(lk.make_problem("tiny")), **make_examples("tiny")}


@pytest.mark.parametrize("impl", CUDA_IMPLS, ids=_ids(CUDA_IMPLS))
def test_device_parts_compose_to_the_call(impl):
    """Placed inputs, the launches and the copy back (what the device
    benchmarks time apart) give the whole call's answer, bit for bit, and
    the launches leave their result on the device."""
    from lenskern.backends import numba_cuda

    parts = registry.declaration("numba_cuda").device_parts(impl.function, impl.device)
    assert parts is not None, impl.name
    to_device, call, to_host = parts
    result = call(to_device(impl.bind(PARTS_INPUTS)))
    assert not isinstance(result, np.ndarray | float), "the kernel part returns its result on the device"
    numba_cuda.cuda.synchronize()
    expected = impl(**PARTS_INPUTS)
    got = to_host(result)
    assert type(got) is type(expected)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def test_memory_counts_the_arrays_of_a_call():
    """The module's count of device memory: a call's inputs and output at its
    peak, and nothing left once the arrays are released."""
    from lenskern.backends import numba_cuda

    memory = numba_cuda.MEMORY
    before = memory.in_use
    impl = registry.implementation("fused_expression", "numba_cuda.grid")
    to_device, call, to_host = impl.function.parts
    x = np.linspace(0.0, 3.0, 37)
    placed = to_device({"x": x})
    assert memory.reset_peak() == before + x.nbytes
    result = call(placed)
    assert memory.peak == before + 2 * x.nbytes  # x and the output, nothing else
    to_host(result)
    del placed, result
    assert memory.in_use == before


@pytest.mark.parametrize("impl", KERNEL_IMPLS, ids=_ids(KERNEL_IMPLS))
def test_memory_peak_of_every_call(impl):
    """Every kernel's device arrays are counted (a peak at least its output's
    bytes, with the inputs it placed) and all released when the call returns."""
    from lenskern.backends import numba_cuda

    memory = numba_cuda.MEMORY
    before = memory.in_use
    memory.reset_peak()
    result = impl(**PARTS_INPUTS)
    assert memory.peak >= before + np.asarray(result).nbytes + 8, impl.name
    assert memory.in_use == before, f"{impl.name}: {memory.in_use - before} bytes still counted"
