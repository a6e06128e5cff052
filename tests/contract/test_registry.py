"""The registry: no silent gaps, the contract's names, compute's binding."""

from __future__ import annotations

import importlib.util
import re
import sys

import numpy as np
import pytest

import lenskern as lk
from lenskern import recommend, registry, validate


def test_kernels_are_the_references_in_pipeline_order():
    """The reference is SPEC's executable form: its definitions, in the order
    written, are the kernels and then the seeds' examples."""
    defined = [d.kernel for d in registry._DEFINITIONS["lenskern.backends.reference"]]
    assert tuple(dict.fromkeys(defined)) == lk.NAMES


@pytest.mark.parametrize("kernel", lk.NAMES)
@pytest.mark.parametrize("backend", registry.BACKENDS)
def test_no_silent_gaps(kernel, backend):
    """Every (kernel, backend) pair is registered, or listed with a reason."""
    found = lk.implementations(kernel)
    registered = any(impl.backend == backend for impl in found.values())
    assert registered or found.missing.get(backend), (
        f"{kernel} has no {backend} implementation and no reason why"
    )


@pytest.mark.parametrize("kernel", lk.NAMES)
def test_core_backends_are_all_here(kernel):
    """NumPy, Numba and JAX are core dependencies: each kernel of the
    contract and each example has all four (SPEC section 3). A streamed
    kernel is a NUFFT library's pair of transforms: the reference and the
    NumPy backend's (FINUFFT, a core dependency) at least."""
    backends = {impl.backend for impl in lk.implementations(kernel).values()}
    core = {"reference", "numpy"} if kernel in lk.STREAMED else {"reference", "numpy", "numba", "jax"}
    assert backends >= core


def test_options_after_the_star_are_not_inputs():
    """A NUFFT's accuracy, threads and stage timer are the stream's options,
    with defaults: compute binds inputs only, and the stream passes them."""
    impl = lk.implementations("data_parts")["numpy.nufft"]
    assert impl.inputs == ("uv", "noise", "visibilities", "pixel_scale", "shape_native", "native_index")
    problem, seconds = lk.make_problem("tiny"), {}
    coarse = impl.function(
        **{name: problem[name] for name in impl.inputs}, eps=1e-9, nthreads=1, seconds=seconds
    )
    assert set(seconds) == {"prepare", "nufft"}
    np.testing.assert_allclose(
        coarse["w_offsets"], impl(**problem)["w_offsets"], rtol=0, atol=1e-7 * problem.sizes["K"]
    )


@pytest.mark.parametrize("impl", [i for k in lk.NAMES
                                  for i in lk.implementations(k).values()],
                         ids=lambda i: f"{i.kernel}-{i.name}")  # fmt: skip
def test_implementation_is_named_and_documented(impl):
    # backend names may carry digits and underscores: ducc0, jax_gpu
    assert re.fullmatch(r"[a-z][a-z0-9_]*\.[a-z0-9_]+", impl.name)
    assert impl.summary, f"{impl.name} of {impl.kernel} has no docstring"
    assert set(impl.inputs) <= set(validate.SPECS)


@pytest.mark.parametrize("kernel", lk.NAMES)
def test_recommended_names_exist(kernel):
    found = lk.implementations(kernel)
    for name in recommend.preferred(kernel):
        assert name in found or registry.parse_name(name)[0] in found.missing, name


def test_a_kernel_not_yet_measured_runs_its_oracle(monkeypatch):
    """A new kernel needs no line of policy: until the main job's tables
    order it, compute runs its oracle, the reference last of all."""
    order = dict(recommend.RECOMMENDED)
    del order["noise_normalization"]
    monkeypatch.setattr(recommend, "RECOMMENDED", order)
    oracle = registry.oracle("noise_normalization").name
    assert recommend.preferred("noise_normalization") == (oracle,)
    assert "not yet measured" in recommend.why("noise_normalization")
    noise = lk.make_problem("tiny")["noise"]
    assert recommend.recommended("noise_normalization", {"noise": noise}).name == oracle


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


