"""Bad data never gives a silent wrong answer (SPEC section 3): finite
inputs outside the kernels' domain are refused before any compiled code
runs, redundant inputs are checked against each other, and every
implementation's answer to an extreme but admitted input is finite and the
reference's.

The cases that crashed a process (a segfault in FINUFFT, a double free in
jax-finufft) run in a child process, so a regression fails a test instead of
the session.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import lenskern as lk
from conftest import all_implementations, assert_agrees, reference_impl, with_intermediates
from lenskern import conventions, registry, validate

TINY = with_intermediates(lk.make_problem("tiny", seed=3))
EXAMPLES = lk.problems.make_examples("tiny")
IMPLS = all_implementations()


def _inputs(impl: lk.Implementation) -> dict:
    return dict(EXAMPLES) if impl.kernel in lk.EXAMPLES else dict(TINY)


def _perturbable(impl: lk.Implementation) -> list[str]:
    """The real or complex inputs a perturbation can reach with the reference
    seeing the same information: measured inputs (intermediates are rebuilt
    from them), an intermediate the reference reads too, and the offset
    table where the reference reads W (rebuilt from the table)."""
    reads = set(reference_impl(impl.kernel).inputs)
    found = []
    for name in impl.inputs:
        if getattr(validate.SPECS[name], "kind", "") not in ("float", "complex"):
            continue
        if (
            name not in registry.INTERMEDIATES
            or name in reads
            or (name == "w_offsets" and "w_tilde" in reads)
        ):
            found.append(name)
    return found


def _rebuilt(inputs: dict, kept: str) -> dict | None:
    """``inputs`` with every intermediate but ``kept`` rebuilt by the
    reference, so the perturbation reaches all of them (W from a perturbed
    table); None where the reference refuses one (then no consistent
    reference exists)."""
    rebuilt = dict(inputs)
    try:
        if kept == "pixel_scale" and "grid" in rebuilt:  # the grid is the pixel centres at that scale
            rebuilt["grid"] = conventions.pixel_centres(
                rebuilt["native_index"], rebuilt["shape_native"], rebuilt["pixel_scale"]
            )
        if kept == "w_offsets" and "native_index" in rebuilt:
            rebuilt["w_tilde"] = reference_impl("w_tilde_from_offsets")(**rebuilt)
        for kernel in registry.INTERMEDIATES:
            if kernel not in (kept, "w_tilde" if kept == "w_offsets" else kept) and kernel in rebuilt:
                rebuilt[kernel] = reference_impl(kernel)(**rebuilt)
    except (ValueError, TypeError, MemoryError):
        return None
    return rebuilt


#: Where a clear error may come from: an input by name, the kernel (a result
#: checked after the call), or the implementation chosen.
def _assert_clear(error: Exception, impl: lk.Implementation) -> None:
    if isinstance(error, np.linalg.LinAlgError):
        return  # NumPy's, Numba's, SciPy's and now JAX's: a matrix not positive definite
    subject = str(error).split(":", 1)[0].split(" ", 1)[0]
    assert subject in set(validate.SPECS) | {impl.kernel, "impl"}, f"{type(error).__name__}: {error}"


@pytest.mark.parametrize("impl", IMPLS, ids=[f"{i.kernel}-{i.name}" for i in IMPLS])
@given(data=st.data())
def test_extreme_finite_inputs_give_a_clear_error_or_the_reference(impl, data):
    """One input, or one entry of it, at a magnitude from 1e-320 to 1e308
    (either side of every bound of lenskern.conventions): a ValueError,
    TypeError, MemoryError or LinAlgError that names what is wrong, or a
    finite result equal to the reference's."""
    names = _perturbable(impl)
    assert names, f"{impl.name}: no input to perturb"
    inputs = _inputs(impl)
    name = data.draw(st.sampled_from(names), label="input")
    exponents = [-320, -300, -200, -60, -49, 49, 60, 119, 121, 200, 308]
    exponent = data.draw(st.sampled_from(exponents), label="10^")
    value = np.array(inputs[name], dtype=np.result_type(inputs[name], np.float64))
    if data.draw(st.booleans(), label="whole array"):
        with np.errstate(over="ignore"):
            value = value * (10.0**exponent)
        assume(np.isfinite(value).all())  # finite inputs: infinities are refused by name already
    else:
        flat = value.reshape(-1)
        sign = data.draw(st.sampled_from([1.0, -1.0]), label="sign")
        flat[data.draw(st.integers(0, flat.size - 1), label="entry")] = sign * 10.0**exponent
    inputs[name] = value.item() if value.ndim == 0 else value
    rebuilt = _rebuilt(inputs, name) if impl.kernel in lk.KERNELS else inputs
    try:
        got = impl(**(rebuilt or inputs))
    except (ValueError, TypeError, MemoryError) as error:
        _assert_clear(error, impl)
        return
    parts = got.values() if isinstance(got, dict) else (got,)  # a streamed kernel's, by name
    assert all(np.isfinite(np.asarray(part)).all() for part in parts), (
        f"{impl.name} returned a non-finite result silently"
    )
    if rebuilt is None:
        return
    try:
        expected = reference_impl(impl.kernel)(**rebuilt)
    except np.linalg.LinAlgError:
        return  # a matrix on the edge of positive definiteness: factored there, refused by the loops
    conditioned = impl.kernel in ("reconstruction", "log_evidence")
    assert_agrees(impl.kernel, got, expected, rebuilt if conditioned else None)


