"""The GPU check: ``python -m lenskern.observatory gpu-check OUT``, one
prepared command for a machine with a GPU, that needs neither asv nor the
test suite there.

Steps, one line of progress each:

1. **Environment**: the driver (``nvidia-smi``), JAX's devices, Numba and
   numba-cuda and whether ``numba.cuda`` sees a GPU.
2. **Tests**: every ``numba_cuda`` and ``jax_gpu`` implementation against the
   reference (:mod:`lenskern.agreement`, the tests' own check) on the edge
   problems and the seeds' examples, each as a whole call and as its device
   parts put together.
3. **Inputs** of each tier, made once on the CPU with every intermediate and
   each kernel's answer from ``compute`` (what the CPU runs).
4. **Device benchmarks** at ``seed-gpu`` and ``science``: per implementation,
   the first call (compilation included), then the transfer in, the kernel
   (waited on before the timer stops) and the transfer out timed apart, the
   median of up to :data:`REPEAT` samples, the peak device memory from the
   backend's own count (``registry.Backend.device_memory``) and the error
   against the CPU's answer.
5. **CPU benchmarks**: each kernel's ``compute`` pick on one thread and on
   every core (``LENSKERN_NUM_THREADS``, a process per setting, set before
   any library loads).
6. **Results**: asv's result files (format version 2, readable by asv's
   ``Results.load`` and by :mod:`lenskern.observatory.results`) under
   ``OUT/results/<machine>/``, the records as JSON and one markdown table,
   ``OUT/gpu-check.md``.

Where no GPU is found the same steps run on Numba's CUDA simulator and on
JAX's CPU device at the ``tiny`` tier, and the command says so: that is the
path ``.ci/run`` tests (``tests/backends/test_gpu_check.py``). Each step runs
in processes of its own: the simulator must be chosen before ``numba.cuda``
is imported, a thread count before Numba, XLA and BLAS load, and a fresh
Numba cache makes the first call a compilation. Those processes are this
module run as a script (``python -m lenskern.observatory.gpu_check WORKER
SPEC``), each writing its records as JSON lines as it goes, so a process
stopped at the time limit keeps what it measured.

The whole check keeps to a time budget (``--budget``, :data:`BUDGET_SECONDS`):
implementations run cheapest first by their cost model, each takes at most
its share of what is left, and those left when the budget is spent are
listed as not run, with the reason.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lenskern.observatory.results import COLUMNS

#: The tiers benchmarked on a GPU, and where there is none (the simulator).
GPU_TIERS = ("seed-gpu", "science")
SIMULATOR_TIERS = ("tiny",)

#: The issue's limit is 8 minutes on one H100; the budget leaves a minute
#: for starting processes, writing results and a call that overruns its share.
BUDGET_SECONDS = 420.0

#: Samples per timing (the median is the result), fewer where an
#: implementation's share of the budget runs out first.
REPEAT = 5

#: A call is skipped whose estimate exceeds this many seconds: the cost
#: model's one-core seconds (``registry.Cost``) divided by the threads on the
#: CPU, and by :data:`DEVICE_SPEEDUP` on a GPU.
MAX_CALL_SECONDS = 60.0

#: How much faster than one core of registry.RATE a GPU call is assumed to
#: be when deciding what to skip: an H100 does 34 TFLOP/s of float64 without
#: tensor cores (its data sheet), ~7000x RATE's 5 GFLOP/s, and a kernel that
#: reaches a seventh of that is doing well. Only the order matters.
DEVICE_SPEEDUP = 1000.0

#: Outputs larger than this are not benchmarked above ``tiny``: W at
#: ``science`` is 40 GiB, which the device, its copy back and the host's
#: answer to check it against would each hold (benchmarks/common.py's
#: W_BYTES_MAX, for the same reason).
MAX_OUTPUT_BYTES = 1 << 30

#: Environment variables that put a worker on the simulator's path.
SIMULATOR_ENV = {"NUMBA_ENABLE_CUDASIM": "1", "JAX_PLATFORMS": "cpu"}

#: The asv benchmark names the results are filed under: the device's parts
#: (as benchmarks/device.py's ``Device``) and the CPU's whole calls.
DEVICE_BENCHMARKS = {
    "first_call": "gpu_check.Device.track_first_call_seconds",
    "transfer_in": "gpu_check.Device.time_transfer_in",
    "kernel_time": "gpu_check.Device.time_kernel",
    "transfer_out": "gpu_check.Device.time_transfer_out",
    "peak_bytes": "gpu_check.Device.track_device_peak_bytes",
    "error": "gpu_check.Device.track_max_relative_error",
}
CPU_BENCHMARKS = {
    "first_call": "gpu_check.Cpu.track_first_call_seconds",
    "kernel_time": "gpu_check.Cpu.time_call",
}


# --- the workers: each runs in a process of its own ---------------------------


def _records(path: str) -> Callable[[dict], None]:
    """A writer of one JSON line per record, flushed as it comes."""

    def write(record: dict) -> None:
        with open(path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    return write


def worker_environment(spec: dict) -> None:
    """The versions, the driver and the devices that Numba and JAX see."""
    from importlib import metadata

    found: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    for package in ("numpy", "numba", "numba-cuda", "jax", "jaxlib", "finufft", "jax-finufft", "ducc0"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    found["driver"] = _nvidia_smi()
    try:
        from numba import cuda

        found["numba_cuda_gpu"] = bool(cuda.is_available()) and not _simulated()
        found["numba_cuda_devices"] = (
            [d.name.decode() if isinstance(d.name, bytes) else str(d.name) for d in cuda.gpus]
            if found["numba_cuda_gpu"]
            else []
        )
    except Exception as error:  # a broken CUDA install is what this step is for
        found["numba_cuda_gpu"], found["numba_cuda_error"] = False, f"{type(error).__name__}: {error}"
    try:
        import jax

        found["jax_devices"] = [f"{d.platform}:{d.device_kind}" for d in jax.devices()]
        found["jax_gpu"] = any(d.platform == "gpu" for d in jax.devices())
    except Exception as error:
        found["jax_devices"], found["jax_gpu"] = [], False
        found["jax_error"] = f"{type(error).__name__}: {error}"
    _records(spec["out"])(found)


def _simulated() -> bool:
    import numba

    return bool(numba.config.ENABLE_CUDASIM)


def _nvidia_smi() -> str | None:
    """The GPU, its memory and the driver, as nvidia-smi says, or None."""
    if shutil.which("nvidia-smi") is None:
        return None
    query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _implementations(backend: str, kernels: Iterable[str]) -> list:
    """Every implementation of ``backend`` for ``kernels``, loading only it."""
    from lenskern import registry

    return [
        registry.implementation(kernel, f"{backend}.{algorithm}")
        for kernel in kernels
        for algorithm in registry.declared(kernel, backend)
    ]


def worker_tests(spec: dict) -> None:
    """Every implementation of one backend against the reference on the edge
    problems and the examples, whole and in parts."""
    from lenskern import agreement, registry
    from lenskern.problems import make_examples

    write = _records(spec["out"])
    backend = spec["backend"]
    declared = registry.declaration(backend)
    problems = {name: agreement.with_intermediates(agreement.edge_problem(name)) for name in spec["problems"]}
    problems["examples"] = make_examples("tiny")
    for impl in _implementations(backend, registry.KERNELS + registry.EXAMPLES):
        for name, inputs in problems.items():
            if (name == "examples") != (impl.kernel in registry.EXAMPLES):
                continue
            record = {"implementation": impl.name, "kernel": impl.kernel, "problem": name}
            try:
                expected = agreement.reference(impl.kernel)(**inputs)
                agreement.assert_agrees(impl.kernel, impl(**inputs), expected, inputs)
                parts = declared.device_parts(impl.function, impl.device) if declared.device_parts else None
                if parts is not None:
                    to_device, call, to_host = parts
                    got = to_host(_wait(declared, call(to_device(impl.bind(inputs)))))
                    agreement.assert_agrees(impl.kernel, got, expected, inputs)
                record.update(ok=True, parts=parts is not None)
            except Exception as error:  # noqa: BLE001  every failure is a test result
                record.update(ok=False, message=f"{type(error).__name__}: {str(error)[:2000]}")
            write(record)


def _wait(declared, result):
    """``result`` once the backend's device has finished it."""
    if declared.synchronize is not None:
        declared.synchronize(result)
    return result


