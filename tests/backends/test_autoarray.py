"""The autoarray backend: its index mapping, its import guard, and its
agreement with the reference under Python 3.12 from any interpreter.

autoarray 2026.10.26.1 installs on Python >= 3.12 only. Where this
interpreter has it (the ``peers`` extra on 3.12), the agreement tests of
``tests/contract/test_agreement.py`` run its implementations like any other backend's,
and the tests below marked ``needs_autoarray`` check what is particular to
it. Where it does not (Python 3.11, what CI and asv use), the backend is
missing with its reason, and :func:`test_autoarray_under_python312` runs those
same tests in a Python 3.12 virtualenv with ``.[test,peers]``, made once under
``.venv312/`` (git-ignored; ``LENSKERN_VENV312`` moves it) and reinstalled
only when ``setup.cfg`` changes. It skips, saying so, where no Python 3.12
runs here (``LENSKERN_PYTHON312`` names one that is not on the PATH).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import lenskern as lk
from conftest import assert_agrees, nested_pytest, reference_impl, with_intermediates
from lenskern.backends import autoarray as backend
from lenskern.conventions import ARCSEC_TO_RADIANS, TWO_PI

ROOT = Path(__file__).resolve().parents[2]
MISSING = lk.implementations("w_offsets").missing.get("autoarray")
needs_autoarray = pytest.mark.skipif(MISSING is not None, reason=f"autoarray backend missing: {MISSING}")

#: The tests the Python 3.12 run executes: every test of an autoarray
#: implementation (agreement, bad input, this module's), the registry's
#: checks (some loop over every implementation) and the README's tables (the
#: same there). Not the laws: they rerun every backend (3.5 minutes there),
#: and autoarray's outputs agree within 1e-9 with the reference's, which obey them.
PY312_TESTS = ["tests/contract/test_agreement.py", "tests/contract/test_validation.py",
               "tests/backends/test_autoarray.py", "tests/contract/test_registry.py",
               "tests/infrastructure/test_readme.py",
               "-k", "autoarray or test_registry or tables_are_current"]  # fmt: skip


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the reason below is the one on Python 3.11")
def test_missing_below_python312_with_the_reason():
    assert MISSING == "autoarray 2026.10.26.1 needs Python >= 3.12"
    assert "autoarray" not in {impl.backend for impl in lk.implementations("curvature_matrix").values()}


def _wrapped_by_definition(uv, noise, pixel_scale, shape_native):
    """autoarray's (2Ny, 2Nx) table as its docstring defines it, summed here:
    P[i, j] = sum_k cos(2 pi d (-j u_k + i v_k)) / sigma_k^2 at the signed
    offsets of wraparound order, the Nyquist row Ny and column Nx zero."""
    ny, nx = shape_native
    d = pixel_scale * ARCSEC_TO_RADIANS
    i = np.arange(2 * ny) - 2 * ny * (np.arange(2 * ny) > ny)
    j = np.arange(2 * nx) - 2 * nx * (np.arange(2 * nx) > nx)
    phase = TWO_PI * d * (-j[None, :, None] * uv[:, 0] + i[:, None, None] * uv[:, 1])
    table = (np.cos(phase) / noise**2).sum(axis=2)
    table[ny, :] = 0.0
    table[:, nx] = 0.0
    return table


@pytest.mark.parametrize("shape", [(1, 1), (1, 4), (3, 2), (4, 5)])
def test_index_mapping_between_the_two_tables(shape):
    """_centred turns autoarray's wraparound table into SPEC's, and
    _wraparound is its inverse (pure NumPy: runs on every Python)."""
    problem = lk.make_problem(dict(shape_native=shape, K=7, S=2, B=1, P=1), seed=2)
    args = (problem["uv"], problem["noise"], problem["pixel_scale"], problem["shape_native"])
    wrapped = _wrapped_by_definition(*args)
    expected = reference_impl("w_offsets")(**problem)
    np.testing.assert_allclose(backend._centred(wrapped), expected, rtol=1e-12, atol=1e-12 * expected.max())
    np.testing.assert_array_equal(backend._wraparound(backend._centred(wrapped), shape), wrapped)


def test_wraparound_cuts_the_table_to_an_extent():
    """The operator's table over a smaller extent is the centre of SPEC's."""
    table = np.arange(7 * 9, dtype=float).reshape(7, 9)  # a 4 x 5 grid's offsets
    cut = backend._wraparound(table, (2, 3))
    assert cut.shape == (4, 6)
    for dr in range(-1, 2):
        for dc in range(-2, 3):
            assert cut[dr % 4, dc % 6] == table[dr + 3, dc + 4]
    assert not cut[2, :].any() and not cut[:, 3].any()


@needs_autoarray
@pytest.mark.parametrize("impl", ["autoarray.sparse_scipy", "autoarray.sparse_jax"])
def test_curvature_on_an_extent_smaller_than_the_grid(impl):
    """Unmasked pixels off centre in a bounding box smaller than the grid:
    the operator works on that extent, rows counted from its corner."""
    mask = np.ones((9, 8), dtype=bool)
    mask[5:8, 1:3] = False
    mask[6, 4] = False
    inputs = with_intermediates(lk.make_problem(dict(mask=mask, K=11, S=5, B=2, P=2), seed=4))
    expected = reference_impl("curvature_matrix")(**inputs)
    got = lk.implementations("curvature_matrix")[impl](**inputs)
    assert_agrees("curvature_matrix", got, expected, inputs)


GUARD_CHECK = """
import logging, os, sys
environment, files = dict(os.environ), sorted(os.listdir("."))
import lenskern as lk
from lenskern import registry
assert registry.load_backend("autoarray"), registry.UNAVAILABLE
problem = lk.make_problem("tiny")
table = lk.compute("w_offsets", impl="autoarray.nufft", **problem)
mapping = lk.compute("mapping_matrix", impl="autoarray.scatter", **problem)
lk.compute("curvature_matrix", impl="autoarray.sparse_jax", w_offsets=table, **problem)
logging.getLogger("autoarray").info("autoarray's info lines must not reach stdout")
import jax, jax.numpy as jnp
assert jnp.ones(1).dtype == jnp.float32 and not jax.config.jax_enable_x64
assert dict(os.environ) == environment, set(os.environ.items()) ^ set(environment.items())
assert sorted(os.listdir(".")) == files, os.listdir(".")
assert not logging.getLogger().handlers and logging.getLogger().level == logging.WARNING
"""


@needs_autoarray
def test_importing_autoarray_changes_nothing(tmp_path):
    """Loading the backend and running its kernels, JAX's included, leaves JAX
    in float32 mode, the environment, the working directory and the root
    logger as they were, prints nothing, and reads no ``config/`` there."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "logging.yaml").write_text(textwrap.dedent("""\
        version: 1
        handlers: {out: {class: logging.StreamHandler, stream: "ext://sys.stdout"}}
        root: {level: DEBUG, handlers: [out]}
        """))  # fmt: skip
    (config / "general.yaml").write_text("version: {python_version_check: true}\n")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    run = subprocess.run([sys.executable, "-c", GUARD_CHECK], cwd=tmp_path, env=environment,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and run.stderr == "", (run.stdout, run.stderr)


# ---------------------------------------------------------------------------
# The run under Python 3.12, from an interpreter without autoarray


def _python312() -> str | None:
    """A Python 3.12 that runs here: LENSKERN_PYTHON312, ``python3.12`` on the
    PATH, or pyenv's (whose shim on the PATH fails unless 3.12 is selected)."""
    candidates = [os.environ.get("LENSKERN_PYTHON312"), shutil.which("python3.12")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()
        candidates += sorted(glob.glob(os.path.join(root, "versions", "3.12*", "bin", "python3.12")))[::-1]
    for candidate in filter(None, candidates):
        try:
            found = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                   capture_output=True, text=True, timeout=60)  # fmt: skip
        except OSError:
            continue
        if found.returncode == 0 and found.stdout.strip() == "(3, 12)":
            return candidate
    return None


