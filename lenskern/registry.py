"""The one registry that tests, benchmarks and the README table all walk.

Each backend module (``lenskern/backends/<backend>.py``) decorates its
kernels with :func:`implements`. The backends are imported lazily, the first
time the registry is asked: a backend whose library is not installed is
recorded in :data:`UNAVAILABLE` with the reason, never an import error.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lenskern import validate

#: The kernels of SPEC section 2, in pipeline order.
KERNELS = (
    "w_tilde",
    "w_offsets",
    "w_tilde_from_offsets",
    "dirty_image",
    "mapping_matrix",
    "data_vector",
    "curvature_matrix",
    "regularization_matrix",
    "reconstruction",
    "noise_normalization",
    "log_evidence",
)

#: The small JIT examples of the seeds, kept as kernels on every backend.
EXAMPLES = ("quadratic_formula", "fma", "fused_expression")

#: Backends in the order they are shown; ``reference`` is the oracle.
BACKENDS = ("reference", "numpy", "numba", "jax")

#: (kernel, backend) pairs deliberately not implemented, with the reason.
#: A test fails if a pair is neither registered nor listed here.
NOT_IMPLEMENTED: dict[tuple[str, str], str] = {}

#: Backends that could not be imported here, with the reason.
UNAVAILABLE: dict[str, str] = {}

#: Relative tolerance of every implementation against ``reference``, per kernel
#: (SPEC section 3). Arrays compare element-wise with an absolute floor of
#: ``rtol * max|reference|``: W and the offset table have entries that cancel
#: to near zero, where only a tolerance on the scale of the array is meaningful.
TOLERANCE = dict.fromkeys(KERNELS + EXAMPLES, 1e-9)

_REGISTRY: dict[str, dict[str, Implementation]] = {k: {} for k in KERNELS + EXAMPLES}


@dataclass(frozen=True)
class Implementation:
    """One way to compute one kernel on one backend.

    ``function`` takes canonical inputs (SPEC section 1, or earlier kernels'
    outputs) by keyword and assumes they were validated; calling the
    Implementation validates first, so bad input never reaches compiled code.
    """

    kernel: str
    backend: str
    algorithm: str
    function: Callable[..., Any] = field(repr=False)
    inputs: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.backend}.{self.algorithm}"

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.function) or ""
        return doc.splitlines()[0] if doc else ""

    def bind(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Select, check and convert the inputs this implementation takes."""
        missing = [name for name in self.inputs if name not in inputs]
        if missing:
            raise TypeError(
                f"{self.kernel} implementation {self.name!r} needs input(s) {', '.join(map(repr, missing))}"
            )
        return validate.check({name: inputs[name] for name in self.inputs})

    def __call__(self, **inputs: Any) -> Any:
        return self.function(**self.bind(inputs))


class Implementations(dict):
    """``{implementation name: Implementation}`` plus ``missing``:
    ``{backend: reason}`` for each backend that has none here."""

    missing: dict[str, str]


def implements(kernel: str, algorithm: str) -> Callable[[Callable], Callable]:
    """Register the decorated function as ``<backend>.<algorithm>`` of ``kernel``.

    The backend is the name of the defining module in ``lenskern.backends``;
    the inputs are the function's parameter names, which must be canonical.
    """
    if kernel not in _REGISTRY:
        raise ValueError(f"unknown kernel {kernel!r}")

    def decorate(function: Callable) -> Callable:
        backend = function.__module__.rsplit(".", 1)[-1]
        inputs = tuple(inspect.signature(function).parameters)
        unknown = set(inputs) - set(validate.SPECS)
        if unknown:
            raise ValueError(f"{function.__qualname__}: non-canonical input(s) {sorted(unknown)}")
        impl = Implementation(kernel, backend, algorithm, function, inputs)
        if impl.name in _REGISTRY[kernel]:
            raise ValueError(f"{kernel}: {impl.name} registered twice")
        _REGISTRY[kernel][impl.name] = impl
        return function

    return decorate


_loaded_backends: set[str] = set()


def load_backend(backend: str) -> bool:
    """Import one backend once; record the reason if its library is missing."""
    if backend not in _loaded_backends:
        _loaded_backends.add(backend)
        try:
            importlib.import_module(f"lenskern.backends.{backend}")
        except ImportError as error:
            if (error.name or "").startswith("lenskern"):
                raise  # a bug in lenskern, not a missing library
            UNAVAILABLE[backend] = f"{backend} needs a library that is not installed: {error}"
    return backend not in UNAVAILABLE


def load_backends() -> None:
    """Import every backend once; record those whose library is missing."""
    for backend in BACKENDS:
        load_backend(backend)


