"""``python -m lenskern.observatory gpu-check`` end to end on the path without
a GPU (Numba's CUDA simulator and JAX's CPU device at ``tiny``), in a
subprocess as a user runs it: it says it is the simulator, tests every GPU
implementation (numba_cuda's device parts included) against the reference,
and writes a markdown table and asv result files that asv's own reader loads.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from lenskern import agreement, registry
from lenskern.observatory import results

MACHINE = "ci-gpu-check"

#: numba_cuda's implementations of the kernels and examples, as ``kernel/name``
#: (the module declares them whether or not a GPU is here).
CUDA = sorted(f"{k}/numba_cuda.{a}" for k in registry.NAMES for a in registry.declared(k, "numba_cuda"))


def _gpu_here() -> bool:
    from numba import cuda

    return bool(cuda.is_available())


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """The check's output, exit status and folder (``--simulator`` only where
    this machine has a GPU: without one it must take that path itself)."""
    out = tmp_path_factory.mktemp("gpu-check")
    command = [sys.executable, "-m", "lenskern.observatory", "gpu-check", str(out), "--machine", MACHINE]
    command += ["--simulator"] if _gpu_here() else []
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    return done.stdout + done.stderr, done.returncode, out


def test_it_says_it_is_the_simulator_and_passes(checked):
    output, returncode, _ = checked
    assert returncode == 0, output[-6000:]
    if not _gpu_here():
        assert "NO GPU found" in output
    assert "THIS IS THE SIMULATOR" in output
    steps = [line for line in output.splitlines() if line.startswith("==> ")]
    expected = ["environment", "tests", "device", "device", "CPU", "CPU", f"results into {checked[2]}"]
    assert [s.split(":")[0] for s in steps] == [f"==> {step}" for step in expected]
    assert "every test passed" in output.splitlines()[-1]


def test_numba_cuda_device_parts_agree_with_the_reference(checked):
    """Every numba_cuda implementation, on every edge problem (the examples
    on their inputs), agreed with the reference as a whole call and as its
    three device parts put together."""
    summary = json.loads((checked[2] / "gpu-check.json").read_text())
    assert summary["simulator"] and summary["tiers"] == ["tiny"]
    mine = [t for t in summary["tests"] if t["implementation"].startswith("numba_cuda.")]
    assert sorted({f"{t['kernel']}/{t['implementation']}" for t in mine}) == CUDA
    assert all(t["ok"] and t["parts"] for t in mine), [t for t in mine if not (t["ok"] and t["parts"])]
    kernels = [t for t in mine if t["kernel"] in registry.KERNELS]
    assert {t["problem"] for t in kernels} == set(agreement.EDGE_SIZES)
    jax = [t for t in summary["tests"] if t["implementation"].startswith("jax.")]
    assert jax and all(t["ok"] for t in jax)


def test_the_markdown_table(checked):
    """One row per numba_cuda implementation at tiny with its kernel time,
    both transfers, first call and a peak device memory (not n/a), beside
    the CPU's pick on one thread and on all."""
    text = (checked[2] / "gpu-check.md").read_text()
    assert "No GPU: these are Numba's CUDA simulator and JAX's CPU device" in text
    assert "## `tiny`" in text
    header = next(line for line in text.splitlines() if line.startswith("| kernel |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    for call in CUDA:
        kernel, name = call.split("/")
        (row,) = [line for line in text.splitlines() if line.startswith(f"| `{kernel}` | `{name}` |")]
        cells = dict(zip(columns[2:], [c.strip() for c in row.strip("|").split("|")][2:]))
        assert cells["1 thread"] != "n/a" and cells["CPU: `compute`'s pick"] != "`n/a`", row
        for column in ("kernel", "transfer in", "transfer out", "first call", "peak device memory"):
            assert cells[column] not in ("", "n/a"), (name, column, row)
        assert float(cells["error vs CPU"]) < 1e-7, row


def test_asv_reads_the_results(checked):
    """asv's own reader loads every result file; lenskern's reader finds the
    device's parts and memory, and the CPU on one thread and on all."""
    from asv import util
    from asv.results import Results

    folder = checked[2] / "results" / MACHINE
    assert util.load_json(folder / "machine.json", api_version=1)["machine"] == MACHINE
    files = sorted(p for p in folder.glob("*.json") if p.name != "machine.json")
    assert len(files) == 3
    for path in files:
        loaded = Results.load(str(path), machine_name=MACHINE)
        assert loaded.get_all_result_keys()
    commit = files[0].name[:8]
    found = results.read(checked[2] / "results", MACHINE, commit)
    assert sorted(f.threads for f in found) == ["1", "all", "unpinned"]
    device = next(f for f in found if f.threads == "unpinned").measurements
    for method in ("time_transfer_in", "time_kernel", "time_transfer_out", "track_device_peak_bytes"):
        at_tiny = [m for m in device if m.method == method and m.params[1] == "tiny"]
        values = {m.params[0]: m.value for m in at_tiny}
        missing = [call for call in CUDA if not values.get(call)]
        assert not missing, (method, missing)
    kernel = [m for m in device if m.method == "time_kernel" and m.value is not None]
    assert all(m.samples for m in kernel)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--tier", "huge"], "unknown tier 'huge'"),
        (["--budget", "-1"], "expected a positive number of seconds"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(tmp_path, arguments, message):
    command = [sys.executable, "-m", "lenskern.observatory", "gpu-check", str(tmp_path / "out"), *arguments]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert "==> environment" not in done.stdout


def test_a_spent_budget_skips_what_is_left_and_says_so(tmp_path):
    """Past the deadline a worker measures nothing more: each call left is
    a record that names the spent budget, never a timing."""
    import pickle
    import time

    from lenskern.observatory import gpu_check
    from lenskern.problems import example_sizes, make_examples

    bundle = {"inputs": {}, "examples": make_examples("tiny"), "expected": {}, "sizes": {},
              "example_sizes": example_sizes("tiny")}  # fmt: skip
    path = tmp_path / "inputs-tiny.pickle"
    path.write_bytes(pickle.dumps(bundle))
    out = tmp_path / "cpu.jsonl"
    spec = {"threads": "1", "inputs": {"tiny": str(path)}, "kernels": ["fma", "fused_expression"],
            "deadline": time.time() - 1, "out": str(out)}  # fmt: skip
    gpu_check.worker_cpu(spec)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["kernel"] for r in records] == ["fma", "fused_expression"]
    for record in records:
        assert record["skipped"] == "the time budget was spent" and "kernel_time" not in record, record
