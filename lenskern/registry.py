"""The one registry that tests, benchmarks and the README tables all walk.

A backend is one module that declares itself (a :class:`Backend` record:
device, peer library, gaps with reasons, thread-pool variables and the hooks
its device needs), as ``BACKEND``, in the package ``lenskern.backends``,
where the registry finds every module without importing it. The module
decorates each kernel with :func:`implements`, declaring there, beside the
definition, everything known about it: kernel, algorithm, cost model and
whether it is its kernel's oracle for sizes where the reference is too slow.

Backends load lazily, the first time the registry is asked. One that cannot
run here, for want of a library or of a device, is "missing, with the reason"
(:data:`UNAVAILABLE`, ``implementations(k).missing``), never an import error.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lenskern import validate
from lenskern.kernels import (  # noqa: F401  the registry's names for them
    DECLARED,
    EXAMPLES,
    INTERMEDIATES,
    KERNELS,
    NAMES,
    STREAMED,
    TOLERANCE,
    Kernel,
    kernel,
    table_size,
)


@dataclass(frozen=True)
class Backend:
    """What a backend declares of itself, as ``BACKEND`` in its own module
    beside its kernels. The registry finds every module of
    ``lenskern.backends`` (:data:`BACKENDS`), so a new backend is its module
    and, for an optional library, an extra in setup.cfg."""

    device: str = "cpu"  # "cpu" or "gpu"
    #: The module whose kernels it registers, where not its own: the same
    #: kernels on another device (``jax_gpu`` registers ``jax``'s).
    kernels: str = ""
    #: The library whose own kernels the backend calls as its users do
    #: ("what users run today", set beside lenskern's own in reports), or ""
    #: for lenskern's code (ducc0's and FINUFFT's transforms included:
    #: lenskern builds its tables on them).
    peer: str = ""
    #: Kernels it does not define, with the reason.
    gaps: Mapping[str, str] = field(default_factory=dict)
    #: For a backend that serves a few kernels (a NUFFT library, an
    #: expression evaluator): the reason for every kernel it neither defines
    #: nor lists in ``gaps``.
    others: str = ""
    #: The environment variables that size its library's thread pool;
    #: lenskern.threads sets them before any backend loads, so it lists them
    #: (a test holds the two lists together).
    threads: tuple[str, ...] = ()
    #: ``unavailable(device) -> str | None``: why it cannot run on ``device``
    #: here (a library that imports but finds no GPU), or None.
    unavailable: Callable[[str], str | None] | None = field(default=None, repr=False)
    #: ``on_device(function, device) -> function``: the function as run on
    #: ``device`` (JAX places inputs, switches on float64 and returns to the
    #: host there), so one module's kernels register once per device.
    on_device: Callable[[Callable, str], Callable] | None = field(default=None, repr=False)
    #: ``synchronize(result)``: wait until the device has finished ``result``,
    #: so that a timer stopped after it covers the work.
    synchronize: Callable[[Any], None] | None = field(default=None, repr=False)
    #: ``device_parts(function, device) -> (to_device, call, to_host) | None``:
    #: a call split into transfers and kernel, for the device benchmarks.
    device_parts: Callable[[Callable, str], Any] | None = field(default=None, repr=False)
    #: ``device_memory(device) -> (reset, peak) | None``: the device's own
    #: count of memory, for the device benchmarks: ``reset()`` starts a new
    #: peak where the counter allows one, ``peak()`` gives its bytes (None
    #: where the device keeps no count).
    device_memory: Callable[[str], Any] | None = field(default=None, repr=False)
    #: ``lacks(device) -> {algorithm: reason}``: algorithms it defines but
    #: cannot run on ``device`` here (a library installed without that
    #: device's build); they are not registered, and the reason is kept in
    #: :data:`LACKING`.
    lacks: Callable[[str], Mapping[str, str]] | None = field(default=None, repr=False)


_PACKAGE = "lenskern.backends"


def _discover(path: list[str] | None = None) -> dict[str, str]:
    """``{backend: module}``: every module (or package) of
    ``lenskern.backends`` (or of the folders ``path``) is a backend, named as
    its module, found without importing it; the reference (the oracle)
    first, then by name."""
    if path is None:
        path = importlib.util.find_spec(_PACKAGE).submodule_search_locations
    names = [m.name for m in pkgutil.iter_modules(path) if not m.name.startswith("_")]
    names.sort(key=lambda name: (name != "reference", name))
    return {name: f"{_PACKAGE}.{name}" for name in names}


#: Backends in the order they are shown, each with the module that declares
#: it (``BACKEND`` there, a :class:`Backend`); ``reference`` is the oracle.
BACKENDS: dict[str, str] = _discover()

_DECLARATIONS: dict[str, Backend] = {}


def module_of(backend: str) -> str:
    """The module that defines ``backend``'s kernels (``jax_gpu`` registers
    ``jax``'s), once its declaration is read; before, its own module."""
    declared = _DECLARATIONS.get(backend)
    return (declared.kernels if declared else "") or BACKENDS[backend]