@pytest.fixture
def fresh_registry(monkeypatch):
    """A registry whose backend loading can be replayed with extra backends."""
    monkeypatch.setattr(registry, "BACKENDS", dict(registry.BACKENDS))
    monkeypatch.setattr(registry, "UNAVAILABLE", dict(registry.UNAVAILABLE))
    monkeypatch.setattr(registry, "_DECLARATIONS", dict(registry._DECLARATIONS))
    monkeypatch.setattr(registry, "_DEFINITIONS", {m: list(d) for m, d in registry._DEFINITIONS.items()})
    monkeypatch.setattr(registry, "_loaded_backends", set(registry._loaded_backends))
    monkeypatch.setattr(registry, "_REGISTRY", {k: dict(v) for k, v in registry._REGISTRY.items()})
    return registry


def test_missing_library_is_absent_with_a_reason(fresh_registry, monkeypatch, tmp_path):
    """A backend whose library is not installed is listed as missing, with the
    import error as the reason; the other backends are unaffected."""
    (tmp_path / "lenskern_test_gpu.py").write_text("import a_library_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_registry.BACKENDS["gpu"] = "lenskern_test_gpu"
    found = lk.implementations("w_tilde")
    assert "a_library_that_is_not_installed" in found.missing["gpu"]
    assert "gpu" not in {i.backend for i in found.values()}
    with pytest.raises(ValueError, match="unavailable"):
        registry.implementation("w_tilde", "gpu.direct")


DEVICE_BACKEND = '''
from lenskern.registry import Backend, Cost, implements


def unavailable(device):
    return f"no {device} in this test"


BACKEND = Backend(device="gpu", unavailable=unavailable)


@implements("noise_normalization", "device", Cost("flop", lambda K, **_: K))
def noise_normalization(noise):
    """A kernel that would run on a device."""
    raise AssertionError("never called")
'''


def test_present_backend_without_its_device_is_absent_with_its_reason(fresh_registry, monkeypatch, tmp_path):
    """A backend that imports but declares it cannot run here (no device) is
    missing with the reason it gives; its kernels are declared, not runnable."""
    (tmp_path / "lenskern_test_device.py").write_text(DEVICE_BACKEND)
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_registry.BACKENDS["device"] = "lenskern_test_device"
    found = lk.implementations("noise_normalization")
    assert found.missing["device"] == "no gpu in this test"
    assert "device.device" not in found
    assert registry.declared("noise_normalization", "device") == ["device"]
    with pytest.raises(ValueError, match="no gpu in this test"):
        lk.compute("noise_normalization", impl="device.device", noise=np.ones(3))


LACKING_BACKEND = '''
import numpy as np

from lenskern.registry import Backend, Cost, implements


def lacks(device):
    return {"transform": f"this library has no {device} build here"}


BACKEND = Backend(device="gpu", lacks=lacks, others="two noise terms only")


@implements("noise_normalization", "transform", Cost("flop", lambda K, **_: K))
def noise_transform(noise):
    """An algorithm whose library lacks this device here."""
    raise AssertionError("never called")


@implements("noise_normalization", "sum", Cost("flop", lambda K, **_: K))
def noise_sum(noise):
    """An algorithm that runs on this device."""
    return float(np.sum(2 * np.log(2 * np.pi * noise**2)))
'''


def test_an_algorithm_its_library_cannot_run_on_the_device_is_absent_with_its_reason(
    fresh_registry, monkeypatch, tmp_path
):
    """A backend that runs here, one of whose algorithms its library cannot
    run on the backend's device (jax-finufft's transforms on a GPU without
    cuFINUFFT), registers the others and keeps that one's reason."""
    (tmp_path / "lenskern_test_lacking.py").write_text(LACKING_BACKEND)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(fresh_registry, "LACKING", dict(registry.LACKING))
    fresh_registry.BACKENDS["lacking"] = "lenskern_test_lacking"
    found = lk.implementations("noise_normalization")
    assert "lacking.sum" in found and "lacking.transform" not in found
    assert found.lacking == {"lacking.transform": "this library has no gpu build here"}
    with pytest.raises(ValueError, match="no gpu build here"):
        lk.compute("noise_normalization", impl="lacking.transform", noise=np.ones(3))


def test_jax_declares_its_nufft_lacking_on_a_gpu_without_cufinufft():
    """The jax-finufft installed here is the CPU's (its wheels' only build):
    on a GPU its transforms cannot run, which the jax backends say instead of
    failing at the call; on the CPU nothing is lacking."""
    pytest.importorskip("jax_finufft")
    from lenskern.backends.jax import device

    assert device.lacks("cpu") == {}
    if importlib.util.find_spec("jax_finufft.jax_finufft_gpu") is None:
        assert "cuFINUFFT" in device.lacks("gpu")["nufft"]
    else:
        assert device.lacks("gpu") == {}


PARTIAL_BACKEND = '''
from lenskern.registry import Backend, Cost, implements

BACKEND = Backend(others="serves the noise term only")


@implements("noise_normalization", "partial", Cost("flop", lambda K, **_: K))
def noise_normalization(noise):
    """A backend with one kernel."""
    raise AssertionError("never called")
'''


def test_partial_backend_lists_the_rest_with_its_reason(fresh_registry, monkeypatch, tmp_path):
    """A backend serving a few kernels (ducc0, numexpr) declares why it has no
    others once, in its declaration's ``others``: every other kernel is then not implemented
    with that reason, and the kernels it defines are registered."""
    (tmp_path / "lenskern_test_partial.py").write_text(PARTIAL_BACKEND)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "NOT_IMPLEMENTED", dict(registry.NOT_IMPLEMENTED))
    fresh_registry.BACKENDS["partial"] = "lenskern_test_partial"
    assert "partial.partial" in lk.implementations("noise_normalization")
    assert "partial" not in lk.implementations("noise_normalization").missing
    assert lk.implementations("w_tilde").missing["partial"] == "serves the noise term only"


