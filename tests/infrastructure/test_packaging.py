"""What an installed lenskern offers besides its modules: two console
scripts and its type annotations (PEP 561)."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("script", "target"),
    [("lenskern", "lenskern.__main__:main"), ("lenskern-observatory", "lenskern.observatory.__main__:main")],
)
def test_console_scripts_are_the_python_m_commands(script, target):
    scripts = {e.name: e.value for e in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get(script) == target
    path = Path(sys.executable).parent / script  # installed beside the interpreter running the tests
    assert path.is_file(), f"{script} is not installed beside {sys.executable}"
    done = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith(f"usage: {script} "), done.stdout + done.stderr


def test_annotations_ship_with_the_package():
    assert importlib.resources.files("lenskern").joinpath("py.typed").is_file()


def test_the_public_api_documents_its_parameters_in_numpydoc():
    """Every callable ``lk.__all__`` exports: a function says its
    Parameters and Returns (and Raises where it refuses input), a class its
    Parameters or its Attributes, in numpydoc's sections."""
    import inspect

    import lenskern as lk

    def sections(obj) -> set[str]:
        doc = inspect.getdoc(obj) or ""
        return {name for name in ("Parameters", "Returns", "Raises", "Attributes")
                if f"\n{name}\n{'-' * len(name)}\n" in f"\n{doc}\n"}  # fmt: skip

    for name in lk.__all__:
        obj = getattr(lk, name)
        if inspect.isfunction(obj):
            assert {"Parameters", "Returns"} <= sections(obj), name
        elif inspect.isclass(obj):
            assert sections(obj) & {"Parameters", "Attributes"}, name
