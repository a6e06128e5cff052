"""The NUFFT algorithms' stated accuracy, at a size where the offset table has
thousands of entries and visibilities lie on Earth-rotation tracks: every entry
within 1e-8 relative of the direct sum, the whole table within 1e-12 of its
largest entry; and NUFFT_EPS really is the knob. Each NUFFT library
(FINUFFT as numpy.nufft, ducc0 as ducc0.nufft) is held to the same."""

from __future__ import annotations

import numpy as np
import pytest

import lenskern as lk
from lenskern import conventions, recommend, registry


def _own_cpu(backend: str) -> bool:
    declared = registry.declaration(backend)
    return declared.device == "cpu" and not declared.peer


#: lenskern's NUFFT implementations of the offset table on the CPU, from the
#: registry (each a library's: FINUFFT, jax-finufft, ducc0; a peer's NUFFT is
#: the peer's tests' business); one missing here is skipped.
NUFFTS = [
    f"{backend}.nufft"
    for backend in registry.BACKENDS
    if "nufft" in registry.declared("w_offsets", backend) and _own_cpu(backend)
]


@pytest.fixture(scope="module")
def problem():
    return lk.make_problem("small", seed=3)


@pytest.fixture(params=NUFFTS)
def nufft(request):
    found = lk.implementations("w_offsets")
    backend = registry.parse_name(request.param)[0]
    if backend in found.missing:
        pytest.skip(found.missing[backend])
    return request.param


def test_offset_table_meets_the_stated_accuracy(problem, nufft):
    direct = lk.compute("w_offsets", impl="numpy.half", **problem)
    table = lk.compute("w_offsets", impl=nufft, **problem)
    assert np.max(np.abs(table - direct)) <= 1e-12 * np.max(np.abs(direct))
    assert np.max(np.abs(table - direct) / np.abs(direct)) <= 1e-8
    np.testing.assert_array_equal(table, table[::-1, ::-1])  # even to the last bit: Hermitian real part


def test_baselines_whole_periods_away_give_the_same_table(problem, nufft):
    """Offsets are whole pixels, so the table is periodic in u and v with
    period 1/d: baselines moved by whole periods (far outside the phase
    range a NUFFT takes) give the same table, to the stated accuracy."""
    period = 1.0 / (problem["pixel_scale"] * conventions.ARCSEC_TO_RADIANS)
    moved = dict(problem, uv=problem["uv"] + np.array([3.0, -2.0]) * period)
    table = lk.compute("w_offsets", impl=nufft, **problem)
    np.testing.assert_allclose(
        lk.compute("w_offsets", impl=nufft, **moved), table, rtol=0, atol=1e-11 * table.max()
    )


def test_dirty_image_meets_the_stated_accuracy(problem, nufft):
    direct = lk.compute("dirty_image", impl="numpy.gemv", **problem)
    image = lk.compute("dirty_image", impl=nufft, **problem)
    assert np.max(np.abs(image - direct)) <= 1e-11 * np.max(np.abs(direct))


def test_eps_trades_accuracy(problem, nufft, monkeypatch):
    direct = lk.compute("w_offsets", impl="numpy.half", **problem)
    monkeypatch.setattr(conventions, "NUFFT_EPS", 1e-6)
    coarse = lk.compute("w_offsets", impl=nufft, **problem)
    error = np.max(np.abs(coarse - direct)) / np.max(np.abs(direct))
    assert 1e-12 < error < 1e-5


def test_ducc0_names_an_accuracy_it_cannot_give(problem, monkeypatch):
    """ducc0 has a float64 accuracy floor: asking below it is an error that
    names the setting, not ducc0's own message from inside the transform."""
    pytest.importorskip("ducc0")

    monkeypatch.setattr(conventions, "NUFFT_EPS", conventions.DUCC0_MIN_EPS / 2)
    with pytest.raises(ValueError, match="NUFFT_EPS"):
        lk.compute("w_offsets", impl="ducc0.nufft", **problem)


def test_compute_picks_by_size():
    """Below NUFFT_MIN_TERMS a direct sum is faster, so compute takes one."""
    tiny, small = lk.make_problem("tiny"), lk.make_problem("small")
    for kernel in ("w_offsets", "dirty_image"):
        assert recommend.recommended(kernel, tiny).algorithm != "nufft"
        assert recommend.recommended(kernel, small).algorithm == "nufft"


def test_every_kernel_says_why_its_first_choice_leads():
    for kernel in lk.NAMES:
        assert recommend.WHY[kernel].startswith(recommend.RECOMMENDED[kernel][0] + ": "), kernel