def declaration(backend: str) -> Backend:
    """What ``backend`` declares of itself; imports its module (an
    ImportError if its library is not installed)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: unknown backend {backend!r}; expected one of {list(BACKENDS)}")
    if backend not in _DECLARATIONS:
        declared = getattr(importlib.import_module(BACKENDS[backend]), "BACKEND", None)
        if not isinstance(declared, Backend):
            raise TypeError(f"{BACKENDS[backend]}: a backend module declares BACKEND, a registry.Backend")
        _DECLARATIONS[backend] = declared
    return _DECLARATIONS[backend]


def parse_name(name: str) -> tuple[str, str]:
    """``(backend, algorithm)`` of an implementation name ``backend.algorithm``
    (SPEC section 3): the one place a name is taken apart."""
    if not isinstance(name, str):
        raise TypeError(
            f"impl: expected an implementation name such as 'numpy.direct', got {type(name).__name__}"
        )
    backend, dot, algorithm = name.partition(".")
    if not (dot and backend and algorithm):
        raise ValueError(f"impl: {name!r} is not an implementation name, which reads backend.algorithm")
    return backend, algorithm


def peer(name: str) -> str:
    """The peer library of implementation ``name`` ("backend.algorithm"),
    or "" for lenskern's own (and for a backend this machine cannot import)."""
    backend = parse_name(name)[0]
    if backend not in BACKENDS:
        return ""
    try:
        return declaration(backend).peer
    except ImportError:
        return ""


#: (kernel, backend) pairs deliberately not implemented, with the reason,
#: from each backend's declaration as it loads. A test fails if a pair is
#: neither registered nor listed here.
NOT_IMPLEMENTED: dict[tuple[str, str], str] = {}

#: Backends that cannot run here, with the reason.
UNAVAILABLE: dict[str, str] = {}

#: (kernel, implementation name) defined by a backend that runs here but not
#: runnable on its device here (``Backend.lacks``), with the reason.
LACKING: dict[tuple[str, str], str] = {}


#: Rough single-core rates of the kinds of operation a cost model counts:
#: interpreted Python operations, transcendental calls (cos, sin, exp) and
#: multiply-adds. Only the order of magnitude matters: the benchmarks use it
#: to skip calls that would take minutes.
RATE = {"python": 3e6, "trig": 5e7, "flop": 5e9}


@dataclass(frozen=True)
class Cost:
    """The docstring's "Cost" line as a function: ``operations(**sizes)``
    counts operations of one ``kind`` (a key of :data:`RATE`) for the sizes
    by symbol (M, K, S, B, P, Ny, Nx; n and W for the examples)."""

    kind: str
    operations: Callable[..., float]

    def __post_init__(self) -> None:
        if self.kind not in RATE:
            raise ValueError(f"cost kind {self.kind!r}: expected one of {sorted(RATE)}")

    def seconds(self, sizes: Mapping[str, Any]) -> float:
        """Estimated seconds of one call on one core."""
        return float(self.operations(**sizes)) / RATE[self.kind]


