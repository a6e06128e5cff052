"""Instructions executed by one steady-state call, counted under Valgrind.

Timings on shared machines wobble; the instructions a call executes do not.
:func:`count` runs one implementation in a child Python under Valgrind's
callgrind and counts only the call: the child imports, builds its inputs,
compiles and warms the call with instrumentation off, then switches
instrumentation on, calls once more to warm callgrind's simulated caches,
and brackets one further call with collection on. The count is of that
call alone; the process's own start-up and JIT compilation, which are not
deterministic, are never counted.

The requests that switch instrumentation and collection are Valgrind client
requests: a magic instruction sequence that is a no-op on the real CPU and
a message to Valgrind under it. They are issued from Python without a C
compiler: llvmlite (which Numba brings) compiles the sequence as inline
assembly once, and ctypes calls it.

What the numbers are, and are not:

- Valgrind runs the program on one thread (it serialises threads), so the
  child runs with ``LENSKERN_NUM_THREADS=1``.
- Valgrind's virtual CPU does not offer AVX-512: NumPy's dispatch and
  Numba's compiler take their AVX2 code paths, so the counts are of those,
  not of what a machine with AVX-512 runs.
- ``estimated_cycles`` is callgrind's cache-simulation estimate,
  Ir + 10 L1 misses + 100 last-level misses, a model, not a measurement.
- Where the machine exposes hardware counters (``perf stat -e instructions``
  works: bare-metal nodes often, this kind of VM not), those count the real
  CPU's paths; this module does not read them.

Only x86-64 Linux is supported (the client request is x86-64 assembly).
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: Client request codes, from Valgrind's valgrind.h and callgrind.h: the
#: callgrind requests are numbered from VG_USERREQ_TOOL_BASE('C', 'T').
RUNNING_ON_VALGRIND = 0x1001
_CALLGRIND = (ord("C") << 24) | (ord("T") << 16)
TOGGLE_COLLECT = _CALLGRIND + 2
START_INSTRUMENTATION = _CALLGRIND + 4
STOP_INSTRUMENTATION = _CALLGRIND + 5

#: The x86-64 client request: %rax points to the request and its five
#: arguments, %rdx holds the default result (what a real CPU leaves there),
#: and the four rotations of %rdi (128 bits in all: %rdi is unchanged)
#: followed by xchg %rbx,%rbx is the sequence Valgrind recognises.
_REQUEST_IR = r"""
define i64 @valgrind_request(i64* %args, i64 %default) {
entry:
  %result = call i64 asm sideeffect "rolq $$3, %rdi\0Arolq $$13, %rdi\0Arolq $$61, %rdi\0Arolq $$51, %rdi\0Axchgq %rbx, %rbx", "={rdx},{rax},0,~{memory},~{dirflag},~{fpsr},~{flags}"(i64* %args, i64 %default)
  ret i64 %result
}
"""  # noqa: E501  one line of LLVM assembly

#: callgrind's events with the cache simulation on, and the weights of its
#: cycle estimate (callgrind manual: Ir + 10 L1 misses + 100 LL misses).
EVENTS = ("Ir", "Dr", "Dw", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw")
L1_MISSES = ("I1mr", "D1mr", "D1mw")
LL_MISSES = ("ILmr", "DLmr", "DLmw")


def supported() -> str | None:
    """Why instruction counts cannot be taken here, or None."""
    if platform.machine() not in ("x86_64", "AMD64") or sys.platform != "linux":
        return f"Valgrind client requests are written for x86-64 Linux, not {platform.machine()}"
    if shutil.which("valgrind") is None:
        return "valgrind is not installed (Debian package: valgrind)"
    return None


@functools.cache
def _request_function():
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    llvm.initialize_native_asmparser()
    module = llvm.parse_assembly(_REQUEST_IR)
    module.verify()
    machine = llvm.Target.from_default_triple().create_target_machine()
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    address = engine.get_function_address("valgrind_request")
    signature = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64), ctypes.c_uint64)
    return engine, signature(address)  # the engine owns the code: keep it alive


def client_request(request: int, *args: int, default: int = 0) -> int:
    """Issue one Valgrind client request; ``default`` outside Valgrind."""
    words = (ctypes.c_uint64 * 6)(request, *args, *([0] * (5 - len(args))))
    return int(_request_function()[1](words, default))


#: The CPU Numba compiles for, in the counting runs: a fixed AVX2 target
#: (Haswell's features), what Valgrind's virtual CPU offers, so the code
#: compiled at normal speed before Valgrind starts is the code counted under
#: it (Numba's cache is keyed by CPU name and features), and every machine
#: counts the same code path.
NUMBA_CPU = {
    "NUMBA_CPU_NAME": "haswell",
    "NUMBA_CPU_FEATURES": "+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+cx8,+f16c,+fma,+fsgsbase,+fxsr,"
    "+invpcid,+lzcnt,+mmx,+movbe,+pclmul,+popcnt,+rdrnd,+sahf,+sse,+sse2,+sse3,+sse4.1,+sse4.2,"
    "+ssse3,+x87,+xsave,+xsaveopt",
}


def _prepare(kernel: str, name: str, tier: str, folder: Path) -> None:
    """At normal speed, before Valgrind: build and bind the inputs, and
    compile the call into Numba's on-disk cache."""
    import lenskern as lk
    from lenskern import problems, registry

    impl = registry.implementation(kernel, name)
    if kernel in registry.EXAMPLES:
        inputs = problems.make_examples(tier)
    else:
        inputs = dict(lk.make_problem(tier))
        for intermediate in registry.INTERMEDIATES:  # in order: each may need the ones before
            if intermediate != "w_tilde" or "w_tilde" in impl.inputs:
                inputs[intermediate] = lk.compute(intermediate, **inputs)
    bound = impl.bind(inputs)
    impl.function(**bound)
    with open(folder / "inputs.pickle", "wb") as handle:
        pickle.dump(bound, handle)


