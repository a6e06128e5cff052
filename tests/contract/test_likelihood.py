"""The precomputed log evidence (lk.Likelihood) and the tiled curvature at
sizes that span many tiles and several workers (the property tests'
problems fit in one tile)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

import lenskern as lk
from conftest import assert_agrees, evidence_carried_error, problems, reference_impl, with_intermediates
from lenskern import validate
from lenskern.backends.numba import kernels as numba_kernels


@given(problem=problems())
def test_precomputed_evidence_agrees_with_reference(problem):
    inputs = with_intermediates(problem)
    expected = reference_impl("log_evidence")(**inputs)
    like = lk.Likelihood(**problem)
    carried = evidence_carried_error(inputs, like)
    assert_agrees("log_evidence", like.log_evidence(**problem), expected, inputs, carried)


def test_one_likelihood_serves_new_mappings_and_coefficients():
    """What a sampler does: the data fixed, the mapping and c new each call."""
    data = lk.make_problem(dict(N=12, K=300, S=40, B=3, P=4), seed=5)
    like = lk.Likelihood(**data)
    for seed, coefficient in ((6, 0.5), (7, 2.0), (8, 1.0)):
        source = lk.make_problem(dict(N=12, K=300, S=40 + seed, B=3, P=4), seed=seed)
        call = {**data, **{name: source[name] for name in lk.likelihood.CALL_INPUTS}}
        call["coefficient"] = coefficient
        expected = lk.compute("log_evidence", impl="numpy.raw", **call)
        got = like.log_evidence(**call)
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-9 * abs(expected))


def test_likelihood_rejects_bad_input_by_name():
    data = lk.make_problem("tiny", seed=0)
    with pytest.raises(TypeError, match="'visibilities'"):
        lk.Likelihood(**{k: v for k, v in data.items() if k != "visibilities"})
    like = lk.Likelihood(**data)
    with pytest.raises(TypeError, match="'coefficient'"):
        like.log_evidence(**{k: v for k, v in data.items() if k != "coefficient"})
    with pytest.raises(ValueError, match="pix_indexes"):
        like.log_evidence(
            **{**data, "pix_indexes": data["pix_indexes"][:-1], "pix_weights": data["pix_weights"][:-1]}
        )
    with pytest.raises(ValueError, match="coefficient"):
        like.log_evidence(**{**data, "coefficient": np.nan})


def test_likelihood_takes_named_implementations():
    data = lk.make_problem("tiny", seed=2)
    impl = {"w_offsets": "numpy.half", "dirty_image": "numpy.gemv", "curvature_matrix": "numpy.fft"}
    assert lk.Likelihood(impl=impl, **data).log_evidence(**data) == pytest.approx(
        lk.compute("log_evidence", impl="reference.direct", **data), rel=1e-9
    )


@pytest.mark.parametrize("workers", [1, 2, 3, 7])
@pytest.mark.parametrize(
    "sizes",
    [
        dict(shape_native=(23, 31), K=40, S=37, B=3, P=3, mask="annulus"),  # many tiles, odd count
        dict(shape_native=(40, 40), K=20, S=50, B=2, P=3, mask="full"),  # one row-run tile per image row
        dict(shape_native=(5, 3), K=10, S=4, B=3, P=2, mask="full"),  # fewer pixels than a tile
    ],
    ids=["annulus", "rows", "one-tile"],
)
def test_tiled_curvature_over_tiles_and_workers(sizes, workers):
    problem = lk.make_problem(sizes, seed=4)
    w_offsets = lk.compute("w_offsets", impl="numpy.half", **problem)
    inputs = {**problem, "w_offsets": w_offsets}
    expected = lk.compute("curvature_matrix", impl="numpy.fft", **inputs)
    args = lk.implementations("curvature_matrix")["numba.tiled"].bind(inputs)
    got = numba_kernels._curvature_tiled(
        args["w_offsets"], args["native_index"], args["pix_indexes"], args["pix_weights"],
        args["n_sources"], workers,
    )  # fmt: skip
    assert_agrees("curvature_matrix", got, expected)
    np.testing.assert_array_equal(got, got.T)


def _bordered_masks() -> dict[str, np.ndarray]:
    """Masks (True = masked out) whose unmasked pixels leave a border on
    every side or some: a small disc, an irregular blob with a hole and a
    stray pixel, an annulus off-centre on a non-square grid."""
    y, x = np.mgrid[:14, :17]
    disc = np.hypot(y - 6.5, x - 8) > 4.2
    rng = np.random.default_rng(11)
    blob = np.ones((13, 15), dtype=bool)
    blob[3:9, 6:12] = rng.random((6, 6)) < 0.4
    blob[5, 8] = True  # a hole
    blob[10, 2] = False  # a stray pixel widens the box
    y, x = np.mgrid[:11, :19]
    r = np.hypot(y - 4, x - 12)
    annulus = (r > 4.5) | (r < 2)
    return {"disc": disc, "irregular": blob, "annulus": annulus}


@pytest.mark.parametrize("name", list(_bordered_masks()))
def test_likelihood_crops_the_table_and_keeps_the_evidence(name):
    """The Likelihood's table spans the mask's bounding box only, and its
    evidence is the uncropped reference's."""
    mask = _bordered_masks()[name]
    problem = lk.make_problem(dict(shape_native=mask.shape, mask=mask, K=60, S=9, B=3, P=3), seed=3)
    rows, cols = problem["native_index"].T
    box = (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
    assert box != mask.shape, "the mask must leave a border"
    like = lk.Likelihood(**problem)
    assert like.w_offsets.shape == (2 * box[0] - 1, 2 * box[1] - 1)
    inputs = with_intermediates(problem)
    expected = reference_impl("log_evidence")(**inputs)
    assert_agrees("log_evidence", like.log_evidence(**problem), expected, inputs)


@pytest.mark.parametrize("name", list(_bordered_masks()))
def test_cropped_problem_is_valid_and_the_same_sky(name):
    """crop_to_mask gives a problem that passes validation (its grid is the
    cropped grid's pixel centres) with the same W, dirty image and evidence:
    the visibilities are phase-shifted to the new origin."""
    mask = _bordered_masks()[name]
    problem = lk.make_problem(dict(shape_native=mask.shape, mask=mask, K=60, S=9, B=3, P=3), seed=3)
    cropped = lk.crop_to_mask(problem)
    validate.check(dict(cropped))
    assert cropped.sizes["Ny"] < problem.sizes["Ny"] or cropped.sizes["Nx"] < problem.sizes["Nx"]
    for kernel in ("w_tilde", "dirty_image", "log_evidence"):
        expected = lk.compute(kernel, impl="reference.direct", **problem)
        got = lk.compute(kernel, impl="reference.direct", **cropped)
        assert_agrees(kernel, got, expected, with_intermediates(problem))
    # w_offsets itself keeps SPEC 2's contract: the full table of the grid it is given.
    assert lk.compute("w_offsets", **cropped).shape == tuple(2 * n - 1 for n in cropped["shape_native"])


def test_crop_leaves_a_borderless_mask_alone():
    problem = lk.make_problem("tiny", seed=0)
    cropped = lk.crop_to_mask(problem)
    assert cropped["shape_native"] == problem["shape_native"]
    for name in ("native_index", "grid", "visibilities", "mask"):
        np.testing.assert_array_equal(cropped[name], problem[name])