def worker_inputs(spec: dict) -> None:
    """A tier's inputs, with every intermediate and each kernel's answer from
    ``compute`` (the CPU's), pickled for the benchmark workers."""
    import numpy as np

    import lenskern as lk
    from lenskern import registry
    from lenskern.problems import example_sizes, make_examples

    tier = spec["tier"]
    problem = lk.make_problem(tier)
    inputs = dict(problem)
    m_count = len(problem["grid"])
    for name in registry.INTERMEDIATES:
        if name == "w_tilde" and 8 * m_count * m_count > MAX_OUTPUT_BYTES:
            continue
        inputs[name] = lk.compute(name, **inputs)
    expected = {name: inputs[name] for name in registry.INTERMEDIATES if name in inputs}
    for name in registry.KERNELS:
        if name in expected or name not in spec["kernels"]:
            continue
        entries = registry.kernel(name).entries(**problem.sizes)
        if 8 * entries > MAX_OUTPUT_BYTES:
            continue
        expected[name] = lk.compute(name, **inputs)
    examples = make_examples(tier)
    for name in registry.EXAMPLES:
        if name in spec["kernels"]:
            expected[name] = lk.compute(name, **examples)
    sizes = {k: v for k, v in problem.sizes.items() if isinstance(v, int | np.integer)}
    bundle = {
        "inputs": inputs,
        "examples": examples,
        "expected": expected,
        "sizes": {k: int(v) for k, v in sizes.items()},
        "example_sizes": example_sizes(tier),
    }
    with open(spec["path"], "wb") as handle:
        pickle.dump(bundle, handle, protocol=pickle.HIGHEST_PROTOCOL)
    _records(spec["out"])(
        {"tier": tier, "M": m_count, "K": len(problem["uv"]), "S": int(problem["n_sources"])}
    )


