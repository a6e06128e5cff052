"""The registry: no silent gaps, the contract's names, compute's binding."""

from __future__ import annotations

import re

import numpy as np
import pytest

import lenskern as lk
from lenskern import registry, validate


def test_kernels_are_the_spec_in_pipeline_order():
    assert lk.KERNELS == (
        "w_tilde", "w_offsets", "w_tilde_from_offsets", "dirty_image", "mapping_matrix",
        "data_vector", "curvature_matrix", "regularization_matrix", "reconstruction",
        "noise_normalization", "log_evidence",
    )  # fmt: skip


@pytest.mark.parametrize("kernel", lk.KERNELS + lk.EXAMPLES)
@pytest.mark.parametrize("backend", registry.BACKENDS)
def test_no_silent_gaps(kernel, backend):
    """Every (kernel, backend) pair is registered, or listed with a reason."""
    found = lk.implementations(kernel)
    registered = any(impl.backend == backend for impl in found.values())
    assert registered or found.missing.get(backend), (
        f"{kernel} has no {backend} implementation and no reason why"
    )


@pytest.mark.parametrize("kernel", lk.KERNELS + lk.EXAMPLES)
def test_core_backends_are_all_here(kernel):
    """NumPy, Numba and JAX are core dependencies: each kernel has all four."""
    backends = {impl.backend for impl in lk.implementations(kernel).values()}
    assert backends >= {"reference", "numpy", "numba", "jax"}


@pytest.mark.parametrize("impl", [i for k in lk.KERNELS + lk.EXAMPLES
                                  for i in lk.implementations(k).values()],
                         ids=lambda i: f"{i.kernel}-{i.name}")  # fmt: skip
def test_implementation_is_named_and_documented(impl):
    assert re.fullmatch(r"[a-z]+\.[a-z0-9_]+", impl.name)
    assert impl.summary, f"{impl.name} of {impl.kernel} has no docstring"
    assert set(impl.inputs) <= set(validate.SPECS)


@pytest.mark.parametrize("kernel", lk.KERNELS + lk.EXAMPLES)
def test_recommended_names_exist(kernel):
    found = lk.implementations(kernel)
    for name in registry.RECOMMENDED[kernel]:
        assert name in found or name.split(".")[0] in found.missing, name


def test_compute_binds_a_superset_and_picks_by_inputs():
    problem = lk.make_problem("tiny")
    w = lk.compute("w_tilde", **problem)
    offsets = lk.compute("w_offsets", **problem)
    np.testing.assert_allclose(
        lk.compute("w_tilde_from_offsets", w_offsets=offsets, native_index=problem["native_index"]),
        w,
        rtol=1e-9,
        atol=1e-9 * np.abs(w).max(),
    )
    t = lk.compute("mapping_matrix", **problem)
    # Only the dense inputs given: compute must pick an implementation that takes them.
    f = lk.compute("curvature_matrix", w_tilde=w, mapping_matrix=t)
    np.testing.assert_allclose(f, t.T @ w @ t, rtol=1e-9, atol=1e-9 * np.abs(f).max())


def test_compute_names_what_is_missing():
    with pytest.raises(TypeError, match="w_tilde"):
        lk.compute("curvature_matrix", impl="numpy.dense", mapping_matrix=np.eye(2))
    with pytest.raises(TypeError, match="needs"):
        lk.compute("curvature_matrix", n_sources=3)
    with pytest.raises(ValueError, match="impl"):
        lk.compute("w_tilde", impl="nope.nothing", **lk.make_problem("tiny"))
    with pytest.raises(ValueError, match="kernel"):
        lk.implementations("not_a_kernel")


def test_missing_backend_is_absent_with_a_reason(monkeypatch, tmp_path):
    """A backend whose library is not installed is listed as missing, with the
    import error as the reason; the other backends are unaffected."""
    import lenskern.backends

    (tmp_path / "gpu.py").write_text("import a_library_that_is_not_installed\n")
    monkeypatch.setattr(lenskern.backends, "__path__", [*lenskern.backends.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "BACKENDS", registry.BACKENDS + ("gpu",))
    monkeypatch.setattr(registry, "UNAVAILABLE", {})
    monkeypatch.setattr(registry, "_loaded_backends", set(registry._loaded_backends))
    found = lk.implementations("w_tilde")
    assert "a_library_that_is_not_installed" in found.missing["gpu"]
    assert {i.backend for i in found.values()} == {"reference", "numpy", "numba", "jax"}
    with pytest.raises(ValueError, match="unavailable"):
        registry.implementation("w_tilde", "gpu.direct")


def test_import_changes_no_global_configuration():
    """Importing lenskern and its backends leaves JAX in its default float32 mode."""
    import subprocess
    import sys

    code = (
        "import lenskern as lk; lk.implementations('w_tilde'); import jax, jax.numpy as jnp;"
        "assert jnp.ones(1).dtype == jnp.float32, jnp.ones(1).dtype;"
        "assert not jax.config.jax_enable_x64"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_curvature_choice_follows_the_mapping_density():
    """Dense mappings (B > S/5) go to BLAS when W and T are given; sparse
    ones, or no W, to the tiled algorithm that never forms W."""
    dense = lk.make_problem(dict(shape_native=(5, 6), K=10, S=4, B=4, P=2), seed=1)
    sparse = lk.make_problem(dict(shape_native=(5, 6), K=10, S=40, B=3, P=2), seed=1)
    for problem, with_w in ((dense, "numpy.dense"), (sparse, "numba.tiled")):
        inputs = dict(problem, w_offsets=lk.compute("w_offsets", **problem))
        inputs.update(w_tilde=lk.compute("w_tilde_from_offsets", **inputs))
        inputs.update(mapping_matrix=lk.compute("mapping_matrix", **inputs))
        assert registry.recommended("curvature_matrix", inputs).name == with_w
        del inputs["w_tilde"]
        assert registry.recommended("curvature_matrix", inputs).name == "numba.tiled"