def available_bytes() -> int:
    """Memory this process may still allocate: Linux's MemAvailable (free
    plus reclaimable cache), else the physical memory."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


#: Calls estimated below this many bytes (64 MiB) skip the check against the
#: memory available: reading /proc/meminfo took 28 us on this project's
#: 2-core VM (timeit of available_bytes, 2026-12-05), as much as a tiny
#: problem's whole call, which a sampler repeats thousands of times.
ALWAYS_FITS_BYTES = 1 << 26


def _size(count: float) -> str:
    """Bytes in MiB or GiB, for messages."""
    return f"{count / 2**30:.3g} GiB" if count >= 2**30 else f"{count / 2**20:.3g} MiB"


@dataclass(frozen=True)
class Implementation:
    """One way to compute one kernel on one backend, and all that is known of it.

    ``function`` takes canonical inputs (SPEC section 1, or earlier kernels'
    outputs) by keyword and assumes they were validated; calling the
    Implementation validates first, so bad input never reaches compiled code.

    Attributes
    ----------
    kernel, backend, algorithm
        What it computes and how: its name is ``backend.algorithm``.
    function
        The backend's function, for validated inputs only.
    inputs
        The canonical inputs it takes, by name (``bind`` picks them from a
        problem).
    cost
        Its declared cost model (flops and bytes from the sizes), which
        ``estimate`` turns into seconds and the benchmarks use to skip
        calls that would take minutes.
    device
        ``"cpu"`` or ``"gpu"``.
    oracle
        Whether large tiers check the others against it.
    memory
        Bytes of temporaries from the checked inputs, where the sizes alone
        do not set them.
    """

    kernel: str
    backend: str
    algorithm: str
    function: Callable[..., Any] = field(repr=False)
    inputs: tuple[str, ...]
    cost: Cost = field(repr=False)
    device: str = "cpu"
    #: The implementation large tiers check the others against, where the
    #: reference would take minutes (one per kernel, on NumPy).
    oracle: bool = False
    #: Bytes of temporaries beyond the output, from the checked inputs, for
    #: algorithms whose working set is not set by the sizes alone (a type-3
    #: NUFFT's fine grid grows with the phases); see :func:`implements`.
    memory: Callable[..., float] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.backend}.{self.algorithm}"

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.function) or ""
        return doc.splitlines()[0] if doc else ""

    def estimated_seconds(self, sizes: Mapping[str, Any]) -> float:
        return self.cost.seconds(sizes)

    def estimated_bytes(self, checked: Mapping[str, Any]) -> float:
        """Bytes this call will allocate: its output, plus its declared temporaries."""
        entries = kernel(self.kernel).entries(**validate.sizes(dict(checked)))
        extra = 0.0
        if self.memory is not None:
            extra = self.memory(**{name: checked[name] for name in inspect.signature(self.memory).parameters})
        return 8.0 * entries + float(extra)

    def bind(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Select, check and convert the inputs this implementation takes."""
        missing = [name for name in self.inputs if name not in inputs]
        if missing:
            raise TypeError(
                f"{self.kernel} implementation {self.name!r} needs input(s) {', '.join(map(repr, missing))}"
            )
        return validate.check({name: inputs[name] for name in self.inputs})

    def run(self, checked: Mapping[str, Any]) -> Any:
        """The call on inputs :func:`validate.check` returned: refused above
        the memory available, and its result checked to be finite."""
        needed = self.estimated_bytes(checked)
        if needed > ALWAYS_FITS_BYTES and needed > (available := available_bytes()):
            raise MemoryError(
                f"{self.kernel} by {self.name} would allocate about {_size(needed)}, "
                f"more than the {_size(available)} available here; "
                "a smaller problem, or the streamed form (lenskern.stream) for large K"
            )
        result = self.function(**{name: checked[name] for name in self.inputs})
        parts = result.values() if isinstance(result, dict) else (result,)  # a streamed kernel's
        if not all(np.isfinite(np.asarray(part)).all() for part in parts):
            raise ValueError(
                f"{self.kernel} by {self.name}: the result is not finite for these inputs, which are "
                "inside the domain (lenskern.validate): a near-singular F + H, or an overflow in float64"
            )
        return result

    def __call__(self, **inputs: Any) -> Any:
        return self.run(self.bind(inputs))


