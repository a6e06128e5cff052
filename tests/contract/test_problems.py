"""make_problem: valid by construction, and the same arrays in every version."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given

import lenskern as lk
from conftest import problem_sizes
from lenskern import validate


def checksum(problem: lk.Problem) -> str:
    """A digest of every input, floats rounded to 10 significant digits so a
    last-bit difference between libm versions does not count as a change."""
    digest = hashlib.sha256()
    for name in sorted(problem):
        value = np.asarray(problem[name])
        if value.dtype.kind in "fc":
            parts = [value.real, value.imag] if value.dtype.kind == "c" else [value]
            for part in parts:
                scale = float(np.abs(part).max()) or 1.0
                digest.update(np.round(part / scale, 10).tobytes())
        else:
            digest.update(value.astype(np.int64 if value.dtype.kind != "b" else bool).tobytes())
        digest.update(name.encode())
    return digest.hexdigest()[:16]


#: Published benchmark history compares these exact problems: a change here
#: is a change of every benchmark's input, and needs a new preset instead.
CHECKSUMS = {
    ("tiny", 0): "77a8a22ecd0b67a8",
    ("tiny", 1): "e722d8bba363a145",
    ("small", 0): "30682e77487d06d1",
    ("seed-1core", 0): "500b4555ee774987",
    ("seed-gpu", 0): "0927710324a080f7",
    ("peer-800", 0): "4f42dd2a97564fca",
}


@pytest.mark.parametrize(("preset", "seed"), list(CHECKSUMS))
def test_presets_never_change(preset, seed):
    assert checksum(lk.make_problem(preset, seed=seed)) == CHECKSUMS[(preset, seed)]


@pytest.mark.parametrize("preset", ["tiny", "small", "seed-1core", "seed-gpu", "peer-800"])
def test_presets_are_valid_and_have_the_spec_sizes(preset):
    problem = lk.make_problem(preset)
    validate.check(dict(problem))
    sizes = lk.PRESETS[preset]
    for key in ("K", "B", "P", "S"):
        assert problem.sizes[key] == sizes[key]
    assert problem.sizes["M"] == int((~problem["mask"]).sum())


def test_peer_800_is_shaped_like_pyautoarrays_profiling_cases():
    """An 800 x 800 grid whose circular mask (radius 3.5" at 0.05") leaves
    ~15,000 pixels and a border: the case the crop to the mask is for."""
    problem = lk.make_problem("peer-800")
    assert problem["shape_native"] == (800, 800)
    assert problem.sizes["M"] == 15_380
    assert lk.crop_to_mask(problem)["shape_native"] == (140, 140)


def test_mask_radius_is_named_when_wrong():
    with pytest.raises(ValueError, match="mask_radius"):
        lk.make_problem({"N": 8, "K": 3, "B": 1, "S": 2, "mask": "annulus", "mask_radius": 0.1})
    with pytest.raises(ValueError, match="mask_radius"):
        lk.make_problem({"N": 8, "K": 3, "B": 1, "S": 2, "mask_radius": -1.0})


def test_seed_gpu_uses_every_slot():
    problem = lk.make_problem("seed-gpu")
    assert (problem["pix_indexes"] >= 0).all()
    assert all(len(set(row)) == len(row) for row in problem["pix_indexes"])


def test_different_seeds_differ():
    assert checksum(lk.make_problem("tiny", seed=0)) != checksum(lk.make_problem("tiny", seed=1))


@given(sizes=problem_sizes(max_side=9, max_k=40, max_s=20))
def test_generated_problems_are_valid(sizes):
    problem = lk.make_problem(sizes, seed=3)
    validate.check(dict(problem))  # symmetric neighbours, index ranges, grid matches native_index
    weights, indexes = problem["pix_weights"], problem["pix_indexes"]
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-12)
    assert (weights[indexes >= 0] > 0).all()
    assert ((indexes >= 0).sum(axis=1) >= 1).all()
    for row in indexes:
        valid = row[row >= 0]
        assert len(set(valid)) == len(valid), "a pixel maps to one source pixel twice"
    assert (problem["neighbors_sizes"] <= problem["neighbors"].shape[1]).all()
    assert (problem["noise"] > 0).all()


def test_tracks_are_arcs_not_a_disc():
    """Earth-rotation tracks: each baseline traces an ellipse, so consecutive
    samples of one baseline lie close together, unlike a uniform disc."""
    tracks = lk.make_problem({"preset": "small", "uv": "tracks"})["uv"]
    disc = lk.make_problem({"preset": "small", "uv": "disc"})["uv"]

    def nearest_neighbour_distance(uv):
        d = np.hypot(*(uv[:, None, :] - uv[None, :, :]).transpose(2, 0, 1))
        np.fill_diagonal(d, np.inf)
        return np.median(d.min(axis=1)) / np.abs(uv).max()

    assert nearest_neighbour_distance(tracks[:1000]) < 0.5 * nearest_neighbour_distance(disc[:1000])


def test_masks_with_holes_and_non_square_grids():
    annulus = lk.make_problem({"shape_native": (9, 13), "K": 5, "B": 2, "S": 4, "mask": "annulus"})
    mask = annulus["mask"]
    assert mask.shape == (9, 13) and mask[4, 6], "the annulus has a masked centre"
    custom = np.ones((3, 5), dtype=bool)
    custom[1, [0, 4]] = False
    problem = lk.make_problem({"shape_native": (3, 5), "K": 3, "B": 1, "S": 2, "mask": custom})
    np.testing.assert_array_equal(problem["native_index"], [[1, 0], [1, 4]])


@pytest.mark.parametrize(
    ("sizes", "error", "match"),
    [
        ("huge", ValueError, "unknown preset"),
        (3, TypeError, "preset name or a dict"),
        ({"N": 4, "K": 0, "B": 1, "S": 2}, ValueError, "K must be"),
        ({"N": 4, "K": 3, "B": 3, "S": 2}, ValueError, "B = 3"),
        ({"N": 4, "K": 3, "B": 1, "S": 2, "mask": np.ones((4, 4), bool)}, ValueError, "M = 0"),
        ({"N": 4, "K": 3, "B": 1, "S": 2, "colour": 1}, ValueError, "colour"),
        ({"N": 4, "K": 3, "B": 1, "S": 2, "uv": "spiral"}, ValueError, "uv"),
    ],
)
def test_bad_sizes_are_named(sizes, error, match):
    with pytest.raises(error, match=match):
        lk.make_problem(sizes)