def _child(kernel: str, name: str, folder: Path) -> None:
    """Under Valgrind: load the inputs, warm, count one call."""
    from lenskern import registry

    if not client_request(RUNNING_ON_VALGRIND):
        raise SystemExit("counts: the child must run under valgrind")
    impl = registry.implementation(kernel, name)
    with open(folder / "inputs.pickle", "rb") as handle:
        bound = pickle.load(handle)
    impl.function(**bound)  # loads the compiled code, with instrumentation off
    client_request(START_INSTRUMENTATION)
    impl.function(**bound)  # warms callgrind's caches and translations
    client_request(TOGGLE_COLLECT)
    impl.function(**bound)
    client_request(TOGGLE_COLLECT)
    client_request(STOP_INSTRUMENTATION)
    (folder / "done").write_text("counted")


def _parse(path: Path) -> dict[str, int]:
    """callgrind's event totals, from the ``events:`` and ``summary:`` lines."""
    events, totals = None, None
    for line in path.read_text().splitlines():
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith(("summary:", "totals:")):
            totals = [int(n) for n in line.split()[1:]]
    if events is None or totals is None:
        raise RuntimeError(f"{path}: no callgrind totals")
    return dict(zip(events, totals + [0] * (len(events) - len(totals))))


def _all_cpus() -> None:
    """In a counting child: undo the one-CPU window lenskern gave its parent
    (LENSKERN_NUM_THREADS=1 narrows the affinity, and children inherit it),
    so concurrent counts run on different CPUs; the kernel keeps the mask
    within the process's cpuset."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, range(os.cpu_count() or 1))


#: ``python -c`` running the file named by its first argument as __main__,
#: with the rest as its arguments.
_RUN_THIS_FILE = (
    "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def count(kernel: str, name: str, tier: str = "small", timeout: float = 900) -> dict[str, int]:
    """Counts of one steady-state call of ``name`` on ``kernel`` at ``tier``:
    ``instructions`` (callgrind's Ir), ``estimated_cycles`` and the raw events."""
    reason = supported()
    if reason:
        raise RuntimeError(reason)
    with tempfile.TemporaryDirectory(prefix="lenskern-counts-") as folder:
        folder = Path(folder)
        env = dict(
            os.environ,
            **NUMBA_CPU,
            LENSKERN_NUM_THREADS="1",
            PYTHONHASHSEED="0",  # the same dict layouts in every run
            NUMBA_CACHE_DIR=str(folder / "numba"),
        )
        this = [sys.executable, "-c", _RUN_THIS_FILE, __file__]
        prepare = [*this, "--prepare", kernel, name, tier, str(folder)]
        # This file, run by path: the counting is this module's, the code
        # counted the installed lenskern's (or PYTHONPATH's), which may be
        # another commit's (benchmarks/counts.py loads the checkout's copy of
        # this module); cwd: the folder, so no checkout shadows it.
        run = subprocess.run(prepare, env=env, cwd=folder, capture_output=True, text=True, timeout=timeout,
                             preexec_fn=_all_cpus)  # fmt: skip
        if run.returncode != 0:
            raise RuntimeError(f"preparing {name} of {kernel} failed:\n{run.stderr[-3000:]}")
        command = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no", "--collect-atstart=no",
            "--cache-sim=yes", f"--callgrind-out-file={folder / 'callgrind.out'}",
            *this, "--child", kernel, name, tier, str(folder),
        ]  # fmt: skip
        run = subprocess.run(command, env=env, cwd=folder, capture_output=True, text=True, timeout=timeout,
                             preexec_fn=_all_cpus)  # fmt: skip
        if run.returncode != 0 or not (folder / "done").exists():
            raise RuntimeError(f"counting {name} of {kernel} failed:\n{run.stderr[-3000:]}")
        events = _parse(folder / "callgrind.out")
    cycles = (
        events["Ir"]
        + 10 * sum(events.get(e, 0) for e in L1_MISSES)
        + 100 * sum(events.get(e, 0) for e in LL_MISSES)
    )
    return {"instructions": events["Ir"], "estimated_cycles": cycles, "events": events}