# ---------------------------------------------------------------- the crashes


def _run_child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=600
    )


def test_uv_and_noise_that_crashed_the_nufft_libraries_are_refused_in_a_child():
    """uv[12, 0] = 1e308 segfaulted numpy.nufft and aborted jax.nufft; 1e15
    gave raw library errors; noise = 1e-200 made the tables non-finite."""
    result = _run_child(
        """
        import numpy as np, lenskern as lk
        problem = dict(lk.make_problem("tiny"))
        cases = []
        for value in (1e308, 1e15):
            uv = np.array(problem["uv"]); uv[12, 0] = value
            cases.append(("uv", value, dict(problem, uv=uv)))
        noise = np.array(problem["noise"]); noise[3] = 1e-200
        cases.append(("noise", 1e-200, dict(problem, noise=noise)))
        for name, value, inputs in cases:
            for kernel in ("dirty_image", "w_offsets", "w_tilde"):
                for impl in lk.implementations(kernel):
                    try:
                        lk.compute(kernel, impl=impl, **inputs)
                        print("ACCEPTED", name, value, kernel, impl)
                    except ValueError as error:
                        assert str(error).startswith(name + ":"), (impl, error)
            try:
                lk.Likelihood(**inputs).log_evidence(**inputs)
                print("ACCEPTED", name, value, "Likelihood")
            except ValueError as error:
                assert str(error).startswith(name + ":"), error
        print("done")
        """
    )
    assert result.returncode == 0, f"rc {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "ACCEPTED" not in result.stdout and result.stdout.strip().endswith("done"), result.stdout


# ------------------------------------------------------------- the domain


def test_a_phase_beyond_float64s_digits_names_uv():
    uv = np.array(TINY["uv"]) * 1e6
    with pytest.raises(ValueError, match=r"^uv: the phase .* rad over the grid"):
        lk.compute("dirty_image", **dict(TINY, uv=uv))
    # pixel_scale and shape_native set the reach where no grid is given
    table_inputs = {n: TINY[n] for n in ("uv", "noise", "pixel_scale", "shape_native")}
    with pytest.raises(ValueError, match=r"^uv: the phase .* pixel_scale and shape_native"):
        lk.compute("w_offsets", **dict(table_inputs, uv=uv))


