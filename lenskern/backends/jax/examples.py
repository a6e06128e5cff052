"""The JAX backend's implementations of the seeds' small examples
(quadratic formula, weighted sum, fused element-wise expression), each
fused by XLA.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from lenskern.registry import Cost, implements


@jax.jit
def _quadratic_formula(a, b, c):
    return (-b + jnp.sqrt(b * b - 4.0 * a * c)) / (2.0 * a)


@jax.jit
def _fma(weights, arrays):
    return jnp.matmul(weights, arrays, precision=lax.Precision.HIGHEST)


@jax.jit
def _fused_expression(x):
    return jnp.sqrt(x * x + jnp.sin(x) * jnp.exp(-x))


@implements("quadratic_formula", "jit", Cost("flop", lambda n, **_: 7 * n))
def quadratic_formula_jit(a, b, c):
    """The larger root of a x^2 + b x + c, fused by XLA into one pass.

    See reference.quadratic_formula for the math.

    Cost: n square roots; 32 n bytes moved, no temporaries.
    """
    return _quadratic_formula(a, b, c)


@implements("fma", "jit", Cost("flop", lambda n, W, **_: 2 * W * n))
def fma_jit(weights, arrays):
    """The weighted sum of arrays as one vector-matrix product, weights @ arrays.

    See reference.fma for the math.

    Cost: W n multiply-adds; 8 (W + 1) n bytes moved.
    """
    return _fma(weights, arrays)


@implements("fused_expression", "jit", Cost("trig", lambda n, **_: 3 * n))
def fused_expression_jit(x):
    """sqrt(x^2 + sin(x) exp(-x)), fused by XLA into one pass.

    See reference.fused_expression for the math.

    Cost: n sin, exp and sqrt; 16 n bytes moved.
    """
    return _fused_expression(x)
