"""Bad input raises a ValueError / TypeError naming the argument, before any
compiled code runs, through compute and through every backend."""

from __future__ import annotations

import numpy as np
import pytest

import lenskern as lk
from conftest import with_intermediates

BASE = with_intermediates(lk.make_problem("tiny"))
EXAMPLE_BASE = dict(
    a=np.array([1.0, 2.0]), b=np.array([5.0, 6.0]), c=np.array([1.0, 1.0]),
    x=np.array([0.5, 2.0]), weights=np.array([1.0, 2.0]), arrays=np.ones((2, 3)),
)  # fmt: skip


def _set(name, value):
    return lambda p: {**p, name: value(p[name]) if callable(value) else value}


def _at(name, index, value):
    def mutate(p):
        array = np.array(p[name], copy=True)
        array[index] = value
        return {**p, name: array}

    return mutate


def _padded_slot_with_weight(p):
    indexes, weights = p["pix_indexes"].copy(), p["pix_weights"].copy()
    indexes[0, -1], weights[0, -1] = -1, 0.5
    return {**p, "pix_indexes": indexes, "pix_weights": weights}


def _asymmetric(p):
    neighbors = p["neighbors"].copy()
    s = int(np.argmax((neighbors >= 0).sum(1) < neighbors.shape[1]))  # a row with a free slot
    free = int(np.argmax(neighbors[s] < 0))
    stranger = next(n for n in range(len(neighbors)) if n != s and n not in neighbors[s])
    neighbors[s, free] = stranger
    sizes = (neighbors >= 0).sum(1)
    return {**p, "neighbors": neighbors, "neighbors_sizes": sizes}


def _empty(*names):
    return lambda p: {**p, **{n: p[n][:0] for n in names}}


#: (id, the argument the error must name, mutation, exception[, inputs an
#: implementation must also take for the case to apply, such as the input a
#: length is compared with])
CASES = [
    ("grid-shape", "grid", _set("grid", lambda g: np.zeros((len(g), 3))), ValueError),
    ("grid-nan", "grid", _at("grid", (0, 0), np.nan), ValueError),
    ("grid-dtype", "grid", _set("grid", lambda g: g.astype(complex)), TypeError),
    ("grid-string", "grid", _set("grid", "grid"), TypeError),
    ("uv-inf", "uv", _at("uv", (0, 1), np.inf), ValueError),
    ("noise-zero", "noise", _at("noise", 0, 0.0), ValueError),
    ("noise-negative", "noise", _at("noise", -1, -1.0), ValueError),
    ("noise-length", "noise", _set("noise", lambda n: n[:-1]), ValueError, {"uv"}),
    ("visibilities-nan", "visibilities", _at("visibilities", 0, np.nan), ValueError),
    ("visibilities-length", "visibilities", _set("visibilities", lambda v: v[1:]), ValueError,
     {"noise"}),
    ("visibilities-dtype", "visibilities", _set("visibilities", lambda v: v.astype(str)), TypeError),
    ("K=0", "K = 0", _empty("uv", "noise", "visibilities"), ValueError),
    ("M=0", "M = 0", _empty("grid", "native_index", "pix_indexes", "pix_weights", "dirty_image"),
     ValueError),
    ("pixel_scale-zero", "pixel_scale", _set("pixel_scale", 0.0), ValueError),
    ("pixel_scale-nan", "pixel_scale", _set("pixel_scale", np.nan), ValueError),
    ("pixel_scale-bool", "pixel_scale", _set("pixel_scale", True), TypeError),
    ("shape_native-negative", "shape_native", _set("shape_native", (-6, 7)), ValueError),
    ("shape_native-not-pair", "shape_native", _set("shape_native", 6), TypeError),
    ("pix_indexes-too-large", "pix_indexes", _at("pix_indexes", (0, 0), 10**6), ValueError),
    ("pix_indexes-below-minus-one", "pix_indexes", _at("pix_indexes", (1, 0), -2), ValueError),
    ("pix_indexes-float", "pix_indexes", _set("pix_indexes", lambda i: i.astype(float)), TypeError),
    ("pix_weights-on-padding", "pix_weights", _padded_slot_with_weight, ValueError,
     {"pix_weights"}),
    ("pix_weights-shape", "pix_weights", _set("pix_weights", lambda w: w[:, :1]), ValueError,
     {"pix_indexes"}),
    ("neighbors-asymmetric", "neighbors", _asymmetric, ValueError),
    ("neighbors-self", "neighbors", _at("neighbors", (2, 0), 2), ValueError),
    ("neighbors-out-of-range", "neighbors", _at("neighbors", (0, 0), 10**6), ValueError),
    ("neighbors_sizes-disagree", "neighbors_sizes", _at("neighbors_sizes", 0, 99), ValueError),
    ("n_sources-float", "n_sources", _set("n_sources", 12.0), TypeError),
    ("n_sources-zero", "n_sources", _set("n_sources", 0), ValueError),
    ("coefficient-nan", "coefficient", _set("coefficient", np.nan), ValueError),
    ("coefficient-string", "coefficient", _set("coefficient", "1"), TypeError),
    ("native_index-outside", "native_index", _at("native_index", (-1, 0), 99), ValueError),
    ("native_index-order", "native_index", _set("native_index", lambda i: i[::-1].copy()),
     ValueError),
    ("mapping_matrix-shape", "mapping_matrix", _set("mapping_matrix", lambda t: t[:-1]),
     ValueError),
    ("w_offsets-even", "w_offsets", _set("w_offsets", lambda w: w[:-1]), ValueError),
    ("w_tilde-shape", "w_tilde", _set("w_tilde", lambda w: w[:-1]), ValueError),
    ("curvature_matrix-inf", "curvature_matrix", _at("curvature_matrix", (0, 0), np.inf),
     ValueError),
    ("regularization_matrix-shape", "regularization_matrix",
     _set("regularization_matrix", lambda h: h[:-1]), ValueError),
    ("dirty_image-length", "dirty_image", _set("dirty_image", lambda d: d[:-1]), ValueError),
    ("data_vector-nan", "data_vector", _at("data_vector", 0, np.nan), ValueError),
]  # fmt: skip
EXAMPLE_CASES = [
    ("a-zero", "a", _at("a", 0, 0.0), ValueError),
    ("c-complex-roots", "c", _at("c", 0, 100.0), ValueError),
    ("x-negative-radicand", "x", _at("x", 0, -1.0), ValueError),
    ("arrays-length", "arrays", _set("arrays", np.ones((3, 3))), ValueError, {"weights"}),
    ("b-length", "b", _set("b", np.ones(3)), ValueError, {"a"}),
]