def test_the_generators_phases_stay_far_inside_the_domain():
    """MAX_PHASE's comment: the science grid's problems reach about 1.5e3 rad."""
    science = lk.make_problem({"preset": "science", "K": 2000, "S": 20})
    phase, _ = validate.largest_phase(validate.check({n: science[n] for n in ("uv", "grid")}))
    assert 1.2e3 < phase < 1.6e3 and phase < conventions.MAX_PHASE / 100


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("noise", 1e-51, r"^noise: non-zero magnitude 1e-51 is outside the kernels' domain \(at least 1e-50"),
        ("pix_weights", 1e-320, r"^pix_weights: non-zero magnitude 1e-320 is outside"),
        ("visibilities", 1e51, r"^visibilities: magnitude 1e\+51 is outside the kernels' domain"),
        ("pix_weights", -1e60, r"^pix_weights: magnitude 1e\+60"),
        ("coefficient", 1e51, r"^coefficient: 1e\+51 is outside"),
        (
            "pixel_scale",
            1e-60,
            r"^pixel_scale: 1e-60 is outside the kernels' domain \(1e-50 to 1e\+50 in magnitude, or 0\)",
        ),
        ("n_sources", 10**20, r"^n_sources: 100000000000000000000 does not fit a 64-bit integer"),
    ],
)
def test_values_outside_the_domain_name_their_argument(name, value, message):
    inputs = dict(TINY)
    if name in ("noise", "visibilities", "pix_weights"):
        array = np.array(inputs[name])
        array.reshape(-1)[np.argmax(np.abs(array.reshape(-1)) > 0)] = value
        value = array
    inputs[name] = value
    kernel = {"noise": "noise_normalization", "visibilities": "dirty_image", "pix_weights": "mapping_matrix",
              "coefficient": "regularization_matrix", "pixel_scale": "w_offsets",
              "n_sources": "mapping_matrix"}[name]  # fmt: skip
    with pytest.raises(ValueError, match=message):
        lk.compute(kernel, **inputs)


def test_derived_inputs_have_their_own_bound():
    big = TINY["w_tilde"] / np.abs(TINY["w_tilde"]).max() * 1e119
    dense = lk.implementations("curvature_matrix")["numpy.dense"]  # reads W alone: no table to disagree with
    assert np.isfinite(dense(**dict(TINY, w_tilde=big))).all()
    with pytest.raises(ValueError, match=r"^w_tilde: magnitude 1(\.\d+)?e\+121 .*\(at most 1e\+120"):
        dense(**dict(TINY, w_tilde=big * 100))


def test_ragged_lists_and_bad_impl_name_their_argument():
    with pytest.raises(ValueError, match=r"^uv: not a rectangular array"):
        lk.compute("dirty_image", **dict(TINY, uv=[[1.0, 2.0], [3.0]]))
    with pytest.raises(TypeError, match=r"^impl: expected an implementation name .* got int"):
        lk.compute("dirty_image", impl=123, **TINY)
    with pytest.raises(TypeError, match=r"^impl: .* got list"):
        lk.compute("dirty_image", impl=["numpy.gemv"], **TINY)


# ----------------------------------------------------- one error policy


def _not_positive_definite() -> dict:
    inputs = dict(TINY)
    inputs["curvature_matrix"] = -10 * np.eye(len(TINY["data_vector"]))
    return inputs


@pytest.mark.parametrize("impl", all_implementations(["reconstruction"]), ids=lambda i: i.name)
def test_every_reconstruction_raises_linalgerror_on_a_matrix_not_positive_definite(impl):
    with pytest.raises(np.linalg.LinAlgError):
        impl(**_not_positive_definite())


FROM_TABLE = [i for i in all_implementations(["log_evidence"]) if "w_offsets" in i.inputs]


@pytest.mark.parametrize("impl", FROM_TABLE, ids=lambda i: i.name)
def test_every_log_evidence_raises_linalgerror_when_f_plus_h_is_not_positive_definite(impl):
    """A negated offset table makes F = T^T W T negative semidefinite; with a
    weak regularization F + H is not positive definite (jax.offsets gave NaN)."""
    with pytest.raises(np.linalg.LinAlgError):
        impl(**dict(TINY, w_offsets=-TINY["w_offsets"], coefficient=1e-3))


