"""The Numba backend's implementations of the seeds' small JIT examples
(quadratic formula, weighted sum, fused element-wise expression), serial
and parallel, and the fused expression vectorised by
:mod:`lenskern.backends.numba.simd`.

Outputs are allocated here, in Python (:func:`memory.empty`), and passed
in: an array allocated inside a compiled function costs an extra pass over
it (it is zero-filled), which for these memory-bound loops is most of the
time.
"""

from __future__ import annotations

import math

import numba

from lenskern.backends.numba import simd
from lenskern.backends.numba.memory import empty
from lenskern.registry import Cost, implements


# error_model="numpy": a / 0 gives inf instead of raising, which takes the
# zero check out of the loop so it vectorises (a != 0 is validated first).
@numba.njit(cache=True, error_model="numpy")
def _quadratic_formula_serial(a, b, c, out):
    for i in range(a.shape[0]):
        out[i] = (-b[i] + math.sqrt(b[i] * b[i] - 4.0 * a[i] * c[i])) / (2.0 * a[i])
    return out


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _quadratic_formula_parallel(a, b, c, out):
    for i in numba.prange(a.shape[0]):
        out[i] = (-b[i] + math.sqrt(b[i] * b[i] - 4.0 * a[i] * c[i])) / (2.0 * a[i])
    return out


@numba.njit(cache=True)
def _four(weights, arrays, first):
    """Arrays first..first+3 and their weights; past the end, the last array
    with weight 0 (read, adds nothing), so every pass is a fixed 4-term sum."""
    last = arrays.shape[0] - 1
    a0, a1 = arrays[first], arrays[min(first + 1, last)]
    a2, a3 = arrays[min(first + 2, last)], arrays[min(first + 3, last)]
    w0 = weights[first]
    w1 = weights[first + 1] if first + 1 <= last else 0.0
    w2 = weights[first + 2] if first + 2 <= last else 0.0
    w3 = weights[first + 3] if first + 3 <= last else 0.0
    return a0, a1, a2, a3, w0, w1, w2, w3


@numba.njit(cache=True)
def _fma_serial(weights, arrays, out):
    # Four arrays per pass over out, the innermost loop over elements so it
    # vectorises: out is written once per four arrays (once for the seeds' 4).
    for first in range(0, arrays.shape[0], 4):
        a0, a1, a2, a3, w0, w1, w2, w3 = _four(weights, arrays, first)
        if first == 0:
            for j in range(out.shape[0]):
                out[j] = w0 * a0[j] + w1 * a1[j] + w2 * a2[j] + w3 * a3[j]
        else:
            for j in range(out.shape[0]):
                out[j] += w0 * a0[j] + w1 * a1[j] + w2 * a2[j] + w3 * a3[j]
    return out


@numba.njit(cache=True, parallel=True)
def _fma_parallel(weights, arrays, out):
    for first in range(0, arrays.shape[0], 4):
        a0, a1, a2, a3, w0, w1, w2, w3 = _four(weights, arrays, first)
        if first == 0:
            for j in numba.prange(out.shape[0]):
                out[j] = w0 * a0[j] + w1 * a1[j] + w2 * a2[j] + w3 * a3[j]
        else:
            for j in numba.prange(out.shape[0]):
                out[j] += w0 * a0[j] + w1 * a1[j] + w2 * a2[j] + w3 * a3[j]
    return out


@numba.njit(cache=True)
def _fused_expression_serial(x, out):
    for i in range(x.shape[0]):
        value = x[i]
        out[i] = math.sqrt(value * value + math.sin(value) * math.exp(-value))
    return out


@numba.njit(cache=True, parallel=True)
def _fused_expression_parallel(x, out):
    for i in numba.prange(x.shape[0]):
        value = x[i]
        out[i] = math.sqrt(value * value + math.sin(value) * math.exp(-value))
    return out


