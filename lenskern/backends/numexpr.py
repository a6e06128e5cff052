"""The numexpr backend: the seeds' element-wise examples as numexpr expressions.

numexpr compiles an expression string to a small virtual machine that runs
it over cache-sized blocks of the arrays, on its own thread pool: no
temporary of n elements, no JIT compilation. It is what users reach for
before Numba, so lenskern measures it beside the seeds' NumPy and Numba
forms. Its threads follow ``LENSKERN_NUM_THREADS`` (lenskern.threads sets
NUMEXPR_MAX_THREADS and NUMEXPR_NUM_THREADS before numexpr loads). The math
is in :mod:`lenskern.backends.reference`; numexpr serves no other kernel.

Optional: ``pip install lenskern[peers]``; without numexpr this backend is
missing, with the reason.
"""

from __future__ import annotations

import numexpr
import numpy as np

from lenskern.registry import Backend, Cost, implements

# numexpr evaluates expressions: what users reach for before Numba
BACKEND = Backend(peer="numexpr", others="element-wise examples only",
                  threads=("NUMEXPR_MAX_THREADS", "NUMEXPR_NUM_THREADS"))  # fmt: skip

#: Arrays summed by one expression in ``fma``: each pass reads this many
#: arrays and writes out once, well inside numexpr's operand limit.
FMA_TERMS = 8


@implements("quadratic_formula", "evaluate", Cost("flop", lambda n, **_: 7 * n))
def quadratic_formula_evaluate(a, b, c):
    """The seeds' expression, one numexpr pass over blocks of a, b and c.

    See reference.quadratic_formula for the math.

    Cost: n square roots; 32 n bytes moved, no temporaries of n elements.
    """
    return numexpr.evaluate("(-b + sqrt(b * b - 4.0 * a * c)) / (2.0 * a)", local_dict=dict(a=a, b=b, c=c))


def _weighted_sum(count: int, accumulate: bool) -> str:
    terms = " + ".join(f"w{t} * a{t}" for t in range(count))
    return f"out + {terms}" if accumulate else terms


@implements("fma", "evaluate", Cost("flop", lambda n, W, **_: 2 * W * n))
def fma_evaluate(weights, arrays):
    """The weighted sum, up to FMA_TERMS arrays per numexpr pass over out.

    See reference.fma for the math. Each pass is one expression
    ``out + w0 * a0 + w1 * a1 + ...`` written into out in place (element-wise,
    so every element is read before it is written).

    Cost: W n multiply-adds; 8 (W + 2 ceil(W / FMA_TERMS) - 1) n bytes moved.
    """
    out = np.empty(arrays.shape[1])
    for first in range(0, len(weights), FMA_TERMS):
        count = min(FMA_TERMS, len(weights) - first)
        names = {f"a{t}": arrays[first + t] for t in range(count)}
        names.update({f"w{t}": float(weights[first + t]) for t in range(count)})
        if first:
            names["out"] = out
        numexpr.evaluate(_weighted_sum(count, accumulate=first > 0), local_dict=names, out=out)
    return out


@implements("fused_expression", "evaluate", Cost("trig", lambda n, **_: 3 * n))
def fused_expression_evaluate(x):
    """The seeds' fused expression as one numexpr pass.

    See reference.fused_expression for the math. sin and exp are numexpr's
    element-wise calls (its VML path only where numexpr was built with MKL).

    Cost: n sin, exp and sqrt; 16 n bytes moved.
    """
    return numexpr.evaluate("sqrt(x * x + sin(x) * exp(-x))", local_dict=dict(x=x))