def _samples(run: Callable[[], Any], seconds: float, least: int = 1) -> list[float]:
    """Up to REPEAT timings of ``run`` (which waits for its device), stopping
    after ``least`` once ``seconds`` are spent."""
    found: list[float] = []
    while len(found) < REPEAT:
        start = time.perf_counter()
        run()
        found.append(time.perf_counter() - start)
        if len(found) >= least and sum(found) >= seconds:
            break
    return found


def _estimate(impl, bundle: dict) -> float:
    from lenskern import registry

    sizes = bundle["example_sizes"] if impl.kernel in registry.EXAMPLES else bundle["sizes"]
    return impl.estimated_seconds(sizes)


def _skip(impl, bundle: dict, tier: str, speedup: float) -> str | None:
    """Why ``impl`` is not benchmarked at ``tier``, or None."""
    from lenskern import registry

    inputs = bundle["examples"] if impl.kernel in registry.EXAMPLES else bundle["inputs"]
    missing = [name for name in impl.inputs if name not in inputs]
    if missing:
        return f"input(s) {', '.join(missing)} not built at {tier} (over {MAX_OUTPUT_BYTES >> 30} GiB)"
    if impl.kernel not in registry.EXAMPLES and tier != "tiny":
        output = 8 * registry.kernel(impl.kernel).entries(**bundle["sizes"])
        if output > MAX_OUTPUT_BYTES:
            return f"its output is {output / 2**30:.3g} GiB (over {MAX_OUTPUT_BYTES >> 30} GiB)"
    seconds = _estimate(impl, bundle) / speedup
    if seconds > MAX_CALL_SECONDS and tier != "tiny":
        return f"estimated {seconds:.0f} s per call (over {MAX_CALL_SECONDS:.0f} s)"
    return None


def _error(result, expected) -> float | None:
    from lenskern import agreement

    if expected is None:
        return None
    return agreement.relative_error(result, expected)


def _plan(impls: list, bundle: dict, tier: str, speedup: float, write) -> list:
    """The implementations to run, cheapest first; the others written as skipped."""
    runnable = []
    for impl in sorted(impls, key=lambda i: _estimate(i, bundle)):
        reason = _skip(impl, bundle, tier, speedup)
        if reason:
            write({"implementation": impl.name, "kernel": impl.kernel, "tier": tier, "skipped": reason})
        else:
            runnable.append(impl)
    return runnable


def _share(deadline: float, left: int) -> float:
    """The seconds one of ``left`` implementations may spend before ``deadline``."""
    return max(0.0, deadline - time.time()) / max(left, 1)


def worker_device(spec: dict) -> None:
    """One backend's device implementations at one tier: first call, then
    transfers and kernel apart, peak device memory, error against the CPU."""
    from lenskern import registry

    write = _records(spec["out"])
    backend, tier, deadline = spec["backend"], spec["tier"], spec["deadline"]
    with open(spec["inputs"], "rb") as handle:
        bundle = pickle.load(handle)
    declared = registry.declaration(backend)
    kernels = [k for k in registry.KERNELS + registry.EXAMPLES if k in spec["kernels"]]
    impls = _plan(_implementations(backend, kernels), bundle, tier, spec["speedup"], write)
    for index, impl in enumerate(impls):
        record: dict[str, Any] = {"implementation": impl.name, "kernel": impl.kernel, "tier": tier}
        share = _share(deadline, len(impls) - index)
        if share <= 0:
            write({**record, "skipped": "the time budget was spent"})
            continue
        try:
            record.update(_device_timings(impl, declared, bundle, share))
        except Exception as error:  # noqa: BLE001  one implementation's failure is its row
            record["failed"] = f"{type(error).__name__}: {str(error)[:2000]}"
        write(record)


