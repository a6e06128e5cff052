"""lenskern: the interferometer lensing likelihood, kernel by kernel, on every backend.

    import lenskern as lk
    problem = lk.make_problem("tiny")
    lk.compute("w_tilde", **problem)                 # the recommended implementation
    lk.compute("w_tilde", impl="numba.direct", **problem)
    lk.implementations("w_tilde")                    # {name: Implementation}

The contract every implementation keeps (math, conventions, argument names)
is ``docs/spec.md`` in the repository; docstrings cite its sections as
"SPEC section N".

Importing lenskern imports no backend and changes no global JAX or Numba
setting; backends load the first time the registry is asked. The one
exception is asked for explicitly: ``LENSKERN_NUM_THREADS`` (``1``, ``all`` or
a number) pins Numba, XLA, BLAS, numexpr and ducc0 threads and the CPU
affinity, at import, before those libraries load (see :mod:`lenskern.threads`).
"""

from lenskern import threads

threads.apply_from_environment()  # before NumPy, Numba or JAX size their thread pools

# ruff: noqa: E402

from lenskern.likelihood import Likelihood
from lenskern.problems import PRESETS, Problem, crop_to_mask, make_problem
from lenskern.recommend import compute
from lenskern.registry import (
    BACKENDS,
    EXAMPLES,
    KERNELS,
    NAMES,
    NOT_IMPLEMENTED,
    STREAMED,
    TOLERANCE,
    Implementation,
    implementations,
)

__all__ = [
    "BACKENDS",
    "EXAMPLES",
    "KERNELS",
    "NAMES",
    "NOT_IMPLEMENTED",
    "PRESETS",
    "STREAMED",
    "TOLERANCE",
    "Implementation",
    "Likelihood",
    "Problem",
    "compute",
    "crop_to_mask",
    "implementations",
    "make_problem",
]
__version__ = "0.1.0"
