"""SPEC section 3's agreement, checked: an implementation's answer against the
reference's, to the kernel's tolerance, on the fixed edge problems every
implementation must get right.

The tests (``tests/conftest.py`` re-exports these) and the GPU check
(``python -m lenskern.observatory gpu-check``, which runs where no test
suite is installed) hold implementations to the reference through this one
module, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lenskern import registry
from lenskern.problems import Problem, make_problem

#: Relative rounding error of a linear solve or a log-determinant per unit of
#: condition number, with margin over float64's 1.1e-16. The contract's H is
#: a graph Laplacian plus a 1e-8 ridge, so cond(H) ~ 1e8 c^2 P by construction
#: and log det H carries ~1e-8 absolute error in any implementation: SPEC's
#: 1e-9 holds on well-conditioned inputs, and these kernels' tolerance grows
#: with the condition number beyond that.
ROUNDING_PER_CONDITION = 1e-14

#: Fixed edge problems that every implementation must get right (``make_problem``
#: sizes, each made with seed 1): one pixel, one visibility, one source pixel,
#: one slot, a non-square grid, an annulus, and the ``tiny`` preset.
EDGE_SIZES: dict[str, dict[str, Any]] = {
    "M=1": dict(shape_native=(1, 1), K=5, S=3, B=2, P=2),
    "K=1": dict(shape_native=(3, 4), K=1, S=4, B=2, P=2),
    "S=1": dict(shape_native=(3, 3), K=6, S=1, B=1, P=1),
    "B=1": dict(shape_native=(4, 3), K=7, S=5, B=1, P=3),
    "non-square": dict(shape_native=(2, 7), K=9, S=6, B=3, P=3, mask="full"),
    "annulus": dict(shape_native=(7, 6), K=8, S=7, B=3, P=4, mask="annulus"),
    "tiny": dict(preset="tiny"),
}


def edge_problem(name: str) -> Problem:
    """The edge problem ``name`` of :data:`EDGE_SIZES`, made with seed 1."""
    if name not in EDGE_SIZES:
        raise ValueError(f"edge problem: unknown {name!r}; expected one of {list(EDGE_SIZES)}")
    return make_problem(EDGE_SIZES[name], seed=1)


def reference(kernel: str) -> registry.Implementation:
    """The reference implementation of ``kernel`` (plain Python, the oracle),
    loading the reference backend alone."""
    (algorithm,) = registry.declared(kernel, "reference")
    return registry.implementation(kernel, f"reference.{algorithm}")


def with_intermediates(problem: Mapping[str, Any]) -> dict[str, Any]:
    """The problem plus every intermediate output, each from the reference."""
    inputs = dict(problem)
    for kernel in registry.INTERMEDIATES:
        inputs[kernel] = reference(kernel)(**inputs)
    return inputs


def assert_agrees(kernel: str, got, expected, inputs: dict | None = None, carried: float = 0.0) -> None:
    """Assert agreement to the kernel's tolerance (registry.TOLERANCE).

    Arrays compare element-wise with an absolute floor of rtol * max|expected|.
    The log evidence, a difference of large terms, compares against the size
    of those terms, plus the log-determinants' conditioning error.

    Parameters
    ----------
    kernel
        The kernel's name; its tolerance is ``registry.TOLERANCE[kernel]``.
    got, expected
        The implementation's answer and the reference's (a streamed kernel's
        parts: dicts of them, each part to its own kernel's tolerance).
    inputs
        The inputs both were computed from, with the intermediates: the
        reconstruction's and the evidence's tolerance grows with the
        condition numbers of F + H and H.
    carried
        An absolute error the result inherits from its inputs (a NUFFT's
        table, say), added to the tolerance.

    Raises
    ------
    AssertionError
        On a dtype other than float64, another shape, or values apart by
        more than the tolerance; the message names the kernel.
    """
    if isinstance(expected, dict):  # a streamed kernel's parts, each to its own kernel's tolerance
        assert isinstance(got, dict) and got.keys() == expected.keys(), f"{kernel}: parts {list(got)}"
        for part, value in expected.items():
            assert_agrees(part if part in registry.TOLERANCE else kernel, got[part], value, None, carried)
        return
    rtol = registry.TOLERANCE[kernel]
    got = np.asarray(got)
    expected = np.asarray(expected)
    assert got.dtype == np.float64, f"{kernel}: returned dtype {got.dtype}, expected float64"
    assert got.shape == expected.shape, f"{kernel}: shape {got.shape}, expected {expected.shape}"
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    atol = rtol * scale
    if kernel in ("reconstruction", "log_evidence") and inputs is not None:
        h = inputs["regularization_matrix"]
        cond_fh = np.linalg.cond(inputs["curvature_matrix"] + h)
        if kernel == "reconstruction":
            rtol = max(rtol, ROUNDING_PER_CONDITION * cond_fh)
            atol = rtol * scale
        else:
            chi2 = float(np.sum(np.abs(inputs["visibilities"]) ** 2 / inputs["noise"] ** 2))
            atol = rtol * max(scale, chi2) + ROUNDING_PER_CONDITION * (np.linalg.cond(h) + cond_fh)
    atol += carried
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=kernel)


def relative_error(got, expected) -> float:
    """max |got - expected| / max |expected|: one number per call, as the
    benchmarks' ``track_max_relative_error`` reports it."""
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape:
        raise ValueError(f"shape {got.shape}, expected {expected.shape}")
    if expected.size == 0:
        return 0.0
    return float(np.max(np.abs(got - expected)) / max(float(np.max(np.abs(expected))), 1e-300))
