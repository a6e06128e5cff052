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