TOY_BACKEND = '''
"""A backend dropped into lenskern.backends: its module and nothing else."""
from lenskern.registry import Backend, Cost, implements

BACKEND = Backend(others="a toy: the noise term only")


@implements("noise_normalization", "toy", Cost("flop", lambda K, **_: K))
def noise_normalization(noise):
    """The reference's sum, in one line."""
    import numpy as np

    return float(np.sum(2 * np.log(2 * np.pi * noise**2)))
'''


def test_a_backend_is_its_module(fresh_registry, monkeypatch, tmp_path):
    """A module in lenskern.backends declaring BACKEND is found, loaded,
    registered and held to the reference like any other, with no line
    anywhere else; a module there without a declaration is refused by name."""
    from lenskern import backends

    for name in ("toy", "undeclared"):  # imported below; gone from sys.modules after the test
        monkeypatch.setitem(sys.modules, f"lenskern.backends.{name}", None)
        monkeypatch.delitem(sys.modules, f"lenskern.backends.{name}")
    (tmp_path / "toy.py").write_text(TOY_BACKEND)
    (tmp_path / "undeclared.py").write_text("")
    monkeypatch.setattr(backends, "__path__", [*backends.__path__, str(tmp_path)])
    monkeypatch.setattr(fresh_registry, "BACKENDS", registry._discover(backends.__path__))
    monkeypatch.setattr(fresh_registry, "NOT_IMPLEMENTED", dict(registry.NOT_IMPLEMENTED))
    assert list(registry.BACKENDS)[0] == "reference" and {"toy", "undeclared"} <= set(registry.BACKENDS)
    with pytest.raises(TypeError, match="undeclared: a backend module declares BACKEND"):
        registry.declaration("undeclared")
    del fresh_registry.BACKENDS["undeclared"]
    noise = lk.make_problem("tiny")["noise"]
    toy = lk.compute("noise_normalization", impl="toy.toy", noise=noise)
    reference = lk.compute("noise_normalization", impl="reference.loop", noise=noise)
    assert toy == pytest.approx(reference, rel=1e-12)
    assert lk.implementations("w_tilde").missing["toy"] == "a toy: the noise term only"


def test_thread_pools_that_backends_declare_are_set_before_they_load():
    """lenskern.threads must set a pool's variable before its library loads,
    so it lists them itself; each backend's declaration names its own."""
    from lenskern import threads

    for backend in registry.BACKENDS:
        try:
            declared = registry.declaration(backend)
        except ImportError:
            continue
        assert set(declared.threads) <= {*threads.POOL_VARIABLES, "XLA_FLAGS"}, backend


