"""Laws the kernels obey whatever the implementation (each law runs every
registered implementation), and an independent dense check of the log
evidence."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import lenskern as lk
from conftest import problems, with_intermediates


def every(kernel):
    """Every registered implementation of ``kernel``, for a law to run on each."""
    return lk.implementations(kernel).values()


@given(problem=problems())
def test_w_tilde_is_symmetric_positive_semidefinite(problem):
    inputs = with_intermediates(problem)
    for impl in every("w_tilde"):
        w = impl(**inputs)
        np.testing.assert_allclose(w, w.T, rtol=0, atol=1e-12 * np.abs(w).max(), err_msg=impl.name)
        assert np.linalg.eigvalsh(w).min() >= -1e-9 * np.abs(w).max(), impl.name
        np.testing.assert_allclose(
            np.diag(w), np.sum(1 / problem["noise"] ** 2), rtol=1e-12, err_msg=impl.name
        )


@given(problem=problems())
def test_offset_table_is_even_and_centred_on_the_total_weight(problem):
    ny, nx = problem["shape_native"]
    for impl in every("w_offsets"):
        table = impl(**problem)
        atol = 1e-12 * np.abs(table).max()
        np.testing.assert_allclose(table, table[::-1, ::-1], rtol=0, atol=atol, err_msg=impl.name)
        centre = np.sum(1 / problem["noise"] ** 2)
        np.testing.assert_allclose(table[ny - 1, nx - 1], centre, rtol=1e-12, err_msg=impl.name)


@given(problem=problems())
def test_curvature_and_regularization_are_symmetric(problem):
    inputs = with_intermediates(problem)
    for impl in every("curvature_matrix"):
        f = impl(**inputs)
        atol = 1e-11 * max(np.abs(f).max(), 1e-300)
        np.testing.assert_allclose(f, f.T, rtol=0, atol=atol, err_msg=impl.name)
        assert np.linalg.eigvalsh(f).min() >= -1e-9 * np.abs(f).max(), impl.name
    for impl in every("regularization_matrix"):
        h = impl(**inputs)
        np.testing.assert_array_equal(h, h.T, err_msg=impl.name)
        # zero row sums but the ridge
        np.testing.assert_allclose(h.sum(axis=1), 1e-8, rtol=1e-6, err_msg=impl.name)


#: Scale factors: zero, or inside the kernels' domain (validate refuses a
#: non-zero magnitude below 1 / MAX_MAGNITUDE, so a * visibilities must stay
#: above it; XLA also flushes subnormals to zero, which is not non-linearity).
SCALES = st.floats(-3, 3).filter(lambda v: v == 0 or abs(v) > 1e-6)


@given(problem=problems(), a=SCALES, b=SCALES)
def test_data_vector_is_linear_in_the_visibilities(problem, a, b):
    rng = np.random.default_rng(0)
    other = rng.normal(size=len(problem["noise"])) + 1j * rng.normal(size=len(problem["noise"]))

    def data_vector(dirty_impl, data_impl, visibilities):
        inputs = dict(problem, visibilities=visibilities)
        inputs["dirty_image"] = dirty_impl(**inputs)
        inputs["mapping_matrix"] = lk.compute("mapping_matrix", **inputs)
        return data_impl(**inputs)

    for dirty_impl in every("dirty_image"):
        for data_impl in every("data_vector"):
            pair = (dirty_impl, data_impl)
            combined = data_vector(*pair, a * problem["visibilities"] + b * other)
            separate = a * data_vector(*pair, problem["visibilities"]) + b * data_vector(*pair, other)
            atol = 1e-9 * np.abs(separate).max()
            np.testing.assert_allclose(combined, separate, rtol=1e-9, atol=atol,
                                       err_msg=f"{dirty_impl.name}, {data_impl.name}")  # fmt: skip


def dense_log_evidence(problem) -> float:
    """The evidence the textbook way: explicit complex model visibilities,
    residual chi-squared at the MAP source and slogdet; no kernel of lenskern."""
    grid, uv, noise = problem["grid"], problem["uv"], problem["noise"]
    phase = 2 * np.pi * (np.outer(uv[:, 0], grid[:, 1]) + np.outer(uv[:, 1], grid[:, 0]))
    t = np.zeros((len(grid), problem["n_sources"]))
    for i, (row, weights) in enumerate(zip(problem["pix_indexes"], problem["pix_weights"])):
        for s, weight in zip(row, weights):
            if s >= 0:
                t[i, s] += weight
    design = np.exp(-1j * phase) @ t / noise[:, None]  # (K, S), whitened
    data = problem["visibilities"] / noise
    c2 = problem["coefficient"] ** 2
    h = np.diag(1e-8 + c2 * problem["neighbors_sizes"]).astype(float)
    for s, row in enumerate(problem["neighbors"]):
        h[s, row[row >= 0]] = -c2
    f = (design.conj().T @ design).real
    source = np.linalg.solve(f + h, (design.conj().T @ data).real)
    chi2 = np.sum(np.abs(data - design @ source) ** 2)
    normalization = np.sum(2 * np.log(2 * np.pi * noise**2))
    log_det_fh = np.linalg.slogdet(f + h)[1]
    log_det_h = np.linalg.slogdet(h)[1]
    return -0.5 * (chi2 + source @ h @ source + log_det_fh - log_det_h + normalization)


@given(problem=problems())
def test_log_evidence_matches_an_independent_dense_computation(problem):
    inputs = with_intermediates(problem)
    expected = dense_log_evidence(problem)
    chi2 = np.sum(np.abs(problem["visibilities"]) ** 2 / problem["noise"] ** 2)
    cond = np.linalg.cond(inputs["regularization_matrix"]) + np.linalg.cond(
        inputs["curvature_matrix"] + inputs["regularization_matrix"]
    )
    for impl in lk.implementations("log_evidence").values():
        got = impl(**inputs)
        assert abs(got - expected) <= 1e-9 * max(abs(expected), chi2) + 1e-14 * cond, impl.name


def test_log_evidence_of_the_seed_problem_is_finite_and_prefers_the_data():
    """Shuffling the visibilities destroys the signal: the evidence must drop."""
    problem = lk.make_problem("tiny")
    shuffled = dict(problem, visibilities=np.random.default_rng(1).permutation(problem["visibilities"]))
    assert np.isfinite(lk.compute("log_evidence", **problem))
    assert lk.compute("log_evidence", impl="reference.direct", **problem) > lk.compute(
        "log_evidence", impl="reference.direct", **shuffled
    )
