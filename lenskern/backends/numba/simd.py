"""sin and exp as polynomials the compiler can vectorise, and the fused
element-wise expression sqrt(x^2 + sin(x) exp(-x)) built on them
(:func:`fused_expression`): math.sin and math.exp are scalar libm calls,
which keep a loop scalar.

Constants are derived here, exactly, from pi and log 2 as fractions, so no
digit is copied from elsewhere. The registered implementation that calls
this is ``numba.vectorised`` of ``fused_expression``
(:mod:`lenskern.backends.numba.examples`).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numba
import numpy as np


def _arctan_of_inverse(m: int, terms: int) -> Fraction:
    """arctan(1/m) by its Taylor series, to about 2 * terms * log10(m) digits."""
    return sum(Fraction((-1) ** k, (2 * k + 1) * m ** (2 * k + 1)) for k in range(terms))


#: pi by Machin's formula and log 2 as 2 artanh(1/3), both to over 40 digits.
_PI = 16 * _arctan_of_inverse(5, 40) - 4 * _arctan_of_inverse(239, 15)
_LOG_2 = 2 * sum(Fraction(1, (2 * k + 1) * 3 ** (2 * k + 1)) for k in range(45))


def _split(value: Fraction, bits: int, parts: int) -> tuple[float, ...]:
    """``value`` as a sum of ``parts`` floats, all but the last of ``bits``
    significant bits, so an integer of up to 53 - bits bits times each is exact
    (Cody and Waite's argument reduction)."""
    pieces = []
    for _ in range(parts - 1):
        mantissa, exponent = math.frexp(float(value))
        head = math.ldexp(round(mantissa * 2**bits), exponent - bits)
        pieces.append(head)
        value -= Fraction(head)
    return (*pieces, float(value))


_PI_HALF = _split(_PI / 2, 33, 3)  # k pi/2 exactly for |k| < 2^20
_LOG_2_PARTS = _split(_LOG_2, 42, 2)  # n log 2 exactly for |n| < 2^11
_TWO_OVER_PI = float(2 / _PI)
_ONE_OVER_LOG_2 = float(1 / _LOG_2)
#: Adding and subtracting 1.5 * 2^52 rounds a float of magnitude < 2^51 to
#: an integer, and leaves that integer in the low bits of the sum.
_ROUNDER = 1.5 * 2.0**52
_ROUNDER_BITS = int(np.float64(_ROUNDER).view(np.int64))
#: Taylor coefficients, highest degree first: exp on |r| <= log(2)/2 to
#: degree 13, sin and cos on |r| <= pi/4 to degrees 15 and 16 (as
#: polynomials in r^2). Each truncation is below 1e-16 of the result there.
_EXP = tuple(float(Fraction(1, math.factorial(k))) for k in range(13, -1, -1))
_SIN = tuple(float(Fraction((-1) ** k, math.factorial(2 * k + 1))) for k in range(7, -1, -1))
_COS = tuple(float(Fraction((-1) ** k, math.factorial(2 * k))) for k in range(8, -1, -1))
#: The polynomial path's domain: beyond |x| = 1e5 the reduction by pi/2
#: loses bits; outside [-708, 708] exp(-x) leaves float64's normal range.
#: Elements there take math.sin and math.exp.
VECTOR_SIN_LIMIT = 1e5
VECTOR_EXP_LIMIT = 708.0
#: Elements per vectorised pass (four scratch arrays that stay in L1), and
#: per parallel work item.
VECTOR_CHUNK = 512
VECTOR_BLOCK = 1 << 14


@numba.njit(cache=True, inline="always")
def _horner(coefficients, z):
    total = 0.0
    for coefficient in coefficients:
        total = total * z + coefficient
    return total


# fastmath "contract" only: multiply-adds fuse into FMAs (each one rounding
# instead of two), no reassociation, so the rounding constant still rounds.
@numba.njit(cache=True, fastmath={"contract"})
def _fused_expression_block(x, out, start, stop):
    scale = np.empty(VECTOR_CHUNK)  # exp's rounding sum, then 2^n
    scale_bits = scale.view(np.int64)
    exp_r = np.empty(VECTOR_CHUNK)
    sine = np.empty(VECTOR_CHUNK)
    for first in range(start, stop, VECTOR_CHUNK):
        size = min(VECTOR_CHUNK, stop - first)
        outside = 0
        for i in range(size):
            value = x[first + i]
            # exp(-value) = exp(r) 2^n, n = round(-value / log 2)
            rounded = -value * _ONE_OVER_LOG_2 + _ROUNDER
            n = rounded - _ROUNDER
            r = (-value - n * _LOG_2_PARTS[0]) - n * _LOG_2_PARTS[1]
            scale[i] = rounded
            exp_r[i] = _horner(_EXP, r)
            # sin(value) from r = value - k pi/2, by the quadrant k mod 4
            k = value * _TWO_OVER_PI + _ROUNDER - _ROUNDER
            r = ((value - k * _PI_HALF[0]) - k * _PI_HALF[1]) - k * _PI_HALF[2]
            z = r * r
            sin_r = r * _horner(_SIN, z)
            cos_r = _horner(_COS, z)
            quadrant = k - 4.0 * math.floor(0.25 * k)
            odd = quadrant == 1.0 or quadrant == 3.0
            magnitude = cos_r if odd else sin_r
            sine[i] = -magnitude if quadrant >= 2.0 else magnitude
            outside += (abs(value) > VECTOR_SIN_LIMIT) | (abs(value) > VECTOR_EXP_LIMIT)
        # 2^n from n's bits: the biased exponent field, no float-to-int conversion.
        for i in range(size):
            scale_bits[i] = (scale_bits[i] - _ROUNDER_BITS + 1023) << 52
        for i in range(size):
            value = x[first + i]
            out[first + i] = math.sqrt(value * value + sine[i] * exp_r[i] * scale[i])
        if outside:
            for i in range(size):
                value = x[first + i]
                if abs(value) > VECTOR_SIN_LIMIT or abs(value) > VECTOR_EXP_LIMIT:
                    out[first + i] = math.sqrt(value * value + math.sin(value) * math.exp(-value))
    return out


@numba.njit(cache=True, parallel=True)
def fused_expression(x, out):
    """out = sqrt(x^2 + sin(x) exp(-x)) by the polynomials, blocks of
    VECTOR_BLOCK elements across Numba's threads."""
    n = x.shape[0]
    for block in numba.prange((n + VECTOR_BLOCK - 1) // VECTOR_BLOCK):
        start = np.int64(block) * VECTOR_BLOCK  # prange indexes are unsigned
        _fused_expression_block(x, out, start, min(start + VECTOR_BLOCK, n))
    return out