def implementation(kernel: str, name: str) -> Implementation:
    """One implementation by name, importing only its backend (a benchmark
    process needs one backend, and NumPy, Numba and JAX each take a while)."""
    if kernel not in _REGISTRY:
        raise ValueError(f"kernel: unknown kernel {kernel!r}; expected one of {KERNELS + EXAMPLES}")
    backend = name.split(".", 1)[0]
    if backend in BACKENDS and not load_backend(backend):
        raise ValueError(f"impl: {name} is unavailable here ({UNAVAILABLE[backend]})")
    if name not in _REGISTRY[kernel]:
        why = NOT_IMPLEMENTED.get((kernel, backend), "not registered")
        raise ValueError(f"impl: {kernel} has no implementation {name!r} ({why})")
    return _REGISTRY[kernel][name]


def implementations(kernel: str) -> Implementations:
    """All registered implementations of ``kernel`` that can run here."""
    if kernel not in _REGISTRY:
        raise ValueError(f"kernel: unknown kernel {kernel!r}; expected one of {KERNELS + EXAMPLES}")
    load_backends()
    found = Implementations(_REGISTRY[kernel])
    found.missing = {b: UNAVAILABLE[b] for b in BACKENDS if b in UNAVAILABLE}
    found.missing.update({b: reason for (k, b), reason in NOT_IMPLEMENTED.items() if k == kernel})
    return found


#: Preferred implementations, fastest first, from the measurements in the
#: README; ``compute`` takes the first that is installed and whose inputs
#: were given.
RECOMMENDED = {
    "w_tilde": (
        "numpy.nufft",
        "numba.offsets",
        "numpy.gemm",
        "numpy.offsets",
        "jax.gemm",
        "reference.direct",
    ),
    # NUFFT first, down to NUFFT_MIN_TERMS (the measured ratios are in WHY).
    "w_offsets": ("numpy.nufft", "numba.half", "numpy.half", "jax.half", "reference.direct"),
    "w_tilde_from_offsets": ("numba.gather", "numpy.gather", "jax.gather", "reference.gather"),
    "dirty_image": ("numpy.nufft", "numpy.gemv", "numba.direct", "jax.gemv", "reference.direct"),
    "mapping_matrix": ("numba.scatter", "numpy.scatter", "jax.scatter", "reference.loop"),
    "data_vector": ("numba.sparse", "numpy.sparse", "numpy.dense", "jax.sparse", "reference.loop"),
    # "tiled" never forms W and was the fastest for sparse mappings (dense
    # ones: _order); with only W at hand, SciPy's sparse product beats Numba's.
    "curvature_matrix": (
        "numba.tiled",
        "numpy.sparse",
        "numba.sparse",
        "numba.offsets",
        "numpy.dense",
        "jax.sparse",
        "reference.loop",
    ),
    "regularization_matrix": ("numba.loop", "numpy.scatter", "jax.scatter", "reference.loop"),
    "reconstruction": ("numpy.cholesky", "numba.cholesky", "jax.cholesky", "reference.cholesky"),
    "noise_normalization": ("numpy.vector", "numba.loop", "jax.vector", "reference.loop"),
    "log_evidence": (
        "numba.offsets",
        "numpy.offsets",
        "numba.raw",
        "numpy.raw",
        "jax.offsets",
        "jax.raw",
        "reference.direct",
    ),
    "quadratic_formula": ("numba.parallel", "jax.jit", "numpy.vector", "reference.loop"),
    "fma": ("numba.parallel", "jax.jit", "numpy.vector", "reference.loop"),
    "fused_expression": ("numba.parallel", "jax.jit", "numpy.vector", "reference.loop"),
}


#: Why RECOMMENDED's first choice leads, from the measurements in the README
#: (`small` tier, one thread, unless said); the README's table shows these.
WHY = {
    "w_tilde": "numpy.nufft: the NUFFT table, then one gather; ~80x numba.offsets (the seeds' compact "
    "expanded) at seed-1core",
    "w_offsets": "numpy.nufft: one type-1 NUFFT; 73x the direct half table at small, ~500x at seed-1core; "
    "a direct sum below NUFFT_MIN_TERMS",
    "w_tilde_from_offsets": "numba.gather: a parallel write, one subtraction per entry, huge pages; ~2x "
    "NumPy's np.take at seed-1core",
    "dirty_image": "numpy.nufft: one type-3 NUFFT; 26x the direct sum at small, ~300x at seed-1core; "
    "a direct sum below NUFFT_MIN_TERMS",
    "mapping_matrix": "numba.scatter: 3x NumPy's fancy-index scatter",
    "data_vector": "numba.sparse: T^T d over the B slots, no (M, S) matrix",
    "curvature_matrix": "numba.tiled: W never formed, half the pairs by symmetry, vectorised row runs; ~3x "
    "numpy.sparse (which needs W), ~8x numba.sparse at seed-1core on 1 thread; numpy.dense when B > S/5",
    "regularization_matrix": "numba.loop: 3x NumPy's scatter",
    "reconstruction": "numpy.cholesky: LAPACK; numba.cholesky is 1.25x faster only at small S",
    "noise_normalization": "numpy.vector: one pass, as fast as the compiled loop",
    "log_evidence": "numba.offsets: the precomputed table and dirty image, tiled curvature (lk.Likelihood "
    "runs the same per call)",
    "quadratic_formula": "numba.parallel: one fused, vectorised pass; 4.7x NumPy on one thread at 5e6",
    "fma": "numba.parallel: four arrays per vectorised pass, no temporaries; 4x NumPy on one thread at 5e6",
    "fused_expression": "numba.parallel: one fused pass over both cores",
}