def _device_timings(impl, declared, bundle: dict, share: float) -> dict:
    from lenskern import registry

    inputs = bundle["examples"] if impl.kernel in registry.EXAMPLES else bundle["inputs"]
    bound = impl.bind(inputs)
    start = time.perf_counter()
    result = _wait(declared, impl.function(**bound))
    found: dict[str, Any] = {"first_call": time.perf_counter() - start}
    found["error"] = _error(result, bundle["expected"].get(impl.kernel))
    del result
    parts = declared.device_parts(impl.function, impl.device) if declared.device_parts else None
    memory = declared.device_memory(impl.device) if declared.device_memory else None
    if parts is None:  # places its inputs itself (the sharded kernels): the whole call is the kernel
        found["kernel_time"] = _samples(lambda: _wait(declared, impl.function(**bound)), share)
        found["parts"] = False
        return found
    to_device, call, to_host = parts
    found["transfer_in"] = _samples(lambda: to_device(bound), share / 4)
    placed = to_device(bound)
    if memory is not None:
        memory[0]()  # where the count allows: this call's peak, its inputs on the device included
    device_result = _wait(declared, call(placed))
    found["peak_bytes"] = memory[1]() if memory is not None else None
    found["kernel_time"] = _samples(lambda: _wait(declared, call(placed)), share / 2)
    found["transfer_out"] = _samples(lambda: to_host(device_result), share / 4)
    found["parts"] = True
    return found


def worker_cpu(spec: dict) -> None:
    """Each kernel's ``compute`` pick on this process's threads
    (LENSKERN_NUM_THREADS, set by the parent), at every tier."""
    from lenskern import recommend, registry, threads  # lenskern first: it applies the thread count

    write = _records(spec["out"])
    count = threads.requested() or len(threads.available_cpus())
    plan = []
    for tier, path in spec["inputs"].items():
        with open(path, "rb") as handle:
            bundle = pickle.load(handle)
        for kernel in spec["kernels"]:
            inputs = bundle["examples"] if kernel in registry.EXAMPLES else bundle["inputs"]
            try:
                impl = recommend.recommended(kernel, inputs)
            except TypeError as error:  # no implementation has the inputs built at this tier
                write({"kernel": kernel, "tier": tier, "threads": spec["threads"], "skipped": str(error)})
                continue
            plan.append((tier, bundle, impl))
    for index, (tier, bundle, impl) in enumerate(plan):
        record: dict[str, Any] = {
            "implementation": impl.name,
            "kernel": impl.kernel,
            "tier": tier,
            "threads": spec["threads"],
            "cores": count,
        }
        reason = _skip(impl, bundle, tier, count)
        share = _share(spec["deadline"], len(plan) - index)
        if reason or share <= 0:
            write({**record, "skipped": reason or "the time budget was spent"})
            continue
        try:
            bound = impl.bind(bundle["examples"] if impl.kernel in registry.EXAMPLES else bundle["inputs"])
            start = time.perf_counter()
            impl.function(**bound)
            record["first_call"] = time.perf_counter() - start
            record["kernel_time"] = _samples(lambda: impl.function(**bound), share)  # noqa: B023  called here
        except Exception as error:  # noqa: BLE001
            record["failed"] = f"{type(error).__name__}: {str(error)[:2000]}"
        write(record)


WORKERS = {
    "environment": worker_environment,
    "tests": worker_tests,
    "inputs": worker_inputs,
    "device": worker_device,
    "cpu": worker_cpu,
}


# --- the parent: plans, starts the workers, writes the results ---------------


def _say(message: str) -> None:
    print(f"==> {message}", flush=True)


