"""Which implementation to run: the recommended order of each kernel's
implementations and why its first choice leads, apart from the registry's
mechanism (:mod:`lenskern.registry` declares and finds implementations; this
module chooses among them), and :func:`compute`, the API that chooses and runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lenskern import conventions, registry, validate
from lenskern.registry import Implementation, implementations, parse_name

#: Preferred implementations, fastest first, from the main job's tables (the
#: README's "measured" table holds the ratios, with machine and commit);
#: ``compute`` takes the first that is installed, whose inputs were given and
#: that pays off at their size.
RECOMMENDED = {
    "w_tilde": (
        "numpy.nufft",
        "numba.offsets",
        "numpy.gemm",
        "numpy.offsets",
        "jax.gemm",
        "reference.direct",
    ),
    # ducc0's NUFFT before FINUFFT's where both are installed: faster on
    # one thread at small and seed-1core, measured side by side.
    "w_offsets": ("ducc0.nufft", "numpy.nufft", "numba.half", "numpy.half", "jax.half", "reference.direct"),
    "w_tilde_from_offsets": ("numba.gather", "numpy.gather", "jax.gather", "reference.gather"),
    "dirty_image": (
        "ducc0.nufft",
        "numpy.nufft",
        "numpy.gemv",
        "numba.direct",
        "jax.gemv",
        "reference.direct",
    ),
    "mapping_matrix": ("numba.scatter", "numpy.scatter", "jax.scatter", "reference.loop"),
    "data_vector": ("numba.sparse", "numpy.sparse", "numpy.dense", "jax.sparse", "reference.loop"),
    # With only W at hand (no offset table), SciPy's sparse product beats Numba's.
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
    # Numba's Cholesky leads at small's S = 128 only (on both thread
    # settings); LAPACK from S = 256 up, 1.25-1.6x (session note of issue 22).
    "reconstruction": ("numpy.cholesky", "numba.cholesky", "jax.cholesky", "reference.cholesky"),
    "noise_normalization": ("numpy.vector", "numba.loop", "jax.vector", "reference.loop"),
    "log_evidence": (
        "numba.tiled",
        "numpy.fft",
        "numba.raw",
        "numpy.raw",
        "jax.offsets",
        "jax.raw",
        "reference.direct",
    ),
    # the stream's order (conventions.nufft_library): ducc0 where installed
    "data_parts": ("ducc0.nufft", "numpy.nufft", "reference.direct"),
    "quadratic_formula": ("numba.parallel", "numexpr.evaluate", "jax.jit", "numpy.vector", "reference.loop"),
    "fma": ("numba.parallel", "numexpr.evaluate", "jax.jit", "numpy.vector", "reference.loop"),
    "fused_expression": (
        "numba.vectorised",
        "numba.parallel",
        "jax.jit",
        "numexpr.evaluate",
        "numpy.vector",
        "reference.loop",
    ),
}


#: Why RECOMMENDED's first choice leads, in words; the measured ratios are in
#: the README's table generated from saved asv results (machine, commit, tier).
WHY = {
    "w_tilde": "numpy.nufft: the offset table by one NUFFT, then one gather; no sum over K per pixel pair",
    "w_offsets": "ducc0.nufft: one type-1 NUFFT instead of a sum over K per offset, ducc0's faster than "
    "FINUFFT's here (numpy.nufft without ducc0); a direct sum below NUFFT_MIN_TERMS",
    "w_tilde_from_offsets": "numba.gather: a parallel write, one subtraction per entry, huge pages",
    "dirty_image": "ducc0.nufft: one type-3 NUFFT instead of a sum over K per pixel, ducc0's faster than "
    "FINUFFT's here (numpy.nufft without ducc0); a direct sum below NUFFT_MIN_TERMS",
    "mapping_matrix": "numba.scatter: one compiled pass over the slots, no fancy-index temporaries",
    "data_vector": "numba.sparse: T^T d over the B slots, no (M, S) matrix",
    "curvature_matrix": "numba.tiled: W never formed, half the pairs by symmetry, vectorised row runs; "
    "numpy.dense when B > S/5",
    "regularization_matrix": "numba.loop: one compiled pass over the neighbours",
    "reconstruction": "numpy.cholesky: LAPACK",
    "noise_normalization": "numpy.vector: one vectorised pass; nothing to compile",
    "log_evidence": "numba.tiled: the precomputed table and dirty image, tiled curvature (lk.Likelihood "
    "runs the same per call)",
    "data_parts": "ducc0.nufft: both transforms on one ducc0 plan, a chunk of 2^22 on the science grid in "
    "0.56 s against FINUFFT's 0.90 s (python -m lenskern stream, commit c62de15); numpy.nufft without ducc0",
    "quadratic_formula": "numba.parallel: one fused, vectorised pass, no temporaries",
    "fma": "numba.parallel: four arrays per vectorised pass, no temporaries",
    "fused_expression": "numba.vectorised: sin and exp as polynomials in SIMD lanes (libm's accuracy), "
    "one fused pass over every core",
}


def sizes_of(inputs: Mapping[str, Any]) -> dict[str, int]:
    """The sizes (M, K, Ny, Nx, B, S) that the given inputs show."""
    sizes = {}
    for symbol, name, read in (
        ("M", "grid", len),
        ("M", "native_index", len),
        ("K", "uv", len),
        ("B", "pix_indexes", lambda a: np.shape(a)[1]),
        ("S", "n_sources", int),
    ):
        if name in inputs and symbol not in sizes:
            sizes[symbol] = read(inputs[name])
    if "shape_native" in inputs:
        sizes["Ny"], sizes["Nx"] = (int(n) for n in inputs["shape_native"])
    return sizes


def worth_it(impl: Implementation, sizes: Mapping[str, int]) -> bool:
    """Whether ``impl`` pays off at ``sizes`` (a NUFFT only above NUFFT_MIN_TERMS)."""
    if impl.algorithm != "nufft":
        return True
    try:
        return conventions.nufft_pays(impl.kernel, sizes)
    except KeyError:  # the inputs do not say: let the call decide
        return True


#: A mapping with more slots than this fraction of the source pixels is
#: nearly dense, and then T^T (W T) by BLAS beats every sparse algorithm: the
#: dense product runs at BLAS's rate while the sparse ones pay an indexed
#: update per slot pair (the seed-gpu tier, B = S, shows it).
DENSE_MAPPING_FRACTION = 0.2


#: Why a kernel with no measured order yet runs its oracle first.
NOT_YET_MEASURED = "not yet measured: its oracle, NumPy's, until the main job's tables order it"


def preferred(kernel: str) -> tuple[str, ...]:
    """RECOMMENDED[kernel]; for a kernel the main job has not yet ordered (a
    new one), its oracle, the implementation large tiers check the others
    against."""
    if kernel in RECOMMENDED:
        return RECOMMENDED[kernel]
    return (registry.oracle(kernel).name,)


def why(kernel: str) -> str:
    """WHY[kernel], or why an unmeasured kernel runs its oracle."""
    return WHY[kernel] if kernel in RECOMMENDED else f"{preferred(kernel)[0]}: {NOT_YET_MEASURED}"


def order(kernel: str, sizes: Mapping[str, int]) -> list[str]:
    """preferred(kernel), with the dense curvature first for dense mappings."""
    names = list(preferred(kernel))
    if kernel == "curvature_matrix" and "B" in sizes and "S" in sizes:
        if sizes["B"] > DENSE_MAPPING_FRACTION * sizes["S"]:
            names.remove("numpy.dense")
            names.insert(0, "numpy.dense")
    return names


def recommended(kernel: str, inputs: Mapping[str, Any]) -> Implementation:
    """The preferred implementation of ``kernel`` that can run on ``inputs``,
    at their size: RECOMMENDED's order (a dense curvature first for a dense
    mapping), less those that do not pay off there."""
    found = implementations(kernel)
    sizes = sizes_of(inputs)
    names = order(kernel, sizes)
    candidates = [found[n] for n in names if n in found]
    rest = [i for n, i in found.items() if n not in names]
    candidates += sorted(rest, key=lambda i: i.backend == "reference")  # plain Python last
    for impl in candidates:
        if all(name in inputs for name in impl.inputs) and worth_it(impl, sizes):
            return impl
    needs = " or ".join(sorted({"(" + ", ".join(i.inputs) + ")" for i in candidates}))
    raise TypeError(f"{kernel}: no implementation can run on the given inputs; it needs {needs}")


def compute(kernel: str, impl: str | None = None, **inputs: Any) -> Any:
    """Compute ``kernel`` from any superset of its inputs (SPEC section 3).

    Every canonical input given is validated, whether or not the chosen
    implementation reads it (a wrong ``grid`` beside a right offset table is
    still an error).

    Parameters
    ----------
    kernel
        A kernel of ``lk.NAMES``: SPEC's (``lk.KERNELS``), the streamed
        ``data_parts`` (``lk.STREAMED``) or a seeds' example (``lk.EXAMPLES``).
    impl
        An implementation name, ``backend.algorithm``; None picks the
        recommended one for the installed backends, the given inputs and
        their size (:func:`recommended`).
    **inputs
        Canonical inputs by name (SPEC section 1) and earlier kernels'
        outputs; any superset of what the implementation takes.

    Returns
    -------
    numpy.ndarray, float or dict
        The kernel's float64 output (SPEC section 2); a streamed kernel's
        outputs by name.

    Raises
    ------
    ValueError
        An unknown kernel or implementation, one unavailable here, or a bad
        input (named), including one outside the kernels' domain; a result
        that is not finite.
    TypeError
        A wrongly typed input, or inputs no implementation can run on.
    MemoryError
        A call that would allocate more than the memory available.
    numpy.linalg.LinAlgError
        F + H not positive definite (reconstruction, log evidence).
    """
    registry.kernel(kernel)  # a known kernel, or a ValueError naming them
    if impl is not None:
        parse_name(impl)  # a name, and one that reads backend.algorithm
    checked = validate.check({name: value for name, value in inputs.items() if name in validate.SPECS})
    if impl is None:
        chosen = recommended(kernel, checked)
    else:
        found = implementations(kernel)
        if impl not in found:
            why = found.lacking.get(impl) or found.missing.get(parse_name(impl)[0])
            raise ValueError(
                f"impl: {kernel} has no implementation {impl!r}"
                + (f" ({why})" if why else f"; available: {sorted(found)}")
            )
        chosen = found[impl]
    missing = [name for name in chosen.inputs if name not in checked]
    if missing:
        raise TypeError(
            f"{kernel} implementation {chosen.name!r} needs input(s) {', '.join(map(repr, missing))}"
        )
    return chosen.run(checked)
