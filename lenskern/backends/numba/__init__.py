"""The Numba backend: SPEC section 2 as nopython loops, parallel with prange.

Its modules: :mod:`~lenskern.backends.numba.kernels`, the likelihood's
kernels; :mod:`~lenskern.backends.numba.examples`, the seeds' small JIT
examples; :mod:`~lenskern.backends.numba.simd`, sin and exp as vectorisable
polynomials for the fused expression; :mod:`~lenskern.backends.numba.memory`,
outputs on huge pages. Importing the package registers every implementation
(the registry files a submodule's definitions under this package) and
changes no Numba setting (threads, threading layer, config).
"""

from __future__ import annotations

from lenskern.backends.numba import examples, kernels  # noqa: F401  their @implements register them
from lenskern.registry import Backend

BACKEND = Backend(
    threads=("NUMBA_NUM_THREADS",),
    gaps={"data_parts": "its compiled pass is lenskern.chunk's, shared by numpy.nufft and ducc0.nufft; "
          "the transforms are a NUFFT library's"},
)  # fmt: skip
