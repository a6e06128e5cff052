"""The seeds' small JIT examples at the seeds' 5,000,000 elements."""

from .common import KernelProfile, KernelTime


class QuadraticFormula(KernelTime):
    kernel = "quadratic_formula"


class QuadraticFormulaProfile(KernelProfile):
    kernel = "quadratic_formula"


class Fma(KernelTime):
    kernel = "fma"


class FmaProfile(KernelProfile):
    kernel = "fma"


class FusedExpression(KernelTime):
    kernel = "fused_expression"


class FusedExpressionProfile(KernelProfile):
    kernel = "fused_expression"