class _Run:
    """The check's working folder, its workers' environments and its clock."""

    def __init__(self, simulator: bool, budget: float) -> None:
        self.simulator = simulator
        self.start = time.time()
        self.deadline = self.start + budget
        self.folder = Path(tempfile.mkdtemp(prefix="lenskern-gpu-check-"))

    def env(self, **variables: str) -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **variables)
        if "LENSKERN_NUM_THREADS" not in variables:  # the device workers' host threads: the machine's default
            env.pop("LENSKERN_NUM_THREADS", None)
        # a Numba cache of its own: the first call compiles, as on a fresh machine
        env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(dir=self.folder)
        if self.simulator:
            env.update(SIMULATOR_ENV)
        return env

    def start_worker(self, kind: str, spec: dict, env: dict[str, str]) -> tuple[subprocess.Popen, Path, Path]:
        name = f"{kind}-{len(list(self.folder.glob('*.jsonl')))}"
        out, log = self.folder / f"{name}.jsonl", self.folder / f"{name}.log"
        out.touch()
        (self.folder / f"{name}.json").write_text(json.dumps({**spec, "out": str(out)}))
        command = [
            sys.executable,
            "-m",
            "lenskern.observatory.gpu_check",
            kind,
            str(self.folder / f"{name}.json"),
        ]
        with open(log, "w") as handle:
            process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
        return process, out, log

    def finish(self, started, timeout: float) -> tuple[list[dict], str | None]:
        """The worker's records, and why it failed (None if it did not)."""
        process, out, log = started
        try:
            code = process.wait(timeout=max(timeout, 1.0))
            why = None if code == 0 else f"exit status {code}: {log.read_text()[-3000:]}"
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            why = f"stopped after {timeout:.0f} s, over the time budget"
        return [json.loads(line) for line in out.read_text().splitlines() if line.strip()], why

    def run(
        self, kind: str, spec: dict, env: dict[str, str], timeout: float
    ) -> tuple[list[dict], str | None]:
        return self.finish(self.start_worker(kind, spec, env), timeout)


