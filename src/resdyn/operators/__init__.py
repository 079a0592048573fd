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
           "analysis_copy", "compose", "copy_unit", "function_jacobian", "module_jacobian",
           "relu_off", "residual_jacobian", "shortcut_jacobian", "stage_jacobian",
           "unit_jacobian"]