def test_jax_cholesky_raises_like_numpy():
    jax_impl = lk.implementations("reconstruction").get("jax.cholesky")
    if jax_impl is None:
        pytest.skip("JAX is not installed")
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        jax_impl(**_not_positive_definite())


def test_redundant_inputs_are_checked_against_each_other():
    with pytest.raises(
        ValueError, match=r"^w_tilde: entry \(\d+, \d+\) is -[\d.]+ but w_offsets .* gives [\d.]+"
    ):
        lk.compute("curvature_matrix", **dict(TINY, w_tilde=-TINY["w_tilde"]))
    with pytest.raises(ValueError, match=r"^mapping_matrix: row \d+ differs from what pix_indexes"):
        lk.compute("curvature_matrix", **dict(TINY, mapping_matrix=TINY["mapping_matrix"] * 1.01))
    # both from the same data agree: the NUFFT's table beside the direct W
    table = lk.compute("w_offsets", impl="numpy.nufft", **TINY)
    lk.compute("curvature_matrix", **dict(TINY, w_offsets=table))


def test_a_call_beyond_the_memory_available_is_refused_before_it_allocates(monkeypatch):
    monkeypatch.setattr(registry, "available_bytes", lambda: 1 << 20)
    monkeypatch.setattr(registry, "ALWAYS_FITS_BYTES", 0)
    problem = lk.make_problem(dict(shape_native=(24, 24), K=8, S=4, B=2, P=2, mask="full"))
    # M = 576: W is 576^2 floats, 2.53 MiB
    expected = r"^w_tilde by \w+\.\w+ would allocate about 2\.53 MiB, more than the 1 MiB available here"
    with pytest.raises(MemoryError, match=expected):
        lk.compute("w_tilde", **problem)
    impl = lk.implementations("dirty_image")["numpy.nufft"]
    assert impl.estimated_bytes(impl.bind(problem)) > 8 * len(problem["grid"])  # the fine grid counts
    monkeypatch.undo()
    huge = dict(problem, n_sources=10**9)  # T is M x S floats: refused at any memory, before it allocates
    gib = len(problem["grid"]) * 10**9 * 8 / 2**30
    with pytest.raises(
        MemoryError, match=rf"^mapping_matrix by \w+\.\w+ would allocate about {re.escape(f'{gib:.3g}')} GiB"
    ):
        lk.compute("mapping_matrix", **{n: huge[n] for n in ("pix_indexes", "pix_weights", "n_sources")})


def test_likelihood_checks_impl_and_mask_at_construction():
    with pytest.raises(TypeError, match=r"^impl: expected a dict \{kernel: implementation name\}"):
        lk.Likelihood(impl="numba.tiled", **TINY)
    with pytest.raises(ValueError, match=r"^impl: curvature_matrix has no implementation 'numba\.nope'"):
        lk.Likelihood(impl={"curvature_matrix": "numba.nope"}, **TINY)
    with pytest.raises(ValueError, match=r"^mask: every pixel is masked"):
        lk.Likelihood(**dict(TINY, mask=np.ones_like(TINY["mask"])))


@pytest.mark.parametrize("name", ["w_offsets", "w_tilde", "curvature_matrix", "regularization_matrix"])
def test_inputs_spec_defines_as_symmetric_must_be(name):
    """numba.tiled reads half the offset table, a Cholesky one triangle: a
    table or matrix that is not symmetric would give each a different answer."""
    kernel = "curvature_matrix" if name in ("w_offsets", "w_tilde") else "reconstruction"
    broken = np.array(TINY[name])
    broken.reshape(-1)[1] += 0.5 * np.abs(broken).max()
    inputs = {n: TINY[n] for n in lk.implementations(kernel)[next(iter(lk.implementations(kernel)))].inputs}
    inputs[name] = broken
    with pytest.raises(ValueError, match=rf"^{name}: not symmetric"):
        lk.compute(kernel, **inputs)
