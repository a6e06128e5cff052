"""Shared strategies and helpers: bounded hypothesis problems, reference outputs."""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import lenskern as lk
from lenskern.agreement import (  # noqa: F401  the tests' names for lenskern's agreement check
    EDGE_SIZES,
    ROUNDING_PER_CONDITION,
    assert_agrees,
    edge_problem,
    with_intermediates,
)

ROOT = Path(__file__).resolve().parents[1]

# JIT backends compile on the first call of every new shape: no deadline, and
# a bounded number of examples (raise it with LENSKERN_EXAMPLES for a soak).
settings.register_profile(
    "lenskern",
    max_examples=int(os.environ.get("LENSKERN_EXAMPLES", "12")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("lenskern")


def reference_impl(kernel: str) -> lk.Implementation:
    (impl,) = [i for i in lk.implementations(kernel).values() if i.backend == "reference"]
    return impl


def evidence_carried_error(inputs: dict, like: lk.Likelihood) -> float:
    """The log evidence's error inherited from ``like``'s offset table and
    dirty image (a NUFFT's, within its stated accuracy), to first order and
    doubled for the second.

    With A = F + H, s = A^-1 D and the parts' errors dF = T^T dW T, dD = T^T dd:
    dL = s . dD - s^T dF s / 2 - tr(A^-1 dF). An ill-conditioned A turns a
    table error at the NUFFT's accuracy into far more: with K = 1 and P = 0, A's
    smallest eigenvalue is H's 1e-8 ridge, and a table error of 1.3e-13 moved
    the evidence by 1.2e-5 (a failing draw in tests/streaming/test_stream.py).
    """
    gather = reference_impl("w_tilde_from_offsets")
    t = inputs["mapping_matrix"]
    d_w = gather(w_offsets=like.w_offsets, native_index=like.native_index) - inputs["w_tilde"]
    d_f = t.T @ d_w @ t
    d_d = t.T @ (like.dirty_image - inputs["dirty_image"])
    a = inputs["curvature_matrix"] + inputs["regularization_matrix"]
    s = np.linalg.solve(a, inputs["data_vector"])
    first = abs(s @ d_d) + abs(s @ d_f @ s) / 2 + abs(np.trace(np.linalg.solve(a, d_f)))
    return 2 * float(first)


@st.composite
def problem_sizes(draw, max_side: int = 5, max_k: int = 10, max_s: int = 8) -> dict:
    """Sizes and options for make_problem, edge sizes (1) included."""
    ny = draw(st.integers(1, max_side))
    nx = draw(st.integers(1, max_side))
    s_count = draw(st.integers(1, max_s))
    mask_kind = draw(st.sampled_from(["circular", "annulus", "full", "random"]))
    if mask_kind == "random":
        mask = np.array(draw(st.lists(st.booleans(), min_size=ny * nx, max_size=ny * nx)))
        mask = mask.reshape(ny, nx)
        if mask.all():
            mask[draw(st.integers(0, ny - 1)), draw(st.integers(0, nx - 1))] = False
    else:
        mask = mask_kind
    return dict(
        shape_native=(ny, nx),
        mask=mask,
        K=draw(st.integers(1, max_k)),
        S=s_count,
        B=draw(st.integers(1, min(3, s_count))),
        P=draw(st.integers(0, 4)),
        uv=draw(st.sampled_from(["tracks", "disc"])),
        pixel_scale=draw(st.sampled_from([0.02, 0.05, 0.2])),
        coefficient=draw(st.floats(0.1, 3.0)),
        padded_fraction=draw(st.sampled_from([0.0, 0.5])),
    )


@st.composite
def problems(draw, **bounds) -> lk.Problem:
    return lk.make_problem(draw(problem_sizes(**bounds)), seed=draw(st.integers(0, 2**16)))


@pytest.fixture(scope="session", params=list(EDGE_SIZES))
def edge_inputs(request) -> dict:
    return with_intermediates(edge_problem(request.param))


def all_implementations(kernels=lk.NAMES) -> list:
    return [impl for k in kernels for impl in lk.implementations(k).values()]


def nested_pytest(python: str, *arguments: str) -> list[str]:
    """A pytest run of a few of these tests in a subprocess (another Python,
    the CUDA simulator, more XLA devices): in one process, since
    pytest-xdist's (pyproject.toml) would each import JAX to collect them
    (the Python 3.12 bridge's tests: 58 s of CPU in three, 32 s in one, at
    9292b89), and with no cache written."""
    return [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", *arguments]


# ------------------------------------------------ asv leaves the user's files alone
#
# asv keeps its machine records in ~/.asv-machine.json. Tests name machines of
# their own (ci-check, ci-alert): under the user's real HOME they would be
# listed beside the user's machines ever after. Every asv call of the tests
# runs with HOME in a folder of the session, and the session fails if the
# real file changed anyway.

_REAL_MACHINE_FILE = Path.home() / ".asv-machine.json"


def _machine_file_state() -> bytes | None:
    return _REAL_MACHINE_FILE.read_bytes() if _REAL_MACHINE_FILE.exists() else None


_MACHINE_FILE_AT_START = _machine_file_state()


@pytest.fixture(scope="session")
def asv_home(tmp_path_factory) -> Path:
    """The HOME of the tests' asv calls: its .asv-machine.json is the tests' own."""
    return tmp_path_factory.mktemp("asv-home")


def asv_env(home: Path, **variables: str) -> dict:
    """This process's environment for an asv call, with HOME at ``home``;
    pip's cache stays the user's (a new one would download every wheel again)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pip"  # pip's default on Linux
    return dict(os.environ, HOME=str(home), PIP_CACHE_DIR=os.environ.get("PIP_CACHE_DIR", str(cache)),
                **variables)  # fmt: skip


def pytest_sessionfinish(session, exitstatus):
    if _machine_file_state() != _MACHINE_FILE_AT_START:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nFAILED: the tests changed {_REAL_MACHINE_FILE} (asv calls must run under asv_env)")


# --- A clone with a planted change --------------------------------------------
# The alert's tests and the PR workflow's test both judge three commits: this
# checkout's HEAD, HEAD plus a planted slowdown, and HEAD plus a README edit.


def git(repo: Path, *args: str) -> str:
    """git in ``repo`` with a throwaway identity; its stdout, stripped."""
    # safe.directory: the workflow tests hand their clones to the runner user,
    # and git refuses a repository another user owns
    identity = [
        "-c",
        "user.name=lenskern tests",
        "-c",
        "user.email=tests@example.invalid",
        "-c",
        "safe.directory=*",
    ]
    return subprocess.run(["git", "-C", str(repo), *identity, *args], check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip


def clone_with_plant(repo: Path, path: str, plant: tuple[str, ...], message: str) -> tuple[str, str, str]:
    """Clone this checkout into ``repo``; commit ``plant`` (pairs of old, new
    text, each old found exactly once) in ``path``, and on a branch
    ``unchanged`` an edit of the README alone. Returns (base, planted,
    unchanged) and leaves ``unchanged`` checked out."""
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    base = git(repo, "rev-parse", "HEAD")
    target = repo / path
    text = target.read_text()
    for old, new in zip(plant[::2], plant[1::2]):
        assert text.count(old) == 1, f"the plant no longer finds {old!r} in {path}"
        text = text.replace(old, new)
    target.write_text(text)
    git(repo, "commit", "-qam", message)
    planted = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "unchanged", base)
    (repo / "README.md").write_text((repo / "README.md").read_text() + "\nA line.\n")
    git(repo, "commit", "-qam", "touch only the README")
    return base, planted, git(repo, "rev-parse", "HEAD")


# --- GitHub's runner, as tests/observatory/workflow_runner.py plays it ---------------------

#: The user a workflow's steps run as when the tests run as root: GitHub's
#: runner user is not root either.
RUNNER = "lenskern-runner"


@pytest.fixture(scope="session")
def runner(worker_id):
    """(uid, gid) or None, its home, and its Python as setup-python gives
    one: a virtualenv of the system's Python 3.11, kept in the runner's home
    between runs like a tool cache. Each test process has a home of its own:
    two workflow tests at once never install into one Python nor write one
    ~/.asv-machine.json (the workflows' modules share one process anyway,
    see :func:`pytest_xdist_make_scheduler`)."""
    if os.geteuid() == 0:
        with _lock(Path(tempfile.gettempdir()) / f"{RUNNER}.lock", fcntl.LOCK_EX):  # one useradd
            if subprocess.run(["id", "-u", RUNNER], capture_output=True).returncode != 0:
                subprocess.run(["useradd", "--create-home", RUNNER], check=True)
        entry = pwd.getpwnam(RUNNER)
        user, home = (entry.pw_uid, entry.pw_gid), Path(entry.pw_dir) / worker_id
        home.mkdir(exist_ok=True)
        os.chown(home, *user)
    else:
        user, home = None, Path(tempfile.mkdtemp(prefix="lenskern-runner-home-"))
    python = shutil.which("python3.11", path="/usr/bin:/usr/local/bin") or shutil.which("python3.11")
    venv = home / ".cache" / "lenskern-setup-python"
    as_user = {"user": user[0], "group": user[1], "extra_groups": []} if user else {}
    if not (venv / "bin" / "python").exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True, env={"HOME": str(home)}, **as_user)
    return user, home, venv / "bin"


#: The modules that run a workflow on the runner. One test process runs them
#: all, so the second finds what the first left in the runner's home: the
#: setup-python packages and the actions cache, where the nightly saves asv's
#: environment under the PR check's key (nightly.yml). The three jobs took
#: 339 s in one process (at 6297811), 427 s in two with a home each (at
#: 9c36418; clean clones of the test command on the 2-core VM, one day).
RUNNER_MODULES = ("tests/observatory/test_nightly_workflow.py", "tests/observatory/test_pr_workflow.py")
RUNNER_SCOPE = "the runner's workflows"


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist
def pytest_xdist_make_scheduler(config, log):
    """--dist loadscope, with the workflows' modules as one scope, handed out
    first: it is the longest, and started last it would leave one process
    running it alone at the end."""
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.split("::", 1)[0] in RUNNER_MODULES:
                return RUNNER_SCOPE
            return super()._split_scope(nodeid)

        def _assign_work_unit(self, node) -> None:
            if RUNNER_SCOPE in self.workqueue:
                self.workqueue.move_to_end(RUNNER_SCOPE, last=False)
            super()._assign_work_unit(node)

    return Scheduling(config, log) if config.getvalue("dist") == "loadscope" else None


# --- Tests in parallel, timings alone ------------------------------------------
# The test command runs the tests in parallel processes, one more than the
# cores (:func:`pytest_xdist_auto_num_workers`), a module to a process
# (--dist loadscope: a module's fixtures are built once). Every test holds a
# lock shared with the others from its set-up to its tear-down. A test that
# judges a timing is marked ``alone``: its call holds that lock exclusively,
# so no other test runs beside the timing, while its fixtures (clones, asv's
# environment, builds) are made beside other tests. A shared lock is granted
# while an exclusive one waits, so the other processes go on starting tests:
# the ``alone`` calls run when the others have run out of work, and no
# process stands idle for a long test to end.


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist
def pytest_xdist_auto_num_workers(config):
    """-n auto: one process more than the cores. The slow tests spend much of
    their time in pip, git and asv's start-ups, and a process waiting for an
    ``alone`` call leaves the cores to the others. The test command from a
    clean clone on the 2-core VM: 923 s in three processes at 62ab7c8, 949 s
    in two at b82ec28 (which lacked only the 3.12 bridge's --no-compile)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # pytest-xdist's own setting, read by its hook
    return len(os.sched_getaffinity(0)) + 1


def _lock(path: Path, mode: int):
    """``path`` opened and ``flock``-ed in ``mode``; closing it releases the lock."""
    file = open(path, "a")  # noqa: SIM115  the caller closes it
    fcntl.flock(file, mode)
    return file


#: This process's hold on the cores lock during a test (None outside one,
#: and in a run without pytest-xdist, which needs no lock).
_cores = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Each test's set-up, call and tear-down under the cores lock, shared."""
    global _cores
    if not hasattr(item.config, "workerinput"):
        return (yield)
    folder = Path(item.config.option.basetemp).parent  # the session's, shared by its workers
    _cores = _lock(folder / "cores.lock", fcntl.LOCK_SH)
    try:
        return (yield)
    finally:
        _cores.close()
        _cores = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """An ``alone`` test's call with the cores lock held exclusively."""
    if _cores is None or item.get_closest_marker("alone") is None:
        return (yield)
    # Let go first: two alone tests each holding a share while waiting for
    # the exclusive lock would wait for ever.
    fcntl.flock(_cores, fcntl.LOCK_UN)
    fcntl.flock(_cores, fcntl.LOCK_EX)
    try:
        return (yield)
    finally:
        fcntl.flock(_cores, fcntl.LOCK_SH)  # the tear-down, beside other tests again
