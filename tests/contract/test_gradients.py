"""The JAX log evidence differentiates correctly: jax.grad against finite differences."""

from __future__ import annotations

import numpy as np
import pytest

import lenskern as lk

jax = pytest.importorskip("jax")
from lenskern.backends.jax.differentiable import log_evidence_from_offsets  # noqa: E402

PROBLEM = lk.make_problem("tiny")
W_OFFSETS = lk.compute("w_offsets", **PROBLEM)


def log_evidence(coefficient, vis_real, vis_imag):
    return log_evidence_from_offsets(
        W_OFFSETS, PROBLEM["native_index"], PROBLEM["grid"], PROBLEM["uv"], PROBLEM["noise"],
        vis_real + 1j * vis_imag, PROBLEM["pix_indexes"], PROBLEM["pix_weights"],
        PROBLEM["n_sources"], PROBLEM["neighbors"], coefficient,
    )  # fmt: skip


def central_difference(f, x, h):
    """4th-order central difference: H's 1e-8 ridge puts ~1e-8 rounding noise
    in log det H, which a small step would amplify."""
    return (-f(x + 2 * h) + 8 * f(x + h) - 8 * f(x - h) + f(x - 2 * h)) / (12 * h)


ARGS = (PROBLEM["coefficient"], PROBLEM["visibilities"].real, PROBLEM["visibilities"].imag)


def test_value_matches_the_reference():
    with jax.enable_x64(True):
        value = float(log_evidence(*ARGS))
    expected = lk.compute("log_evidence", impl="reference.direct", **PROBLEM)
    assert value == pytest.approx(expected, rel=1e-9)


def test_gradient_with_respect_to_the_coefficient():
    with jax.enable_x64(True):
        grad = float(jax.grad(log_evidence, argnums=0)(*ARGS))
        numeric = central_difference(lambda c: float(log_evidence(c, *ARGS[1:])), ARGS[0], 1e-3)
    assert grad == pytest.approx(numeric, rel=1e-6)


@pytest.mark.parametrize("part", [1, 2], ids=["real", "imaginary"])
def test_gradient_with_respect_to_the_visibilities(part):
    with jax.enable_x64(True):
        grad = np.asarray(jax.grad(log_evidence, argnums=part)(*ARGS))
        for k in range(0, len(ARGS[part]), 5):

            def along_k(step, k=k):
                args = list(ARGS)
                args[part] = args[part].copy()
                args[part][k] += step
                return float(log_evidence(*args))

            numeric = central_difference(along_k, 0.0, 1e-3)
            assert grad[k] == pytest.approx(numeric, rel=1e-7, abs=1e-9), k