def test_a_timer_waits_as_the_runnable_backends_declare():
    """The waits a benchmark calls before its timer stops are those the
    backends loaded and runnable here declare, each once: JAX's (declared by
    jax and jax_gpu alike), never that of a backend missing here."""
    import jax

    registry.load_backends()
    waits = registry.synchronizers()
    assert waits.count(jax.block_until_ready) == 1

    def declared_wait(backend):
        try:
            return registry.declaration(backend).synchronize
        except ImportError:
            return None

    runnable = {declared_wait(b) for b in registry.BACKENDS if b not in registry.UNAVAILABLE}
    assert set(waits) == runnable - {None}


def test_jax_kernels_are_registered_once_per_device():
    """The JAX module is written once and declared for the CPU and the GPU:
    both backends define the same algorithms, each runs on its own device,
    and the GPU one is missing with a reason where JAX has no GPU."""
    for kernel in lk.NAMES:
        assert registry.declared(kernel, "jax_gpu") == registry.declared(kernel, "jax"), kernel
    assert registry.declaration("jax").device == "cpu" and registry.declaration("jax_gpu").device == "gpu"
    found = lk.implementations("w_tilde")
    if "jax_gpu" in found.missing:
        assert "gpu" in found.missing["jax_gpu"]
    else:
        assert {i.device for i in found.values() if i.backend == "jax_gpu"} == {"gpu"}


@pytest.mark.parametrize("kernel", lk.NAMES)
def test_every_kernel_has_one_oracle_on_numpy(kernel):
    oracles = [impl for impl in lk.implementations(kernel).values() if impl.oracle]
    assert [impl.backend for impl in oracles] == ["numpy"], kernel
    assert registry.oracle(kernel) is oracles[0]


#: The presets' sizes by symbol; science's are too large to generate here.
PRESET_SIZES = {
    "small": dict(M=432, K=4096, S=128, B=3, P=8, Ny=24, Nx=24),
    "seed-1core": dict(M=3_000, K=32_768, S=256, B=3, P=32, Ny=64, Nx=64),
    "seed-gpu": dict(M=750, K=8192, S=256, B=256, P=32, Ny=32, Nx=32),
    "science": dict(M=70_000, K=10_000_000, S=1000, B=3, P=10, Ny=300, Nx=300),
    "peer-800": dict(M=15_380, K=1_000_000, S=1500, B=3, P=10, Ny=800, Nx=800),
}


@pytest.mark.parametrize("preset", list(PRESET_SIZES))
def test_every_cost_model_evaluates_at_every_preset(preset):
    """Each implementation's declared cost is a positive, finite count of a
    known kind at each preset's sizes (the benchmarks skip by it), and grows
    with the problem."""
    sizes = PRESET_SIZES[preset]
    doubled = {symbol: 2 * n for symbol, n in sizes.items()}
    examples = {"n": 5_000_000, "W": 4}
    for kernel in lk.NAMES:
        for impl in lk.implementations(kernel).values():
            at = examples if kernel in lk.EXAMPLES else sizes
            seconds = impl.estimated_seconds(at)
            assert np.isfinite(seconds) and seconds > 0, impl.name
            bigger = {k: 2 * v for k, v in examples.items()} if kernel in lk.EXAMPLES else doubled
            assert impl.estimated_seconds(bigger) > seconds, impl.name
            assert (impl.cost.kind == "python") == (impl.backend == "reference"), impl.name


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
        assert recommend.recommended("curvature_matrix", inputs).name == with_w
        del inputs["w_tilde"]
        assert recommend.recommended("curvature_matrix", inputs).name == "numba.tiled"


def test_an_implementation_name_is_taken_apart_in_one_place():
    assert registry.parse_name("numba.tiled") == ("numba", "tiled")
    assert registry.parse_name("jax.sharded") == ("jax", "sharded")
    for bad in ("numba", ".tiled", "numba.", ""):
        with pytest.raises(
            ValueError, match=r"^impl: .* is not an implementation name, which reads backend\.algorithm"
        ):
            registry.parse_name(bad)
    with pytest.raises(TypeError, match=r"^impl: expected an implementation name"):
        registry.parse_name(["numba.tiled"])
