"""Every kernel declared once: a :class:`Kernel` record per kernel of SPEC
section 2, per kernel the stream sums chunk by chunk, and per seeds' example,
from which the registry, validation, the tests, the benchmark classes and the
README's tables derive what they list.
Its math is the reference's docstring (``lenskern/backends/reference.py``).
This module imports nothing of lenskern: it sits under validation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Kernel:
    """A kernel of SPEC section 2, or one of the seeds' examples: what is
    known of it beyond its implementations."""

    name: str
    #: the module of ``benchmarks/`` whose classes measure it
    area: str
    #: its output's shape by the symbols of SPEC section 4 (() for a scalar)
    shape: tuple[str, ...]
    #: an output later kernels take as an input, checked as one (validate)
    intermediate: bool = False
    #: its entries are products of the inputs, so validation bounds them by
    #: MAX_DERIVED rather than MAX_MAGNITUDE (as an intermediate)
    derived: bool = True
    #: one of the seeds' small JIT examples, not a step of the likelihood
    example: bool = False
    #: a sum over visibilities that the stream adds up chunk by chunk
    #: (lenskern.stream), returning several outputs by name: not a kernel of
    #: SPEC section 2, whose list (``lk.KERNELS``) the contract fixes
    streamed: bool = False
    #: float64 entries the least any implementation allocates, where more
    #: than its output (a solve's factor), by symbol; else the output's
    allocates: Callable[..., int] | None = field(default=None, repr=False)
    #: relative tolerance of every implementation against the reference
    #: (SPEC section 3): arrays compare element-wise with an absolute floor of
    #: ``tolerance * max|reference|``, since W and the offset table have
    #: entries that cancel to near zero
    tolerance: float = 1e-9

    def entries(self, **sizes: int) -> int:
        """float64 entries of its output, or of what it allocates at least,
        at ``sizes`` by symbol."""
        if self.allocates is not None:
            return self.allocates(**sizes)
        return math.prod(_length(symbol, sizes) for symbol in self.shape)


def _length(symbol: str, sizes: dict[str, int]) -> int:
    """An axis's length: a size by symbol, or ``2Ny-1`` (the offset table's)."""
    if symbol.startswith("2") and symbol.endswith("-1"):
        return 2 * sizes[symbol[1:-2]] - 1
    return sizes[symbol]


def table_size(Ny: int, Nx: int) -> int:  # noqa: N803  the symbols of SPEC section 4
    """Entries of the offset table, (2Ny-1)(2Nx-1)."""
    return (2 * Ny - 1) * (2 * Nx - 1)


#: Every kernel, in pipeline order (each can be built from the problem and
#: the ones before it), then the seeds' examples.
DECLARED = (
    Kernel("w_tilde", "offsets", ("M", "M"), intermediate=True),
    Kernel("w_offsets", "offsets", ("2Ny-1", "2Nx-1"), intermediate=True),
    Kernel("w_tilde_from_offsets", "offsets", ("M", "M")),
    Kernel("dirty_image", "likelihood", ("M",), intermediate=True),
    # sums of pix_weights: bounded as an input is
    Kernel("mapping_matrix", "curvature", ("M", "S"), intermediate=True, derived=False),
    Kernel("data_vector", "curvature", ("S",), intermediate=True),
    Kernel("curvature_matrix", "curvature", ("S", "S"), intermediate=True),
    Kernel("regularization_matrix", "curvature", ("S", "S"), intermediate=True),
    Kernel("reconstruction", "likelihood", ("S",), allocates=lambda S, **_: S * S),  # F + H and its factor
    Kernel("noise_normalization", "likelihood", ()),
    Kernel("log_evidence", "likelihood", (), allocates=lambda S, **_: 3 * S * S),  # F, H, F + H's factor
    # the table (its largest output), M image values and two sums
    Kernel(
        "data_parts",
        "stream",
        ("2Ny-1", "2Nx-1"),
        streamed=True,
        allocates=lambda Ny, Nx, M, **_: table_size(Ny, Nx) + M + 2,
    ),
    Kernel("quadratic_formula", "examples", ("n",), example=True),
    Kernel("fma", "examples", ("n",), example=True),
    Kernel("fused_expression", "examples", ("n",), example=True),
)
_BY_NAME = {k.name: k for k in DECLARED}

#: The kernels of SPEC section 2, in pipeline order.
KERNELS = tuple(k.name for k in DECLARED if not (k.example or k.streamed))
#: The sums over visibilities the stream adds chunk by chunk (lenskern.stream).
STREAMED = tuple(k.name for k in DECLARED if k.streamed)
#: The small JIT examples of the seeds, kept as kernels on every backend.
EXAMPLES = tuple(k.name for k in DECLARED if k.example)
#: Every declared kernel: SPEC's, the streamed ones, the examples.
NAMES = KERNELS + STREAMED + EXAMPLES
#: Earlier kernels' outputs that later kernels take as inputs, in the order
#: each can be built from the problem and the ones before it.
INTERMEDIATES = tuple(k.name for k in DECLARED if k.intermediate)
#: Each kernel's tolerance against the reference (see Kernel.tolerance).
TOLERANCE = {k.name: k.tolerance for k in DECLARED}


def kernel(name: str) -> Kernel:
    """The declaration of kernel ``name``."""
    if name not in _BY_NAME:
        raise ValueError(f"kernel: unknown kernel {name!r}; expected one of {NAMES}")
    return _BY_NAME[name]
