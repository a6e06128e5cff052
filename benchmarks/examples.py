"""The seeds' small JIT examples at the seeds' 5,000,000 elements."""

from .common import generate

generate(("quadratic_formula", "fma", "fused_expression"), globals())