class Implementations(dict):
    """``{implementation name: Implementation}`` plus ``missing``:
    ``{backend: reason}`` for each backend that has none here, and
    ``lacking``: ``{implementation name: reason}`` for each one its backend
    defines but cannot run on its device here."""

    missing: dict[str, str]
    lacking: dict[str, str]


def _backend_module(module: str) -> str:
    """The backend module that a function of ``module`` is defined for: a
    backend that is a package (``lenskern.backends.numba``) defines its
    kernels in submodules (``lenskern.backends.numba.kernels``), filed under
    the package; a module outside ``lenskern.backends`` (a test's toy
    backend) is its own."""
    if module.startswith(f"{_PACKAGE}."):
        return ".".join(module.split(".")[:3])
    return module


@dataclass(frozen=True)
class _Definition:
    kernel: str
    algorithm: str
    function: Callable[..., Any]
    inputs: tuple[str, ...]
    cost: Cost
    oracle: bool
    memory: Callable[..., float] | None


#: backend module name (as :data:`BACKENDS` and :func:`module_of` name it)
#: -> the kernels it defines, in definition order.
_DEFINITIONS: dict[str, list[_Definition]] = {}
_REGISTRY: dict[str, dict[str, Implementation]] = {k: {} for k in NAMES}


def implements(
    kernel: str, algorithm: str, cost: Cost, oracle: bool = False, memory: Callable[..., float] | None = None
) -> Callable:
    """Declare the decorated function as the ``algorithm`` of ``kernel``.

    Its inputs are its parameter names, which must be canonical; parameters
    after ``*`` are options of the algorithm with defaults (a NUFFT's
    accuracy and threads), which the stream passes and ``compute`` leaves at
    their defaults; ``cost`` is
    its docstring's cost line as a :class:`Cost`; ``oracle`` marks the
    implementation large benchmark tiers check the others against;
    ``memory``, a function of canonical inputs by name, the bytes of
    temporaries beyond the output where the sizes alone do not set them. It is
    registered as ``<backend>.<algorithm>`` under every backend of
    :data:`BACKENDS` whose module defines it, when that backend loads.
    """
    if kernel not in _REGISTRY:
        raise ValueError(f"unknown kernel {kernel!r}")
    if not isinstance(cost, Cost):
        raise TypeError(f"{kernel}.{algorithm}: cost must be a registry.Cost")

    def decorate(function: Callable) -> Callable:
        parameters = inspect.signature(function).parameters.values()
        inputs = tuple(p.name for p in parameters if p.kind is not p.KEYWORD_ONLY)
        unknown = set(inputs) - set(validate.SPECS)
        if unknown:
            raise ValueError(f"{function.__qualname__}: non-canonical input(s) {sorted(unknown)}")
        defined = _DEFINITIONS.setdefault(_backend_module(function.__module__), [])
        if any(d.kernel == kernel and d.algorithm == algorithm for d in defined):
            raise ValueError(f"{kernel}: {algorithm} defined twice in {function.__module__}")
        defined.append(_Definition(kernel, algorithm, function, inputs, cost, oracle, memory))
        return function

    return decorate


_loaded_backends: set[str] = set()
_SYNCHRONIZERS: list[Callable[[Any], None]] = []


