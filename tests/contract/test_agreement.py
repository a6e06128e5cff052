"""Every registered implementation agrees with the reference (SPEC section 3)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lenskern as lk
from conftest import (
    all_implementations,
    assert_agrees,
    problems,
    reference_impl,
    with_intermediates,
)

KERNEL_IMPLS = [i for i in all_implementations(lk.KERNELS + lk.STREAMED) if i.backend != "reference"]
EXAMPLE_IMPLS = [i for i in all_implementations(lk.EXAMPLES) if i.backend != "reference"]


def _ids(impls):
    return [f"{i.kernel}-{i.name}" for i in impls]


@pytest.mark.parametrize("impl", KERNEL_IMPLS, ids=_ids(KERNEL_IMPLS))
@given(problem=problems())
def test_agrees_with_reference(impl, problem):
    inputs = with_intermediates(problem)
    assert_agrees(impl.kernel, impl(**inputs), reference_impl(impl.kernel)(**inputs), inputs)


@pytest.mark.parametrize("impl", KERNEL_IMPLS, ids=_ids(KERNEL_IMPLS))
def test_agrees_on_edge_sizes(impl, edge_inputs):
    expected = reference_impl(impl.kernel)(**edge_inputs)
    assert_agrees(impl.kernel, impl(**edge_inputs), expected, edge_inputs)


@st.composite
def example_inputs(draw) -> dict:
    n = draw(st.integers(1, 64))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    a = rng.uniform(5, 10, n)
    return dict(
        a=a,
        b=rng.uniform(10, 20, n),
        c=rng.uniform(-0.1, 0.1, n),
        x=rng.uniform(0, 10, n),
        weights=rng.normal(size=draw(st.integers(1, 5))),
        arrays=None,
        n=n,
        rng=rng,
    )


@pytest.mark.parametrize("impl", EXAMPLE_IMPLS, ids=_ids(EXAMPLE_IMPLS))
@given(drawn=example_inputs())
def test_examples_agree_with_reference(impl, drawn):
    inputs = {k: drawn[k] for k in ("a", "b", "c", "x", "weights")}
    inputs["arrays"] = drawn["rng"].normal(size=(len(inputs["weights"]), drawn["n"]))
    assert_agrees(impl.kernel, impl(**inputs), reference_impl(impl.kernel)(**inputs))


def test_vectorised_sin_and_exp_keep_libm_accuracy():
    """numba.vectorised's polynomial sin and exp, element by element against
    libm over the whole range validation admits: the polynomial path
    (|x| <= 708), the libm fallbacks beyond it (exp past 708, sin past 1e5),
    and lengths that end mid-chunk and mid-block."""
    import math

    impl = lk.implementations("fused_expression").get("numba.vectorised")
    rng = np.random.default_rng(7)
    x = np.concatenate([
        rng.uniform(0, 10, 20_001), rng.uniform(10, 708, 5_000), rng.uniform(700, 720, 500),
        rng.uniform(1e4, 1e6, 2_000), -rng.uniform(0, 30, 3_000),
        [0.0, 5e-324, 1e-300, math.pi, 2 * math.pi, 1e5, 1e5 + 1, 708.0, 708.5],
    ])  # fmt: skip
    with np.errstate(all="ignore"):
        radicand = np.array([v * v + math.sin(v) * math.exp(-v) for v in x])
    # where the radicand is real and not a cancellation of its two terms
    x = x[radicand > 1e-6 * (x * x + np.exp(np.minimum(-x, 700)))]
    expected = np.array([math.sqrt(v * v + math.sin(v) * math.exp(-v)) for v in x])
    np.testing.assert_allclose(impl.function(x), expected, rtol=1e-13, atol=0)
