"""Instruction counts under Valgrind: only the call is counted, two runs of
the same code agree, and one extra pass over an array is seen."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import lenskern
from lenskern.observatory import counts

# Skipped only off CI: CI installs Valgrind (.ci/run), so there a missing
# Valgrind fails these tests instead of hiding them.
pytestmark = pytest.mark.skipif(
    counts.supported() is not None and not os.environ.get("CI"), reason=str(counts.supported())
)

#: The call counted: K = 4096 logarithms and a handful of NumPy passes.
CALL = ("noise_normalization", "numpy.vector", "small")


def test_client_request_is_a_no_op_outside_valgrind():
    assert counts.client_request(counts.RUNNING_ON_VALGRIND, default=7) == 7


@pytest.fixture(scope="module")
def base():
    return counts.count(*CALL)


def test_two_runs_of_the_same_code_agree(base):
    again = counts.count(*CALL)
    assert again["instructions"] == base["instructions"]
    assert abs(again["estimated_cycles"] - base["estimated_cycles"]) <= 1e-3 * base["estimated_cycles"]


def test_only_the_call_is_counted(base):
    """Far fewer instructions than a Python start-up (~10^8): the process,
    its imports and any compilation are outside the count, and the call's
    own work (K logarithms) is inside it."""
    k = 4096
    assert 10 * k < base["instructions"] < 5_000_000


def test_one_extra_pass_over_an_array_is_counted(base, tmp_path, monkeypatch):
    """A copy of lenskern whose noise normalization makes one more pass over
    its K-element temporary: the count grows by a few percent, well above
    the zero difference of two runs of the same code."""
    copy = tmp_path / "lenskern"
    shutil.copytree(Path(lenskern.__file__).parent, copy)
    backend = copy / "backends" / "numpy.py"
    original = "return float(np.sum(2.0 * np.log(TWO_PI * noise**2)))"
    planted = "return float(np.sum(2.0 * np.log(TWO_PI * noise**2) + 0.0))"
    assert original in backend.read_text()
    backend.write_text(backend.read_text().replace(original, planted))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    slower = counts.count(*CALL)
    ratio = slower["instructions"] / base["instructions"]
    assert 1.01 < ratio < 1.5, ratio
