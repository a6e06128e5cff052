"""The sharded JAX kernels on several devices: forced host devices stand in
for several GPUs, in a subprocess (XLA reads the device count once, at start)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import nested_pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("devices", [2, 3])
def test_sharded_kernels_agree_with_the_reference_on_several_devices(devices):
    """The agreement tests (hypothesis and edge sizes) of every sharded
    implementation, with XLA showing ``devices`` CPU devices: uneven shares
    (3 devices) and devices with no visibility or source pixel (M = 1, S = 1)
    included."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    check = f"import jax; assert len(jax.devices()) == {devices}, jax.devices()"
    env = dict(os.environ, XLA_FLAGS=flags.strip())
    subprocess.run([sys.executable, "-c", check], env=env, check=True)
    tests = ["tests/contract/test_agreement.py", "-k", "sharded"]
    run = subprocess.run(
        nested_pytest(sys.executable, *tests), cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout
