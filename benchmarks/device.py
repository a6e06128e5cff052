"""GPU implementations, the parts of a call apart: the transfer of the
inputs to the device, the kernel on device-resident inputs, the transfer of
the result back, and the device's own peak memory. The ``<Kernel>`` classes
time whole calls, transfers included. n/a on a machine without a GPU.

Best at the ``seed-gpu`` and ``science`` tiers:
``LENSKERN_BENCH_TIERS=seed-gpu,science asv run HEAD^! -b "^device\\..*'(seed-gpu|science)'\\)$"``.
"""

import importlib

from lenskern import registry

from .common import ALL_TIERS, _KernelBenchmark, checkout_facts, manifest, synchronize


def _gpu_calls() -> list[str]:
    """``kernel/implementation`` of every implementation on a GPU here."""
    gpu = set(checkout_facts()["gpu_backends"])
    return [f"{kernel}/{name}" for kernel, names in manifest().items() for name in names
            if name.split(".")[0] in gpu]  # fmt: skip


class Device(_KernelBenchmark):
    """Transfers, kernel and peak device memory of each GPU implementation."""

    kernel = None  # per parameter: the ``call`` names it
    param_names = ["call", "tier"]
    params = [_gpu_calls() or ["no GPU implementation here"], list(ALL_TIERS)]

    def setup(self, cache, call, tier):
        if "/" not in call:
            raise NotImplementedError(call)
        kernel, name = call.split("/")
        self.prepare(cache, kernel, name, tier)
        if hasattr(registry, "declaration"):
            parts = registry.declaration(self.impl.backend).device_parts
        else:  # a commit from before backends declared themselves (history runs)
            module = importlib.import_module(registry.BACKENDS[self.impl.backend].module)
            parts = getattr(module, "device_parts", None)
        parts = parts(self.impl.function, self.impl.device) if parts else None
        if parts is None:
            raise NotImplementedError(f"{self.impl.name}: its backend does not split a call into parts")
        self.to_device, self.call, self.to_host = parts
        self.placed = self.to_device(self.inputs)
        declared = registry.declaration(self.impl.backend)
        memory = getattr(declared, "device_memory", None)  # None: a commit before backends counted it
        self.peak = None
        if memory is not None:
            reset, self.peak = memory(self.impl.device)
            reset()  # where the counter allows: this call's peak, its inputs on the device included
        self.device_result = synchronize(self.call(self.placed))

    def time_transfer_in(self, cache, call, tier):
        """The inputs, host to device, waited on."""
        self.to_device(self.inputs)

    def time_kernel(self, cache, call, tier):
        """One call on inputs already on the device, waited on, result left there."""
        synchronize(self.call(self.placed))

    def time_transfer_out(self, cache, call, tier):
        """The result, device to host."""
        self.to_host(self.device_result)

    def track_device_peak_bytes(self, cache, call, tier):
        """Peak device memory of setup's call on placed inputs, from the count
        the backend declares (``registry.Backend.device_memory``): numba_cuda's
        count of its arrays, restarted before the call; JAX's memory
        statistics, the process's high-water mark."""
        peak = self.peak() if self.peak is not None else None
        if peak is None:
            raise NotImplementedError("this device keeps no count of its memory")
        return peak

    track_device_peak_bytes.unit = "bytes"