#: The calls benchmarks/counts.py counts, when set: ``kernel/implementation``
#: pairs, comma-separated (``python -m lenskern.observatory compare`` sets it
#: to the recommended implementations plus those of the backends a pull
#: request changed). Unset: each kernel's first choice in RECOMMENDED.
CALLS_VARIABLE = "LENSKERN_COUNT_CALLS"


def recommended_calls() -> list[str]:
    """``kernel/implementation`` of each kernel's first choice (recommend.RECOMMENDED)."""
    from lenskern import recommend, registry

    return [f"{kernel}/{recommend.preferred(kernel)[0]}" for kernel in registry.NAMES]


def calls() -> list[str]:
    """The calls to count: :data:`CALLS_VARIABLE`'s, else :func:`recommended_calls`."""
    value = os.environ.get(CALLS_VARIABLE, "")
    return [call.strip() for call in value.split(",") if call.strip()] or recommended_calls()


def count_many(calls: list[str], tier: str = "small", workers: int | None = None) -> dict[str, dict | str]:
    """:func:`count` of each ``kernel/implementation``, one Valgrind process
    per CPU at a time (Valgrind runs a program on one thread, so a count
    uses one CPU; counts are deterministic, so running them side by side
    changes none). {call: counts, or why it could not be counted}; a line
    per count on stdout as each finishes, so a long run shows progress."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    workers = workers or os.cpu_count() or 1
    found: dict[str, dict | str] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(count, *call.split("/"), tier): call for call in calls}
        for done, future in enumerate(as_completed(futures), 1):
            call = futures[future]
            try:
                found[call] = future.result()
                outcome = f"{found[call]['instructions']:,} instructions"
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as error:  # a backend missing here
                found[call] = str(error).splitlines()[0]
                outcome = f"not counted: {found[call]}"
            print(f"[{done}/{len(calls)}] {call}: {outcome}", flush=True)
    return {call: found[call] for call in calls}


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lenskern.observatory.counts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("kernel")
    parser.add_argument("implementation")
    parser.add_argument("tier", nargs="?", default="small")
    parser.add_argument("out", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.prepare:
        _prepare(args.kernel, args.implementation, args.tier, Path(args.out))
        return
    if args.child:
        _child(args.kernel, args.implementation, Path(args.out))
        return
    print(json.dumps(count(args.kernel, args.implementation, args.tier), indent=2))


if __name__ == "__main__":
    main()