#: Below this many (output entry, visibility) terms a direct sum beats a
#: NUFFT, whose set-up (FFT plan, spreading kernel) costs ~0.5 ms whatever the
#: size: measured 0.02 ms direct vs 0.6 ms NUFFT at `tiny` (1.4e3 terms), 94 ms
#: vs 1.3 ms at `small` (9e6 terms); direct sums run at ~10 ns per term.
NUFFT_MIN_TERMS = 100_000


def _direct_terms(kernel: str, inputs: Mapping[str, Any]) -> int | None:
    """Output entries x visibilities of a direct sum over K, or None if the
    inputs do not say (they are validated later, by the call)."""
    try:
        k = len(inputs["uv"])
        if kernel == "w_offsets":
            ny, nx = (int(n) for n in inputs["shape_native"])
            return (2 * ny - 1) * (2 * nx - 1) * k
        return len(inputs["grid"]) * k
    except (KeyError, TypeError, ValueError):
        return None


def nufft_pays(kernel: str, inputs: Mapping[str, Any]) -> bool:
    """Whether a NUFFT beats the direct sum over K for ``kernel`` at the size
    of ``inputs`` (see NUFFT_MIN_TERMS); True when the inputs do not say."""
    terms = _direct_terms(kernel, inputs)
    return terms is None or terms >= NUFFT_MIN_TERMS


def _worth_it(impl: Implementation, inputs: Mapping[str, Any]) -> bool:
    """Whether ``impl`` pays off at the size of ``inputs``."""
    return impl.algorithm != "nufft" or nufft_pays(impl.kernel, inputs)


#: A mapping with more slots than this fraction of the source pixels is
#: nearly dense, and then T^T (W T) by BLAS beats every sparse algorithm:
#: numpy.dense ~47 GFLOP/s against numba.tiled's ~2-4e9 updates/s, so dense
#: wins for B > ~S/5 (measured at seed-gpu, B = S = 256: 14 ms against 65 ms;
#: at seed-1core, B = 3: 184 ms against 6-10 ms).
DENSE_MAPPING_FRACTION = 0.2


def _order(kernel: str, inputs: Mapping[str, Any]) -> list[str]:
    """RECOMMENDED[kernel], with the dense curvature first for dense mappings."""
    names = list(RECOMMENDED[kernel])
    if kernel == "curvature_matrix":
        try:
            dense = np.shape(inputs["pix_indexes"])[1] > DENSE_MAPPING_FRACTION * int(inputs["n_sources"])
        except (KeyError, IndexError, TypeError, ValueError):
            dense = False
        if dense:
            names.remove("numpy.dense")
            names.insert(0, "numpy.dense")
    return names


def recommended(kernel: str, inputs: Mapping[str, Any]) -> Implementation:
    """The preferred implementation of ``kernel`` that can run on ``inputs``,
    at their size: RECOMMENDED's order (a dense curvature first for a dense
    mapping), less those that do not pay off there."""
    found = implementations(kernel)
    order = _order(kernel, inputs)
    candidates = [found[n] for n in order if n in found]
    candidates += [i for n, i in found.items() if n not in order]
    for impl in candidates:
        if all(name in inputs for name in impl.inputs) and _worth_it(impl, inputs):
            return impl
    needs = " or ".join(sorted({"(" + ", ".join(i.inputs) + ")" for i in candidates}))
    raise TypeError(f"{kernel}: no implementation can run on the given inputs; it needs {needs}")


def compute(kernel: str, impl: str | None = None, **inputs: Any) -> Any:
    """Compute ``kernel`` from any superset of its inputs (SPEC section 3).

    ``impl=None`` picks the recommended implementation for the installed
    backends and the given inputs.
    """
    if impl is None:
        chosen = recommended(kernel, inputs)
    else:
        found = implementations(kernel)
        if impl not in found:
            why = found.missing.get(impl.split(".", 1)[0])
            raise ValueError(
                f"impl: {kernel} has no implementation {impl!r}"
                + (f" ({why})" if why else f"; available: {sorted(found)}")
            )
        chosen = found[impl]
    return chosen(**inputs)