@implements("quadratic_formula", "serial", Cost("flop", lambda n, **_: 7 * n))
def quadratic_formula_serial(a, b, c):
    """The seeds' compiled loop, one thread.

    See reference.quadratic_formula for the math. One fused pass, no
    temporaries.

    Cost: n square roots; 32 n bytes moved.
    """
    return _quadratic_formula_serial(a, b, c, empty(a.shape[0]))


@implements("quadratic_formula", "parallel", Cost("flop", lambda n, **_: 7 * n))
def quadratic_formula_parallel(a, b, c):
    """The seeds' compiled loop with parallel=True and prange.

    See reference.quadratic_formula for the math. Elements split across
    Numba's threads.

    Cost: n square roots; 32 n bytes moved.
    """
    return _quadratic_formula_parallel(a, b, c, empty(a.shape[0]))


@implements("fma", "serial", Cost("flop", lambda n, W, **_: 2 * W * n))
def fma_serial(weights, arrays):
    """The weighted sum, four arrays per pass over out, one thread.

    See reference.fma for the math. Each pass is one vectorised loop over the
    elements summing four weighted arrays, so out is written ceil(W / 4)
    times (once for the seeds' W = 4) and no temporary exists.

    Cost: W n multiply-adds; 8 (W + 2 ceil(W / 4) - 1) n bytes moved.
    """
    return _fma_serial(weights, arrays, empty(arrays.shape[1]))


@implements("fma", "parallel", Cost("flop", lambda n, W, **_: 2 * W * n))
def fma_parallel(weights, arrays):
    """The weighted sum, four arrays per pass over out, parallel over elements.

    See reference.fma for the math. As "serial" with prange over the output.

    Cost: W n multiply-adds; 8 (W + 2 ceil(W / 4) - 1) n bytes moved.
    """
    return _fma_parallel(weights, arrays, empty(arrays.shape[1]))


@implements("fused_expression", "serial", Cost("trig", lambda n, **_: 3 * n))
def fused_expression_serial(x):
    """The fused element-wise expression, one thread.

    See reference.fused_expression for the math. One pass, no temporaries.

    Cost: n sin, exp and sqrt; 16 n bytes moved.
    """
    return _fused_expression_serial(x, empty(x.shape[0]))


@implements("fused_expression", "parallel", Cost("trig", lambda n, **_: 3 * n))
def fused_expression_parallel(x):
    """The fused element-wise expression, parallel with prange.

    See reference.fused_expression for the math. As "serial", elements split
    across Numba's threads.

    Cost: n sin, exp and sqrt; 16 n bytes moved.
    """
    return _fused_expression_parallel(x, empty(x.shape[0]))


@implements("fused_expression", "vectorised", Cost("flop", lambda n, **_: 60 * n))
def fused_expression_vectorised(x):
    """The fused expression with sin and exp as polynomials, so the loop is
    SIMD-vectorised; blocks of elements across Numba's threads.

    See reference.fused_expression for the math. exp(-x) = exp(r) 2^n with
    n = round(-x / log 2) and a degree-13 Taylor polynomial on
    |r| <= log(2)/2; sin(x) from r = x - k pi/2 (pi/2 in three parts, Cody
    and Waite) with degree-15 and -16 Taylor polynomials for sin r and cos r
    on |r| <= pi/4 and the quadrant k mod 4; 2^n is built from n's bits. The
    truncation errors are below 1e-16 relative, so both agree with libm to a
    few units in the last place (tests hold them to 1e-13 from -708 to 1e6).
    Elements beyond simd.VECTOR_SIN_LIMIT or simd.VECTOR_EXP_LIMIT take
    math.sin and math.exp. Chunks of simd.VECTOR_CHUNK elements go through
    three vectorised loops (the polynomials, 2^n, the square root) on
    scratch kept in L1.

    Cost: ~60 flops (mostly FMAs) and one square root per element, in SIMD
    lanes; 16 n bytes moved.
    """
    return simd.fused_expression(x, empty(x.shape[0]))
