"""The README tells the truth: its table is the registry's, its test command is CI's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from lenskern.__main__ import TABLES

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_generated_tables_are_current():
    for name, make in TABLES.items():
        match = re.search(f"<!-- {name}:begin -->\n(.*?)<!-- {name}:end -->", README, re.S)
        assert match, f"README lost its {name}-table markers"
        assert match.group(1).strip() == make().strip(), (
            f"README {name} table is stale: run `python -m lenskern table --readme README.md`"
        )


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(.*?)\n```", README, re.S)
    ci = (ROOT / ".ci" / "run").read_text()
    test_commands = [c for c in commands if "pytest" in c]
    assert len(test_commands) == 1
    assert test_commands[0] in ci


def test_code_is_formatted_and_lint_free():
    for args in (["check"], ["format", "--check"]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *args, "lenskern", "tests", "benchmarks"],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
