"""Where and how the JAX backend's kernels run: on which device, in float64,
waited on and returned to the host (:func:`on_device`), or split into
transfers and kernel for the device benchmarks (:func:`device_parts`).

The rules :func:`on_device` applies around every registered kernel's jitted
core, so the kernels are written once and registered once per device JAX
has (``jax`` on the CPU, ``jax_gpu`` on a GPU):

- precision: the call runs inside ``with jax.enable_x64(True):``, so inputs,
  compiled code and outputs are float64, while importing the backend changes
  no global setting (JAX stays in float32 mode outside lenskern's calls);
- placement: NumPy inputs are put on the backend's device;
- waiting: the result is blocked on (``block_until_ready``), so a timer that
  stops when the call returns covers the work;
- return: arrays come back to the host as NumPy float64 arrays (on the CPU a
  zero-copy, read-only view), scalars as Python floats, so callers never hold
  a float64 ``jax.Array`` that later float32-mode code would downcast.
"""

from __future__ import annotations

import contextvars
import functools
import importlib.util
import inspect

import jax
import numpy as np


def unavailable(device: str) -> str | None:
    """Why JAX cannot run on ``device`` here, or None (the registry asks)."""
    try:
        jax.devices(device)
    except RuntimeError:
        platforms = sorted({d.platform for d in jax.devices()})
        return f"JAX sees no {device} device here (platforms: {', '.join(platforms)})"
    return None


def lacks(device: str) -> dict[str, str]:
    """The algorithms that cannot run on ``device`` here (the registry asks):
    jax-finufft's transforms on a GPU need its CUDA build (cuFINUFFT), which
    its wheels leave out; without it the lowering refuses the GPU at the call."""
    if device != "gpu":
        return {}
    try:
        found = importlib.util.find_spec("jax_finufft.jax_finufft_gpu")
    except ImportError:  # jax-finufft itself missing: the call fails at its import, as on the CPU
        found = None
    if found is not None:
        return {}
    return {"nufft": "jax-finufft here has no CUDA build (cuFINUFFT): its transforms run on the CPU only"}


#: The kind of device ("cpu", "gpu") of the call in progress: the sharded
#: kernels lay their mesh over every device of this kind.
_DEVICE_KIND = contextvars.ContextVar("lenskern_jax_device_kind", default="cpu")


def on_device(function, device: str):
    """``function`` run on the first JAX ``device`` of its kind (the sharded
    kernels: on all of them), in float64, blocked on and returned to the
    host (the module docstring's rules)."""

    signature = inspect.signature(function)
    sharded = getattr(function, "sharded", False)

    @functools.wraps(function)
    def run(*args, **kwargs):
        target = jax.devices(device)[0]
        inputs = signature.bind(*args, **kwargs).arguments
        token = _DEVICE_KIND.set(device)
        try:
            with jax.enable_x64(True):
                placed = {
                    name: jax.device_put(value, target)
                    if isinstance(value, np.ndarray) and not sharded
                    else value
                    for name, value in inputs.items()
                }
                result = function(**placed).block_until_ready()
                return float(result) if result.ndim == 0 else np.asarray(result)
        finally:
            _DEVICE_KIND.reset(token)

    return run


def device_parts(function, device: str):
    """A registered call split into its three parts on ``device``, for the
    benchmarks that time transfers apart from the kernel: ``to_device(inputs)``
    (blocked), ``call(placed)`` (a device result, not waited on) and
    ``to_host(result)``. None for the sharded kernels, which place their
    inputs themselves."""
    if getattr(function, "sharded", False):
        return None
    kernel = function.__wrapped__  # the jitted core, before on_device's wrapper
    target = jax.devices(device)[0]

    def to_device(inputs):
        with jax.enable_x64(True):  # float64 stays float64 on the device
            placed = {
                n: jax.device_put(v, target) if isinstance(v, np.ndarray) else v for n, v in inputs.items()
            }
            return jax.block_until_ready(placed)

    def call(placed):
        with jax.enable_x64(True):
            return kernel(**placed)

    return to_device, call, np.asarray


def device_memory(device: str):
    """(reset, peak) of the first JAX ``device``'s memory statistics: JAX
    keeps no peak that can be restarted, so ``reset`` does nothing and
    ``peak()`` is the device's high-water mark since the process started
    (None where it keeps no statistics, as on the CPU)."""
    target = jax.devices(device)[0]

    def peak() -> int | None:
        stats = target.memory_stats() or {}
        return stats.get("peak_bytes_in_use")

    return (lambda: None), peak
