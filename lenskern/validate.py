"""Input checking and conversion, in one place (SPEC section 3).

Every implementation is called through :func:`check`, so each sees the same
contiguous float64 / int64 / complex128 / bool arrays, and bad input raises a
``ValueError`` or ``TypeError`` naming the argument before any compiled code
runs. Sizes are bound by symbol (M, K, S, B, P, Ny, Nx, n, W): the first input
that shows a size fixes it, and every later one must agree.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from lenskern.conventions import (
    ARCSEC_TO_RADIANS,
    MAX_DERIVED,
    MAX_MAGNITUDE,
    MAX_PHASE,
    TWO_PI,
    pixel_centres,
)
from lenskern.kernels import DECLARED

#: The largest n_sources (or any integer scalar): an int64.
_MAX_INT = np.iinfo(np.int64).max


@dataclass(frozen=True)
class Array:
    kind: str  # "float", "int", "bool" or "complex"
    shape: tuple[str | int, ...]
    #: > 0 (the kernels divide by it)
    positive: bool = False
    #: an earlier kernel's output, bounded by MAX_DERIVED (else MAX_MAGNITUDE)
    derived: bool = False


@dataclass(frozen=True)
class Scalar:
    kind: str  # "float" or "int"
    #: > 0
    positive: bool = False


@dataclass(frozen=True)
class ShapeNative:
    pass


#: Every canonical input name (SPEC section 1, earlier kernels' outputs, and
#: the inputs of the seeds' small examples) with what it must be.
SPECS: dict[str, Array | Scalar | ShapeNative] = {
    "shape_native": ShapeNative(),
    "pixel_scale": Scalar("float", positive=True),
    "mask": Array("bool", ("Ny", "Nx")),
    "native_index": Array("int", ("M", 2)),
    "grid": Array("float", ("M", 2)),
    "uv": Array("float", ("K", 2)),
    "noise": Array("float", ("K",), positive=True),
    "visibilities": Array("complex", ("K",)),
    "pix_indexes": Array("int", ("M", "B")),
    "pix_weights": Array("float", ("M", "B")),
    "n_sources": Scalar("int", positive=True),
    "neighbors": Array("int", ("S", "P")),
    "neighbors_sizes": Array("int", ("S",)),
    "coefficient": Scalar("float"),
    # earlier kernels' outputs, as their Kernel records declare them
    **{k.name: Array("float", k.shape, derived=k.derived) for k in DECLARED if k.intermediate},
    # the seeds' small JIT examples
    "a": Array("float", ("n",)),
    "b": Array("float", ("n",)),
    "c": Array("float", ("n",)),
    "x": Array("float", ("n",)),
    "weights": Array("float", ("W",)),
    "arrays": Array("float", ("W", "n")),
}

#: Sizes that may be zero; every other size must be at least one (M = 0 or
#: K = 0 is a problem with nothing to compute).
_MAY_BE_ZERO = {"P"}

_DTYPE = {"float": np.float64, "int": np.int64, "bool": np.bool_, "complex": np.complex128}
_ACCEPTED_KINDS = {"float": "fiu", "int": "iu", "bool": "b", "complex": "cfiu"}
_KIND_WORDS = {
    "float": "a real (float or integer) array",
    "int": "an integer array",
    "bool": "a boolean array",
    "complex": "a complex (or real) array",
}


class _Sizes:
    """Symbol -> (size, the argument that fixed it)."""

    def __init__(self) -> None:
        self.bound: dict[str, tuple[int, str]] = {}

    def get(self, symbol: str) -> int | None:
        return self.bound[symbol][0] if symbol in self.bound else None

    def bind(self, symbol: str, size: int, name: str, what: str) -> None:
        if size == 0 and symbol not in _MAY_BE_ZERO:
            raise ValueError(f"{name}: {what} has {symbol} = 0; at least 1 is needed")
        if symbol in self.bound and self.bound[symbol][0] != size:
            value, source = self.bound[symbol]
            raise ValueError(f"{name}: {what} gives {symbol} = {size}, but {source} gives {symbol} = {value}")
        self.bound.setdefault(symbol, (size, name))


def _array(name: str, value: Any, spec: Array, sizes: _Sizes) -> np.ndarray:
    if isinstance(value, str | bytes) or value is None:
        raise TypeError(f"{name}: expected {_KIND_WORDS[spec.kind]}, got {type(value).__name__}")
    try:
        array = np.asarray(value)
    except ValueError as error:  # a ragged nested list
        raise ValueError(f"{name}: not a rectangular array ({error})") from None
    if array.dtype.kind not in _ACCEPTED_KINDS[spec.kind]:
        raise TypeError(f"{name}: expected {_KIND_WORDS[spec.kind]}, got dtype {array.dtype}")
    if array.ndim != len(spec.shape):
        symbols = ", ".join(map(str, spec.shape))
        raise ValueError(f"{name}: expected shape ({symbols}), got shape {array.shape}")
    shape_text = f"shape {array.shape}"
    for axis, (symbol, size) in enumerate(zip(spec.shape, array.shape, strict=True)):
        if isinstance(symbol, int):
            if size != symbol:
                raise ValueError(f"{name}: axis {axis} must have length {symbol}, got {array.shape}")
        elif symbol.startswith("2"):  # "2Ny-1": the offset table of an Ny-row grid
            if size % 2 == 0:
                raise ValueError(f"{name}: expected odd lengths (2Ny-1, 2Nx-1), got {array.shape}")
            sizes.bind(symbol[1:-2], (size + 1) // 2, name, shape_text)
        else:
            sizes.bind(symbol, size, name, shape_text)
    array = np.ascontiguousarray(array, dtype=_DTYPE[spec.kind])
    if spec.kind in ("float", "complex"):
        if not np.isfinite(array).all():
            raise ValueError(f"{name}: contains NaN or infinite values")
        limit = MAX_DERIVED if spec.derived else MAX_MAGNITUDE
        magnitude = np.abs(array)
        largest = float(magnitude.max())
        if largest > limit:
            raise ValueError(
                f"{name}: magnitude {largest:.3g} is outside the kernels' domain (at most {limit:g}, "
                "so that every product the pipeline forms stays finite in float64)"
            )
        smallest = float(np.min(magnitude, where=magnitude > 0, initial=np.inf)) if largest > 0 else 0.0
        if 0 < smallest < 1 / limit:
            raise ValueError(
                f"{name}: non-zero magnitude {smallest:.3g} is outside the kernels' domain (at least "
                f"{1 / limit:g}, so that no product underflows to a subnormal or 0 in float64); "
                "rescale it, or write 0"
            )
    if spec.positive and not (array > 0).all():
        raise ValueError(f"{name}: every value must be > 0, got minimum {array.min()!r}")
    return array


def _scalar(name: str, value: Any, spec: Scalar) -> float | int:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{name}: expected a number, got bool")
    if spec.kind == "int":
        if not isinstance(value, numbers.Integral):
            raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
        value = int(value)
        if abs(value) > _MAX_INT:
            raise ValueError(f"{name}: {value} does not fit a 64-bit integer")
    else:
        if not isinstance(value, numbers.Real):
            raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
        value = float(value)
        if not np.isfinite(value):
            raise ValueError(f"{name}: must be finite, got {value!r}")
        if abs(value) > MAX_MAGNITUDE or 0 < abs(value) < 1 / MAX_MAGNITUDE:
            raise ValueError(
                f"{name}: {value!r} is outside the kernels' domain "
                f"({1 / MAX_MAGNITUDE:g} to {MAX_MAGNITUDE:g} in magnitude, or 0)"
            )
    if spec.positive and not value > 0:
        raise ValueError(f"{name}: must be > 0, got {value!r}")
    return value


def _shape_native(value: Any, sizes: _Sizes) -> tuple[int, int]:
    try:
        ny, nx = value
    except (TypeError, ValueError):
        raise TypeError(f"shape_native: expected a pair (Ny, Nx), got {value!r}") from None
    for size in (ny, nx):
        if isinstance(size, bool | np.bool_) or not isinstance(size, numbers.Integral):
            raise TypeError(f"shape_native: expected integer sizes, got {value!r}")
    ny, nx = int(ny), int(nx)
    if ny < 1 or nx < 1:
        raise ValueError(f"shape_native: sizes must be >= 1, got {(ny, nx)}")
    sizes.bind("Ny", ny, "shape_native", f"{(ny, nx)}")
    sizes.bind("Nx", nx, "shape_native", f"{(ny, nx)}")
    return ny, nx


def _check_index_range(name: str, index: np.ndarray, n_sources: int | None, what: str) -> None:
    low = -1
    if index.size and index.min() < low:
        raise ValueError(f"{name}: {what} must be >= -1 (-1 pads), got {index.min()}")
    if n_sources is not None and index.size and index.max() >= n_sources:
        raise ValueError(
            f"{name}: {what} must be < S = {n_sources} (the number of source pixels), got {index.max()}"
        )


def largest_phase(checked: dict[str, Any]) -> tuple[float, str] | None:
    """The largest phase 2 pi (|u| x + |v| y) any kernel forms on checked
    inputs, and the geometry that set it; None without uv and a geometry.
    The reach per axis is the largest pixel separation or coordinate."""
    if "uv" not in checked:
        return None
    if "grid" in checked:
        grid = checked["grid"]
        reach_y, reach_x = (max(np.ptp(grid[:, axis]), np.abs(grid[:, axis]).max()) for axis in (0, 1))
        geometry = "grid"
    elif "pixel_scale" in checked and "shape_native" in checked:
        d = checked["pixel_scale"] * ARCSEC_TO_RADIANS
        ny, nx = checked["shape_native"]
        reach_y, reach_x = (ny - 1) * d, (nx - 1) * d
        geometry = "pixel_scale and shape_native"
    else:
        return None
    uv = checked["uv"]
    return float(TWO_PI * (np.abs(uv[:, 0]).max() * reach_x + np.abs(uv[:, 1]).max() * reach_y)), geometry


def _check_phase(checked: dict[str, Any]) -> None:
    """The phases stay within MAX_PHASE, so cos and sin keep their digits
    and no NUFFT needs a grid beyond memory."""
    found = largest_phase(checked)
    if found is not None and found[0] > MAX_PHASE:
        phase, geometry = found
        raise ValueError(
            f"uv: the phase 2 pi (u x + v y) reaches {phase:.3g} rad over the {geometry} given, "
            f"beyond the {MAX_PHASE:g} rad where float64 keeps ten digits of cos(phase) "
            "(is uv in wavelengths and pixel_scale in arcsec?)"
        )


#: How far from its mirror a symmetric input may be, relative to its
#: largest entry: rounding in the kernels that made it, far below SPEC's 1e-9.
_SYMMETRY_RTOL = 1e-10


def _check_symmetry(checked: dict[str, Any]) -> None:
    """The inputs SPEC defines as symmetric are, so no implementation that
    reads half of one (the offset table's "half" forms, a Cholesky's lower
    triangle) answers differently from one that reads all of it."""
    mirrors = {
        "w_offsets": (lambda a: a[::-1, ::-1], "w_offsets[-dr, -dc] must equal w_offsets[dr, dc]"),
        "w_tilde": (np.transpose, "W must equal its transpose"),
        "curvature_matrix": (np.transpose, "F must equal its transpose"),
        "regularization_matrix": (np.transpose, "H must equal its transpose"),
    }
    for name, (mirror, rule) in mirrors.items():
        if name in checked:
            array = checked[name]
            gap = float(np.abs(array - mirror(array)).max())
            if gap > _SYMMETRY_RTOL * float(np.abs(array).max()):
                raise ValueError(f"{name}: not symmetric ({rule}, SPEC section 2); off by up to {gap:.3g}")


#: Entries of a redundant input compared with what the others imply (see
#: _check_redundant): a wrong W or T is wrong almost everywhere, so a sample
#: finds it at a cost independent of M.
_SAMPLE = 64
#: Their agreement: an offset table by a NUFFT carries NUFFT_EPS (1e-12)
#: relative error; a sign or a swapped input is wrong at order one.
_REDUNDANT_RTOL = 1e-6


def _sample(n: int) -> np.ndarray:
    """Up to _SAMPLE indexes in [0, n), the first and last included, the
    same every call."""
    return np.unique(np.linspace(0, n - 1, min(n, _SAMPLE)).astype(np.int64))


def _check_redundant(checked: dict[str, Any]) -> None:
    """Inputs that say the same thing twice must agree: ``w_tilde`` with
    ``w_offsets`` at ``native_index``, and ``mapping_matrix`` with
    ``pix_indexes``/``pix_weights``; on a sample of entries, so the check
    costs O(_SAMPLE^2 + _SAMPLE B S), not a kernel's."""
    if {"w_tilde", "w_offsets", "native_index"} <= checked.keys():
        w, table, index = checked["w_tilde"], checked["w_offsets"], checked["native_index"]
        ny, nx = ((n + 1) // 2 for n in table.shape)
        rows = _sample(len(index))
        i, j = np.meshgrid(rows, rows[::-1], indexing="ij")
        implied = table[index[i, 0] - index[j, 0] + ny - 1, index[i, 1] - index[j, 1] + nx - 1]
        bad = np.abs(w[i, j] - implied) > _REDUNDANT_RTOL * max(float(np.abs(table).max()), 1e-300)
        if bad.any():
            a, b = int(i[bad][0]), int(j[bad][0])
            raise ValueError(
                f"w_tilde: entry ({a}, {b}) is {float(w[a, b]):.6g} but w_offsets at native_index gives "
                f"{float(implied[bad][0]):.6g}; give one of the two, or both from the same data"
            )
    if {"mapping_matrix", "pix_indexes", "pix_weights"} <= checked.keys():
        t, slots, weights = checked["mapping_matrix"], checked["pix_indexes"], checked["pix_weights"]
        rows = _sample(len(t))
        implied = np.zeros((len(rows), t.shape[1]))
        valid = slots[rows] >= 0
        np.add.at(implied, (np.nonzero(valid)[0], slots[rows][valid]), weights[rows][valid])
        bad = np.abs(t[rows] - implied) > _REDUNDANT_RTOL * max(float(np.abs(weights).max()), 1e-300)
        if bad.any():
            row = int(rows[np.nonzero(bad)[0][0]])
            raise ValueError(
                f"mapping_matrix: row {row} differs from what pix_indexes and pix_weights give; "
                "give one of the two, or both from the same mapping"
            )


def _check_relations(checked: dict[str, Any], sizes: _Sizes) -> None:
    """The checks that involve more than one input, or the values of one."""
    n_sources = sizes.get("S")
    ny, nx = sizes.get("Ny"), sizes.get("Nx")

    if "mask" in checked and not (~checked["mask"]).any():
        raise ValueError("mask: every pixel is masked (True = masked out); M = 0")

    index = checked.get("native_index")
    if index is not None:
        rows, cols = index[:, 0], index[:, 1]
        if index.min() < 0:
            raise ValueError("native_index: (row, col) must be >= 0")
        if ny is not None and (rows.max() >= ny or cols.max() >= nx):
            raise ValueError(f"native_index: (row, col) must lie inside the grid (Ny, Nx) = {(ny, nx)}")
        ordered = (np.diff(rows) > 0) | ((np.diff(rows) == 0) & (np.diff(cols) > 0))
        if not ordered.all():
            raise ValueError("native_index: pixels must be unique and in row-major (slim) order")
        if "mask" in checked and not np.array_equal(index, np.argwhere(~checked["mask"])):
            raise ValueError("native_index: does not list the unmasked pixels of mask")
        if "grid" in checked and "pixel_scale" in checked and ny is not None:
            d = checked["pixel_scale"] * ARCSEC_TO_RADIANS
            expected = pixel_centres(index, (ny, nx), checked["pixel_scale"])
            if not np.allclose(checked["grid"], expected, rtol=1e-12, atol=1e-12 * d):
                raise ValueError("grid: does not match native_index, pixel_scale and shape_native (SPEC 1)")

    if "pix_indexes" in checked:
        pix_indexes = checked["pix_indexes"]
        _check_index_range("pix_indexes", pix_indexes, n_sources, "source pixel indexes")
        if "pix_weights" in checked and (checked["pix_weights"][pix_indexes < 0] != 0).any():
            raise ValueError("pix_weights: must be 0 where pix_indexes is -1 (an unused slot)")

    if "neighbors" in checked:
        neighbors = checked["neighbors"]
        _check_index_range("neighbors", neighbors, n_sources, "neighbour indexes")
        s_count = neighbors.shape[0]
        rows, slots = np.nonzero(neighbors >= 0)
        targets = neighbors[rows, slots]
        if (targets == rows).any():
            raise ValueError("neighbors: a source pixel is listed as its own neighbour")
        edges = np.sort(rows * s_count + targets)
        if (np.diff(edges) == 0).any():
            raise ValueError("neighbors: a row lists the same neighbour twice")
        if not np.isin(targets * s_count + rows, edges).all():
            raise ValueError("neighbors: not symmetric (n in row s but s not in row n)")
        if "neighbors_sizes" in checked:
            counted = (neighbors >= 0).sum(axis=1)
            if not np.array_equal(checked["neighbors_sizes"], counted):
                row = int(np.argmax(checked["neighbors_sizes"] != counted))
                raise ValueError(
                    f"neighbors_sizes: row {row} says {checked['neighbors_sizes'][row]} but "
                    f"neighbors has {counted[row]} entries that are not -1"
                )

    # last: these read indexes and sizes the checks above have bounded
    _check_phase(checked)
    _check_symmetry(checked)
    _check_redundant(checked)


def _check_examples(checked: dict[str, Any]) -> None:
    """The seeds' examples are defined only where their square roots are real."""
    if "a" in checked:
        if (checked["a"] == 0).any():
            raise ValueError("a: must be non-zero (the formula divides by 2a)")
        if "b" in checked and "c" in checked:
            if (checked["b"] ** 2 - 4 * checked["a"] * checked["c"] < 0).any():
                raise ValueError("c: b^2 - 4ac < 0 somewhere; the roots would be complex")
    if "x" in checked:
        x = checked["x"]
        with np.errstate(over="ignore", invalid="ignore"):
            radicand = x * x + np.sin(x) * np.exp(-x)
        if not (np.isfinite(radicand) & (radicand >= 0)).all():
            raise ValueError("x: x^2 + sin(x) exp(-x) must be finite and >= 0 (true for x >= 0)")


def sizes(checked: dict[str, Any]) -> dict[str, int]:
    """The sizes by symbol (M, K, S, B, P, Ny, Nx, n, W) that checked inputs show."""
    found: dict[str, int] = {}
    for name, value in checked.items():
        spec = SPECS[name]
        if isinstance(spec, Array):
            for symbol, size in zip(spec.shape, np.shape(value), strict=True):
                if isinstance(symbol, str):
                    found[symbol[1:-2] if symbol.startswith("2") else symbol] = (
                        (size + 1) // 2 if symbol.startswith("2") else size
                    )
        elif isinstance(spec, ShapeNative):
            found["Ny"], found["Nx"] = value
        elif name == "n_sources":
            found["S"] = value
    return found


def check(inputs: dict[str, Any]) -> dict[str, Any]:
    """Check and convert canonical inputs; return them ready for any backend."""
    sizes = _Sizes()
    checked: dict[str, Any] = {}
    for name, value in inputs.items():
        spec = SPECS.get(name)
        if spec is None:
            raise TypeError(f"{name}: not a canonical input name (see SPEC section 1)")
        if isinstance(spec, ShapeNative):
            checked[name] = _shape_native(value, sizes)
        elif isinstance(spec, Scalar):
            checked[name] = _scalar(name, value, spec)
            if name == "n_sources":
                sizes.bind("S", checked[name], name, f"n_sources = {checked[name]}")
        else:
            checked[name] = _array(name, value, spec, sizes)
    _check_relations(checked, sizes)
    _check_examples(checked)
    return checked
