"""Linear operators: Jacobians of units, stages, modules and functions, matrix-free.

Vectors are flat ``(n,)``; blocks are ``(n, k)``. See :mod:`resdyn.operators.base`.
"""

from .base import (
    Adjoint,
    Composed,
    LinearOperator,
    MatrixOperator,
    Restricted,
    compose,
    restrict,
)
from .causal import causal_eigenvalues, diagonal_blocks, upper_blocks_zero
from .jacobian import (
    JacobianOperator,
    analysis_copy,
    copy_unit,
    function_jacobian,
    module_jacobian,
    relu_off,
    residual_jacobian,
    shortcut_jacobian,
    stage_jacobian,
    unit_jacobian,
)
from .linearize import LinearizedJacobian, linearize, linearized

__all__ = ["Adjoint", "Composed", "JacobianOperator", "LinearOperator", "LinearizedJacobian",
           "MatrixOperator", "Restricted", "linearize", "linearized", "restrict",
           "analysis_copy", "causal_eigenvalues", "compose", "copy_unit", "diagonal_blocks",
           "function_jacobian", "module_jacobian", "relu_off", "residual_jacobian",
           "shortcut_jacobian", "stage_jacobian", "unit_jacobian", "upper_blocks_zero"]
