"""The blocked loops (over K, over rows, over source pixels) agree with the
reference when a problem spans many blocks, not only the one the small test
problems fit in."""

from __future__ import annotations

import pytest

import lenskern as lk
from conftest import assert_agrees, reference_impl, with_intermediates
from lenskern import conventions

INPUTS = with_intermediates(lk.make_problem({"preset": "tiny", "K": 40, "S": 9}, seed=7))
BLOCKED = [
    impl
    for kernel in lk.KERNELS
    for impl in lk.implementations(kernel).values()
    if impl.backend in ("numpy", "jax")
]


@pytest.mark.parametrize("impl", BLOCKED, ids=lambda i: f"{i.kernel}-{i.name}")
def test_many_small_blocks(impl, monkeypatch):
    monkeypatch.setattr(conventions, "BLOCK_ELEMENTS", 50)
    expected = reference_impl(impl.kernel)(**INPUTS)
    assert_agrees(impl.kernel, impl(**INPUTS), expected, INPUTS)