def check(
    out: Path,
    tiers: list[str] | None = None,
    simulator: bool | None = None,
    budget: float = BUDGET_SECONDS,
    machine: str | None = None,
    commit: str | None = None,
) -> int:
    """Run the GPU check and write its results into the folder ``out``.

    Parameters
    ----------
    out
        The folder for the results (created; existing files of the check
        are replaced): ``results/<machine>/`` (asv's format), ``gpu-check.md``
        and ``gpu-check.json``.
    tiers
        Problem tiers to benchmark; default :data:`GPU_TIERS` on a GPU,
        :data:`SIMULATOR_TIERS` on the simulator.
    simulator
        True: the simulator's path even where a GPU is found; None: the
        simulator only where no GPU is found.
    budget
        Seconds the whole check may take; what is left when they are spent
        is listed as not run.
    machine
        The machine's name in the results (default: the observatory's,
        ``$LENSKERN_MACHINE`` or the host name).
    commit
        The commit the results are filed under (default: git's HEAD, else
        the one stamped into lenskern).

    Returns
    -------
    int
        0 if every test passed and no worker failed, else 1.
    """
    from lenskern import problems, registry
    from lenskern.observatory import machines

    for tier in tiers or ():
        if tier not in problems.PRESETS:
            raise ValueError(f"--tier: unknown tier {tier!r}; expected some of {sorted(problems.PRESETS)}")
    if not budget > 0:
        raise ValueError(f"--budget: expected a positive number of seconds, got {budget}")
    machine = machine or machines.default_name()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    probe = _Run(False, budget)
    _say("environment: the driver, JAX's devices, numba-cuda")
    found, why = probe.run("environment", {}, probe.env(), 300)
    environment = found[0] if found else {"error": why}
    for key, value in environment.items():
        print(f"    {key}: {value}", flush=True)
    gpu = bool(environment.get("numba_cuda_gpu") or environment.get("jax_gpu"))
    use_simulator = (not gpu) if simulator is None else simulator
    run = _Run(use_simulator, budget)
    run.start = probe.start
    run.deadline = probe.deadline
    shutil.rmtree(probe.folder, ignore_errors=True)
    if use_simulator:
        print("    NO GPU found" if not gpu else "    --simulator: a GPU is here, but not used", flush=True)
        print(
            "    THIS IS THE SIMULATOR: numba_cuda runs on Numba's CUDA simulator and jax_gpu's kernels "
            "on JAX's CPU device; the times below measure the simulator, not a GPU",
            flush=True,
        )
        backends = [("numba_cuda", "gpu"), ("jax", "cpu")]
    else:
        backends = [("numba_cuda", "gpu")] if environment.get("numba_cuda_gpu") else []
        backends += [("jax_gpu", "gpu")] if environment.get("jax_gpu") else []
        for name, flag in (("numba_cuda", "numba_cuda_gpu"), ("jax_gpu", "jax_gpu")):
            if not environment.get(flag):
                print(f"    {name}: no GPU for it here; left out", flush=True)
    tiers = list(tiers or (SIMULATOR_TIERS if use_simulator else GPU_TIERS))
    kernels = [
        k for k in registry.KERNELS + registry.EXAMPLES if any(registry.declared(k, b) for b, _ in backends)
    ]

    _say(
        f"tests: {' and '.join(b for b, _ in backends)} against the reference on "
        f"{len(_edge_names())} edge problems and the examples; inputs of {', '.join(tiers)}"
    )
    testing = [
        run.start_worker("tests", {"backend": b, "problems": _edge_names()}, run.env()) for b, _ in backends
    ]
    bundles = {tier: str(run.folder / f"inputs-{tier}.pickle") for tier in tiers}
    making = [
        run.start_worker("inputs", {"tier": t, "path": p, "kernels": kernels}, run.env(JAX_PLATFORMS="cpu"))
        for t, p in bundles.items()
    ]
    failures: list[str] = []
    tests: list[dict] = []
    for (backend, _), started in zip(backends, testing):
        records, why = run.finish(started, max(run.deadline - time.time(), 60))
        tests += records
        failed = [r for r in records if not r["ok"]]
        print(
            f"    {backend}: {len(records) - len(failed)} passed, {len(failed)} failed "
            f"({time.time() - run.start:.0f} s since the start)",
            flush=True,
        )
        for record in failed:
            print(
                f"      FAILED {record['implementation']} on {record['problem']}: {record['message'][:300]}"
            )
        failures += [f"{r['implementation']} on {r['problem']}" for r in failed]
        if why:
            failures.append(f"the {backend} tests: {why}")
    for tier, started in zip(tiers, making):
        records, why = run.finish(started, max(run.deadline - time.time(), 60))
        if why:
            raise RuntimeError(f"the inputs of {tier} could not be made: {why}")
        print(f"    inputs of {tier}: {records[0]}", flush=True)

    benchmarks: list[dict] = []
    jobs = [(b, d, t) for t in tiers for b, d in backends] + [
        ("cpu", threads, None) for threads in ("1", "all")
    ]
    for index, (backend, device, tier) in enumerate(jobs):
        left = len(jobs) - index
        share = max(run.deadline - time.time(), 0.0) / left
        deadline = time.time() + share
        if backend == "cpu":
            _say(f"CPU: each kernel's compute pick, LENSKERN_NUM_THREADS={device}, at {', '.join(tiers)}")
            spec = {"threads": device, "inputs": bundles, "kernels": kernels, "deadline": deadline}
            env = run.env(LENSKERN_NUM_THREADS=device, JAX_PLATFORMS="cpu")
            env.pop("NUMBA_ENABLE_CUDASIM", None)
        else:
            where = (
                ("the simulator" if backend == "numba_cuda" else "JAX's CPU device")
                if use_simulator
                else "the GPU"
            )
            _say(f"device: {backend} at {tier} on {where} (about {share:.0f} s)")
            spec = {
                "backend": backend,
                "device": device,
                "tier": tier,
                "inputs": bundles[tier],
                "kernels": kernels,
                "deadline": deadline,
                "speedup": 1.0 if use_simulator else DEVICE_SPEEDUP,
            }
            env = run.env()
        began = time.time()
        records, why = run.run("cpu" if backend == "cpu" else "device", spec, env, share + 120)
        benchmarks += [{**r, "backend": backend} for r in records]
        done = [r for r in records if "kernel_time" in r]
        broken = [r for r in records if "failed" in r]
        print(
            f"    {len(done)} timed, {len(records) - len(done) - len(broken)} not run, {len(broken)} failed "
            f"in {time.time() - began:.0f} s",
            flush=True,
        )
        for record in broken:
            print(f"      FAILED {record['implementation']}: {record['failed'][:300]}", flush=True)
        failures += [f"{r['implementation']} at {r['tier']}: {r['failed'][:200]}" for r in broken]
        if why:
            failures.append(f"{backend} at {tier or 'every tier'}: {why}")

    _say(f"results into {out}")
    commit = commit or _commit()
    written = write_results(out, machine, commit, environment, benchmarks, use_simulator)
    summary = {
        "machine": machine,
        "commit": commit,
        "simulator": use_simulator,
        "tiers": tiers,
        "environment": environment,
        "tests": tests,
        "benchmarks": benchmarks,
        "failures": failures,
        "seconds": time.time() - run.start,
    }
    (out / "gpu-check.json").write_text(json.dumps(summary, indent=1))
    markdown = table(summary)
    (out / "gpu-check.md").write_text(markdown)
    print(markdown, flush=True)
    for path in written:
        print(f"    {path}", flush=True)
    shutil.rmtree(run.folder, ignore_errors=True)
    seconds = time.time() - run.start
    print(
        f"done in {seconds:.0f} s{' (simulator)' if use_simulator else ''}; "
        f"{'FAILED: ' + '; '.join(failures) if failures else 'every test passed'}",
        flush=True,
    )
    return 1 if failures else 0


def _edge_names() -> list[str]:
    from lenskern import agreement

    return list(agreement.EDGE_SIZES)