def _touched(case, base):
    """The inputs a case changes: an implementation is tested if it takes one."""
    mutated = case[2](base)
    return {k for k in mutated if k not in base or mutated[k] is not base[k]}


def _pairs(cases, kernels, base):
    pairs = []
    for case in cases:
        touched = _touched(case, base)
        needs = case[4] if len(case) > 4 else set()
        for kernel in kernels:
            for impl in lk.implementations(kernel).values():
                if touched & set(impl.inputs) and needs <= set(impl.inputs):
                    pairs.append(pytest.param(case, impl, id=f"{case[0]}-{kernel}-{impl.name}"))
    return pairs


@pytest.mark.parametrize(("case", "impl"), _pairs(CASES, lk.KERNELS, BASE))
def test_every_backend_rejects_bad_input(case, impl):
    _, argument, mutate, error = case[:4]
    with pytest.raises(error, match=argument):
        impl(**mutate(BASE))


@pytest.mark.parametrize(("case", "impl"), _pairs(EXAMPLE_CASES, lk.EXAMPLES, EXAMPLE_BASE))
def test_every_backend_rejects_bad_example_input(case, impl):
    _, argument, mutate, error = case[:4]
    with pytest.raises(error, match=argument):
        impl(**mutate(EXAMPLE_BASE))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_compute_rejects_bad_input(case):
    _, argument, mutate, error = case[:4]
    (param,) = [p for p in _pairs([case], lk.KERNELS, BASE)][:1]
    impl = param.values[1]
    with pytest.raises(error, match=argument):
        lk.compute(impl.kernel, impl=impl.name, **mutate(BASE))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_compute_validates_inputs_the_chosen_implementation_does_not_read(case):
    """compute checks every canonical input it is given: a bad grid beside a
    good noise is an error even for a kernel that reads only the noise."""
    _, argument, mutate, error = case[:4]
    with pytest.raises(error, match=argument):
        lk.compute("noise_normalization", impl="numpy.vector", **mutate(BASE))
    with pytest.raises(error, match=argument):
        lk.compute("noise_normalization", **mutate(BASE))


def test_bad_input_never_reaches_the_backend(monkeypatch):
    """Validation runs before the implementation's function is called, both
    through the Implementation and through compute: a spy stands in for the
    registered function and records every call."""
    from dataclasses import replace

    from lenskern import registry

    impl = lk.implementations("w_tilde")["numpy.gemm"]
    calls = []

    def spy(**inputs):
        calls.append(inputs)
        return impl.function(**inputs)

    spied = replace(impl, function=spy)
    monkeypatch.setitem(registry._REGISTRY["w_tilde"], impl.name, spied)
    bad = {**BASE, "noise": -BASE["noise"]}
    with pytest.raises(ValueError, match="noise"):
        spied(**bad)
    with pytest.raises(ValueError, match="noise"):
        lk.compute("w_tilde", impl=impl.name, **bad)
    assert calls == []
    lk.compute("w_tilde", impl=impl.name, **BASE)  # the spy is in the call path
    assert len(calls) == 1 and set(calls[0]) == set(impl.inputs)


def test_grid_must_match_native_index_when_both_are_given():
    impl = lk.implementations("log_evidence")["numpy.raw"]
    with pytest.raises(ValueError, match="grid"):
        impl(**{**BASE, "pixel_scale": BASE["pixel_scale"] * 2})
