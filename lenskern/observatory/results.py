"""asv's result files, read in one place.

asv 0.6 writes one JSON file per commit and environment,
``<results>/<machine>/<commit[:8]>-<environment>.json``: its ``env_vars``
(here ``LENSKERN_NUM_THREADS`` and ``LENSKERN_BENCH_TIMER``), and per
benchmark a row of cells named by ``result_columns`` - the results (one per
combination of parameter values, in ``itertools.product`` order), the
parameter values as Python reprs, quartiles and samples. The report, the
alert's verdict and the nightly's regression filter all read them through
:func:`read`, as :class:`Measurement` s.
"""

from __future__ import annotations

import ast
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: asv 0.6's result columns, in the order a file without ``result_columns`` has them.
COLUMNS = (
    "result", "params", "version", "started_at", "duration", "stats_ci_99_a", "stats_ci_99_b",
    "stats_q_25", "stats_q_75", "stats_number", "stats_repeat", "samples", "profile",
)  # fmt: skip


@dataclass(frozen=True)
class Measurement:
    """One benchmark at one combination of its parameters."""

    benchmark: str  # "area.Class.method"
    params: tuple[Any, ...]  # the parameter values, as Python values
    value: float | None  # asv's result (a timing's median); None where n/a or failed
    samples: tuple[float, ...] | None = None
    quartiles: tuple[float | None, float | None] = (None, None)
    #: the reprs asv stored, which its names of a parameterised benchmark use
    reprs: tuple[str, ...] = field(default=(), repr=False)

    @property
    def key(self) -> str:
        """asv's name of the measurement: ``area.Class.method('numpy.gemv', 'small')``."""
        return name(self.benchmark, self.reprs)

    @property
    def method(self) -> str:
        return self.benchmark.rpartition(".")[2]

    @property
    def class_name(self) -> str:
        return self.benchmark.rpartition(".")[0].rpartition(".")[2]


@dataclass(frozen=True)
class ResultFile:
    """One environment's results of one commit."""

    env_vars: dict[str, str]
    measurements: list[Measurement]

    @property
    def threads(self) -> str:
        """The environment's LENSKERN_NUM_THREADS ("1", "all"), or "unpinned"."""
        return self.env_vars.get("LENSKERN_NUM_THREADS", "unpinned")


def _cell(cells: dict, column: str, index: int, count: int) -> Any:
    values = cells.get(column)
    if not isinstance(values, list) or len(values) != count:
        return None
    return values[index]


def measurements(results: dict[str, list], columns: tuple[str, ...] = COLUMNS) -> list[Measurement]:
    """The measurements of a result file's ``results`` object."""
    found = []
    for name, row in results.items():
        cells = dict(zip(columns, row))
        values = cells.get("result")
        reprs_by_axis = cells.get("params") or []
        combinations = list(itertools.product(*reprs_by_axis)) if reprs_by_axis else [()]
        if not isinstance(values, list):
            values = [values] * len(combinations) if values is not None else [None] * len(combinations)
        for index, (reprs, value) in enumerate(zip(combinations, values)):
            samples = _cell(cells, "samples", index, len(values))
            quartiles = tuple(_cell(cells, f"stats_q_{q}", index, len(values)) for q in (25, 75))
            found.append(
                Measurement(
                    benchmark=name,
                    params=tuple(ast.literal_eval(text) for text in reprs),
                    value=float(value) if isinstance(value, int | float) else None,
                    samples=tuple(samples) if samples else None,
                    quartiles=quartiles,
                    reprs=tuple(reprs),
                )
            )
    return found


def name(benchmark: str, reprs) -> str:
    """asv's name of one parameter combination of ``benchmark``, the reprs of
    its values in parentheses (``-b`` regexes match it):
    ``area.Class.method('numpy.gemv', 'small')``; no parameters, the bare name."""
    return f"{benchmark}({', '.join(reprs)})" if reprs else benchmark


def read(results_dir: Path, machine: str, commit: str) -> list[ResultFile]:
    """Every environment's results of ``commit`` on ``machine`` (none: [])."""
    files = []
    for path in sorted((Path(results_dir) / machine).glob(f"{commit[:8]}-*.json")):
        data = json.loads(path.read_text())
        columns = tuple(data.get("result_columns") or COLUMNS)
        found = measurements(data.get("results", {}), columns)
        files.append(ResultFile(dict(data.get("env_vars") or {}), found))
    return files


def latest(results_dir: Path, machine: str) -> tuple[str, int] | None:
    """(commit hash, commit date in ms) of the newest commit ``machine`` has
    results for, by the commit's date as asv recorded it; None if none."""
    newest = None
    for path in (Path(results_dir) / machine).glob("*-*.json"):
        data = json.loads(path.read_text())
        if "commit_hash" in data and (newest is None or data.get("date", 0) > newest[1]):
            newest = (data["commit_hash"], data.get("date", 0))
    return newest


def machines(results_dir: Path) -> list[str]:
    """The machines with results in ``results_dir`` (asv's ``machine.json`` beside them)."""
    return sorted(p.parent.name for p in Path(results_dir).glob("*/machine.json"))