def _commit() -> str:
    """git's HEAD here, else the commit stamped into lenskern, else zeros."""
    done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    if done.returncode == 0 and done.stdout.strip():
        return done.stdout.strip()
    try:
        from lenskern._commit import COMMIT

        return COMMIT
    except ImportError:
        return "0" * 40


# --- asv's result files ------------------------------------------------------


def _median(value) -> float | None:
    if isinstance(value, list):
        return statistics.median(value) if value else None
    return value


def _quartile(samples, q: int) -> float | None:
    if not isinstance(samples, list) or len(samples) < 2:
        return None
    return statistics.quantiles(samples, n=4, method="inclusive")[q // 25 - 1]


def _asv_rows(records: list[dict], benchmarks: dict[str, str]) -> dict[str, list]:
    """asv's ``results`` object: per benchmark, a row of asv's COLUMNS over
    the parameters (call = kernel/implementation, tier) in product order."""
    calls = sorted({f"{r['kernel']}/{r['implementation']}" for r in records if "implementation" in r})
    tiers = sorted({r["tier"] for r in records})
    if not calls:
        return {}
    by_key = {
        (f"{r['kernel']}/{r['implementation']}", r["tier"]): r for r in records if "implementation" in r
    }
    params = [[repr(c) for c in calls], [repr(t) for t in tiers]]
    combos = [(c, t) for c in calls for t in tiers]
    rows = {}
    now = int(time.time() * 1000)
    for field, name in benchmarks.items():
        values = [by_key.get(combo, {}).get(field) for combo in combos]
        if all(v is None for v in values):
            continue
        timed = any(isinstance(v, list) for v in values)
        samples = [v if isinstance(v, list) else None for v in values] if timed else None
        row = [
            [_median(v) for v in values],
            params,
            hashlib.sha256(name.encode()).hexdigest(),  # no suite defines these: a fixed version per name
            now,
            0.0,
            None,
            None,
            [_quartile(s, 25) for s in samples] if samples else None,
            [_quartile(s, 75) for s in samples] if samples else None,
            [1 if s else None for s in samples] if samples else None,
            [len(s) if s else None for s in samples] if samples else None,
            samples,
        ]
        rows[name] = row
    return rows


def write_results(
    out: Path, machine: str, commit: str, environment: dict, benchmarks: list[dict], simulator: bool
) -> list[Path]:
    """asv's machine record and result files (format version 2) under
    ``out/results/<machine>/``: one for the device, one per CPU thread
    setting, each environment named as such. Returns the files written."""
    folder = out / "results" / machine
    folder.mkdir(parents=True, exist_ok=True)
    gpu = "simulator" if simulator else (environment.get("driver") or "none")
    info = {
        "machine": machine,
        "arch": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": platform.processor() or platform.machine(),
        "num_cpu": str(os.cpu_count()),
        "ram": str(_ram()),
        "gpu": gpu,
    }
    (folder / "machine.json").write_text(json.dumps({**info, "version": 1}, indent=4))
    python = ".".join(platform.python_version_tuple()[:2])
    written = []
    groups = [("gpu-check-device", {}, [r for r in benchmarks if r["backend"] != "cpu"], DEVICE_BENCHMARKS)]
    for threads in ("1", "all"):
        mine = [r for r in benchmarks if r["backend"] == "cpu" and r.get("threads") == threads]
        groups.append((f"gpu-check-cpu-{threads}", {"LENSKERN_NUM_THREADS": threads}, mine, CPU_BENCHMARKS))
    for env_name, env_vars, records, names in groups:
        data = {
            "commit_hash": commit,
            "env_name": env_name,
            "date": _commit_date(commit),
            "params": {**info, "python": python},
            "python": python,
            "requirements": {},
            "env_vars": env_vars,
            "result_columns": list(COLUMNS),
            "results": _asv_rows([r for r in records if "tier" in r], names),
            "durations": {},
            "version": 2,
        }
        path = folder / f"{commit[:8]}-{env_name}.json"
        path.write_text(json.dumps(data, separators=(",", ":")))
        written.append(path)
    return written


def _ram() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
    except (ValueError, OSError):
        return 0


def _commit_date(commit: str) -> int:
    """The commit's time in JavaScript milliseconds, as asv files it (now, where git does not know it)."""
    done = subprocess.run(["git", "log", "-1", "--format=%ct", commit], capture_output=True, text=True)
    if done.returncode == 0 and done.stdout.strip().isdigit():
        return int(done.stdout.strip()) * 1000
    return int(time.time() * 1000)


# --- the markdown table ------------------------------------------------------


def _time(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:,.3f} {unit}"
    return f"{seconds / 1e-9:,.1f} ns"


def _size(count: float | None) -> str:
    if count is None:
        return "n/a"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:,.1f} {unit}"
    return f"{count:,.0f} B"