def load_backend(backend: str) -> bool:
    """Load one backend once: read its declaration (importing its module),
    ask whether it can run here, and register its kernels; record the reason
    if it cannot run."""
    if backend not in _loaded_backends:
        _loaded_backends.add(backend)
        try:
            declared = declaration(backend)
        except ImportError as error:
            if (error.name or "").startswith("lenskern"):
                raise  # a bug in lenskern, not a missing library
            UNAVAILABLE[backend] = f"{backend} needs a library that is not installed: {error}"
            return False
        definitions = _DEFINITIONS.get(module_of(backend), ())
        defined = {d.kernel for d in definitions}
        for kernel, reason in declared.gaps.items():
            if kernel in defined:
                raise ValueError(f"{backend}: defines {kernel} and lists it as a gap")
            NOT_IMPLEMENTED[(kernel, backend)] = reason
        if declared.others:
            for kernel in _REGISTRY:
                if kernel not in defined:
                    NOT_IMPLEMENTED.setdefault((kernel, backend), declared.others)
        reason = declared.unavailable(declared.device) if declared.unavailable else None
        if reason:
            UNAVAILABLE[backend] = reason
            return False
        if declared.synchronize is not None and declared.synchronize not in _SYNCHRONIZERS:
            _SYNCHRONIZERS.append(declared.synchronize)
        lacking = dict(declared.lacks(declared.device)) if declared.lacks else {}
        for d in definitions:
            if d.algorithm in lacking:
                LACKING[(d.kernel, f"{backend}.{d.algorithm}")] = lacking[d.algorithm]
                continue
            function = declared.on_device(d.function, declared.device) if declared.on_device else d.function
            impl = Implementation(d.kernel, backend, d.algorithm, function, d.inputs, d.cost,
                                  declared.device, d.oracle, d.memory)  # fmt: skip
            _REGISTRY[d.kernel][impl.name] = impl
    return backend not in UNAVAILABLE


def synchronizers() -> tuple[Callable[[Any], None], ...]:
    """The waits that the backends loaded and runnable here declare
    (``Backend.synchronize``), each once: what a timer calls before it
    stops, so that it covers an asynchronous device's work."""
    return tuple(_SYNCHRONIZERS)


def load_backends() -> None:
    """Load every backend once; record those that cannot run here."""
    for backend in BACKENDS:
        load_backend(backend)


def _check_kernel(name: str) -> None:
    kernel(name)  # raises ValueError naming the kernels


def implementation(kernel: str, name: str) -> Implementation:
    """One implementation by name, loading only its backend (a benchmark
    process needs one backend, and NumPy, Numba and JAX each take a while)."""
    _check_kernel(kernel)
    backend, _ = parse_name(name)
    if backend in BACKENDS and not load_backend(backend):
        raise ValueError(f"impl: {name} is unavailable here ({UNAVAILABLE[backend]})")
    if name not in _REGISTRY[kernel]:
        why = LACKING.get((kernel, name)) or NOT_IMPLEMENTED.get((kernel, backend), "not registered")
        raise ValueError(f"impl: {kernel} has no implementation {name!r} ({why})")
    return _REGISTRY[kernel][name]


def implementations(kernel: str) -> Implementations:
    """All registered implementations of ``kernel`` that can run here.

    Parameters
    ----------
    kernel
        A kernel's name, one of ``lk.NAMES`` (``"curvature_matrix"``).

    Returns
    -------
    Implementations
        ``{"backend.algorithm": Implementation}`` in registration order, and
        ``missing``: ``{backend: why it has none here}`` (not installed, no
        GPU, or no implementation of this kernel, with the reason), and
        ``lacking``: ``{"backend.algorithm": why}`` for an implementation its
        backend defines but cannot run on its device here.

    Raises
    ------
    ValueError
        If ``kernel`` is not a kernel's name (the message lists them).
    """
    _check_kernel(kernel)
    load_backends()
    found = Implementations(_REGISTRY[kernel])
    found.missing = {b: UNAVAILABLE[b] for b in BACKENDS if b in UNAVAILABLE}
    found.missing.update({b: reason for (k, b), reason in NOT_IMPLEMENTED.items() if k == kernel})
    found.lacking = {name: reason for (k, name), reason in LACKING.items() if k == kernel}
    return found


def declared(kernel: str, backend: str) -> list[str]:
    """The algorithms ``backend``'s module defines for ``kernel``, whether or
    not the backend can run here (none if its module cannot be imported)."""
    _check_kernel(kernel)
    load_backend(backend)
    return [d.algorithm for d in _DEFINITIONS.get(module_of(backend), ()) if d.kernel == kernel]


def oracle(kernel: str) -> Implementation:
    """The implementation declared as ``kernel``'s oracle (see :func:`implements`)."""
    (found,) = [impl for impl in implementations(kernel).values() if impl.oracle]
    return found