#: The test extra's runners, all the bridge's tests need of it (its linters,
#: schema checkers and stream readers are the 3.11 run's business).
BRIDGE_RUNNERS = ("pytest", "pytest-xdist", "hypothesis")


def _runners() -> list[str]:
    """:data:`BRIDGE_RUNNERS` with setup.cfg's bounds from the test extra."""
    import configparser

    from packaging.requirements import Requirement  # pytest's own dependency

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    test = [line.strip() for line in config["options.extras_require"]["test"].splitlines() if line.strip()]
    found = [line for line in test if Requirement(line).name in BRIDGE_RUNNERS]
    assert len(found) == len(BRIDGE_RUNNERS), f"setup.cfg's test extra lacks one of {BRIDGE_RUNNERS}: {test}"
    return found


def _venv312(python: str) -> Path:
    """The Python 3.12 virtualenv with ``.[peers,stream]`` and the test
    runners: made once, and reinstalled when setup.cfg (its requirements)
    changes."""
    venv = Path(os.environ.get("LENSKERN_VENV312", ROOT / ".venv312"))
    stamp = venv / "lenskern-setup.sha256"
    digest = hashlib.sha256((ROOT / "setup.cfg").read_bytes() + str(ROOT).encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return venv
    steps = [[python, "-m", "venv", str(venv)]] if not (venv / "bin" / "python").exists() else []
    # --no-compile: one test run imports a fraction of what pip would
    # byte-compile; installing .[test,bench] took 71 s with compiling and
    # 36 s without (side by side at 9c36418: a new virtualenv each, pip's
    # cache warm, the project's 2-core VM). The runners instead of the whole
    # test extra: 43 s for .[test,peers], 33 s for this (at 9292b89, the same way).
    steps.append([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile", "-e",
                  ".[peers,stream]", *_runners()])  # fmt: skip
    for step in steps:
        done = subprocess.run(step, cwd=ROOT, capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, f"{' '.join(step)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    stamp.write_text(digest)
    return venv


@pytest.mark.skipif(MISSING is None, reason="autoarray runs in this interpreter: its tests run here directly")
def test_autoarray_under_python312():
    """The autoarray tests, run in a Python 3.12 virtualenv with the peers extra (:func:`_venv312`)."""
    python = _python312()
    if python is None:
        pytest.skip("no Python 3.12 runs here (set LENSKERN_PYTHON312): the autoarray backend is untested")
    venv = _venv312(python)
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = subprocess.run(nested_pytest(str(venv / "bin" / "python"), "-rs", *PY312_TESTS), cwd=ROOT,
                         env=environment, capture_output=True, text=True, timeout=1800)  # fmt: skip
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert " passed" in summary, summary
    assert "autoarray backend missing" not in run.stdout, run.stdout[-6000:]


@needs_autoarray
def test_streamed_path_sums_what_lenskern_streams(tmp_path):
    """autoarray's sparse_terms_from_chunks, fed a store's chunks, agrees
    with lenskern.stream: its table (over the mask's bounding extent) is the
    centre of lenskern's, and chi2 and the normalization are the same sums."""
    from lenskern import store as store_module
    from lenskern import stream

    mask = np.ones((12, 11), dtype=bool)  # True = masked out: a bordered, irregular mask
    mask[2:10, 3:9] = False
    mask[2, 3] = mask[5, 6] = True
    problem = lk.make_problem(dict(shape_native=(12, 11), K=700, S=10, B=2, P=2, mask=mask), seed=4)
    store = store_module.write_problem(tmp_path / "s.zarr", problem, chunk=128)
    terms, table = backend.streamed_terms(store, chunk=256, **problem)
    ours = stream.accumulate(store, chunk=256, progress=False, **problem)
    assert terms.n_vis == 700
    extent = problem["native_index"].max(axis=0) - problem["native_index"].min(axis=0) + 1
    assert extent.tolist() != list(problem["shape_native"]), "an irregular mask with a border"
    (ny, nx), (ey, ex) = problem["shape_native"], extent
    centre = ours.w_offsets()[ny - ey : ny + ey - 1, nx - ex : nx + ex - 1]
    np.testing.assert_allclose(table, centre, rtol=0, atol=1e-9 * centre.max())
    np.testing.assert_allclose(terms.data_term, ours.chi2_data, rtol=1e-12)
    np.testing.assert_allclose(terms.noise_normalization, ours.noise_normalization, rtol=1e-12)
