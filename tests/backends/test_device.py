"""The parts of a device call that the GPU benchmarks time apart (inputs to
the device, the kernel, the result back) compose to the whole call; checked
on JAX's CPU device, which takes the same path as a GPU."""

from __future__ import annotations

import numpy as np
import pytest

import lenskern as lk
from conftest import with_intermediates
from lenskern.backends.jax import device as jax_device

INPUTS = with_intermediates(lk.make_problem("tiny"))
JAX = [impl for k in lk.NAMES for impl in lk.implementations(k).values() if impl.backend == "jax"]


@pytest.mark.parametrize(
    "impl", [i for i in JAX if i.kernel in lk.KERNELS], ids=lambda i: f"{i.kernel}-{i.name}"
)
def test_device_parts_compose_to_the_call(impl):
    parts = jax_device.device_parts(impl.function, "cpu")
    if parts is None:
        assert impl.algorithm == "sharded"  # places its inputs over the mesh itself
        return
    to_device, call, to_host = parts
    got = to_host(call(to_device(impl.bind(INPUTS))).block_until_ready())
    expected = impl(**INPUTS)
    assert np.asarray(got).dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