def table(summary: dict) -> str:
    """The check's markdown: what ran where, the tests, then per tier one row
    per device implementation beside the CPU's answer to the same kernel."""
    environment = summary["environment"]
    lines = [f"# GPU check: `{summary['machine']}`, commit `{summary['commit'][:8]}`", ""]
    if summary["simulator"]:
        lines += [
            "**No GPU: these are Numba's CUDA simulator and JAX's CPU device**, at "
            f"{', '.join(summary['tiers'])}; the times measure the simulator, not a GPU.",
            "",
        ]
    else:
        lines += [
            f"GPU: {environment.get('driver') or 'not named by nvidia-smi'}; JAX devices: "
            f"{', '.join(environment.get('jax_devices') or []) or 'none'}.",
            "",
        ]
    versions = ", ".join(
        f"{k} {environment[k]}"
        for k in ("python", "numba", "numba-cuda", "jax", "jaxlib")
        if environment.get(k)
    )
    lines += [f"Versions: {versions}; {environment.get('cpus')} CPU cores.", ""]
    tests = summary["tests"]
    failed = [t for t in tests if not t["ok"]]
    lines += [
        f"Tests: {len(tests) - len(failed)} passed, {len(failed)} failed (every implementation against "
        "the reference on the edge problems and the examples, whole and in its device parts)."
    ]
    lines += [f"- FAILED `{t['implementation']}` on {t['problem']}: {t['message'][:200]}" for t in failed]
    lines += [
        f"- {f}" for f in summary["failures"] if not any(f.startswith(t["implementation"]) for t in failed)
    ]
    lines.append("")
    cpu = {(r["kernel"], r["tier"], r["threads"]): r for r in summary["benchmarks"] if r["backend"] == "cpu"}
    cores = next((r.get("cores") for r in cpu.values() if r["threads"] == "all"), None)
    for tier in summary["tiers"]:
        lines += [
            f"## `{tier}`",
            "",
            "| kernel | implementation | kernel | transfer in | transfer out | first call "
            f"| peak device memory | error vs CPU | CPU: `compute`'s pick | 1 thread "
            f"| {cores or 'all'} threads | speed-up |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        rows = [r for r in summary["benchmarks"] if r["backend"] != "cpu" and r["tier"] == tier]
        rows.sort(key=lambda r: (_kernel_order(r["kernel"]), r["implementation"]))
        for r in rows:
            one, every = cpu.get((r["kernel"], tier, "1"), {}), cpu.get((r["kernel"], tier, "all"), {})
            cells = [f"`{r['kernel']}`", f"`{r['implementation']}`"]
            if "kernel_time" not in r:
                why = r.get("skipped") or f"FAILED: {r.get('failed', '')[:160]}"
                cells += [why] + [""] * 5
            else:
                cells += [
                    _time(_median(r["kernel_time"])) + ("" if r.get("parts") else " (whole call)"),
                    _time(_median(r.get("transfer_in"))),
                    _time(_median(r.get("transfer_out"))),
                    _time(r.get("first_call")),
                    _size(r.get("peak_bytes")),
                    "n/a" if r.get("error") is None else f"{r['error']:.1e}",
                ]
            gpu_seconds = sum(
                _median(r.get(k)) or 0.0 for k in ("transfer_in", "kernel_time", "transfer_out")
            )
            best_cpu = _median(every.get("kernel_time"))
            speedup = (
                f"{best_cpu / gpu_seconds:.2f}x" if best_cpu and "kernel_time" in r and gpu_seconds else "n/a"
            )
            cells += [
                f"`{one.get('implementation') or every.get('implementation') or 'n/a'}`",
                _time(_median(one.get("kernel_time"))),
                _time(best_cpu),
                speedup,
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "Kernel: the median of its samples on inputs already on the device, waited on; transfers in and "
        "out apart; first call: the whole call, compilation included. Peak device memory: numba_cuda's "
        "count of its own arrays during one call, inputs included; JAX's statistics, the device's "
        "high-water mark since its process started (none on JAX's CPU device). Error: max |got - CPU| / "
        "max |CPU| against `compute`'s answer on the CPU. Speed-up: the CPU on every core against kernel "
        "and both transfers.",
        "",
    ]
    return "\n".join(lines)


def _kernel_order(kernel: str) -> int:
    from lenskern import registry

    return registry.NAMES.index(kernel) if kernel in registry.NAMES else len(registry.NAMES)


if __name__ == "__main__":
    with open(sys.argv[2]) as handle:
        WORKERS[sys.argv[1]](json.load(handle))
