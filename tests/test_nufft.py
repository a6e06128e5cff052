"""The NUFFT algorithms' stated accuracy, at a size where the offset table has
thousands of entries and visibilities lie on Earth-rotation tracks: every entry
within 1e-8 relative of the direct sum, the whole table within 1e-12 of its
largest entry; and NUFFT_EPS really is the knob."""

from __future__ import annotations

import numpy as np
import pytest

import lenskern as lk
from lenskern import conventions, registry


@pytest.fixture(scope="module")
def problem():
    return lk.make_problem("small", seed=3)


def test_offset_table_meets_the_stated_accuracy(problem):
    direct = lk.compute("w_offsets", impl="numpy.half", **problem)
    nufft = lk.compute("w_offsets", impl="numpy.nufft", **problem)
    assert np.max(np.abs(nufft - direct)) <= 1e-12 * np.max(np.abs(direct))
    assert np.max(np.abs(nufft - direct) / np.abs(direct)) <= 1e-8
    np.testing.assert_array_equal(nufft, nufft[::-1, ::-1])  # even to the last bit: Hermitian real part


def test_dirty_image_meets_the_stated_accuracy(problem):
    direct = lk.compute("dirty_image", impl="numpy.gemv", **problem)
    nufft = lk.compute("dirty_image", impl="numpy.nufft", **problem)
    assert np.max(np.abs(nufft - direct)) <= 1e-11 * np.max(np.abs(direct))


def test_eps_trades_accuracy(problem, monkeypatch):
    direct = lk.compute("w_offsets", impl="numpy.half", **problem)
    monkeypatch.setattr(conventions, "NUFFT_EPS", 1e-6)
    coarse = lk.compute("w_offsets", impl="numpy.nufft", **problem)
    error = np.max(np.abs(coarse - direct)) / np.max(np.abs(direct))
    assert 1e-12 < error < 1e-5


def test_compute_picks_by_size():
    """Below NUFFT_MIN_TERMS a direct sum is faster, so compute takes one."""
    tiny, small = lk.make_problem("tiny"), lk.make_problem("small")
    for kernel in ("w_offsets", "dirty_image"):
        assert registry.recommended(kernel, tiny).algorithm != "nufft"
        assert registry.recommended(kernel, small).algorithm == "nufft"


def test_every_kernel_says_why_its_first_choice_leads():
    for kernel in lk.KERNELS + lk.EXAMPLES:
        assert registry.WHY[kernel].startswith(registry.RECOMMENDED[kernel][0] + ": "), kernel
