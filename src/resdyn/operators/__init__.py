"""Linear operators: Jacobians of units, stages, modules and functions, matrix-free.

Vectors are flat ``(n,)``; blocks are ``(n, k)``. See :mod:`resdyn.operators.base`.
``analysis_copy`` and ``copy_unit`` (the private copies every operator analyses) live in
:mod:`resdyn.models.surgery` and are re-exported here.
"""

from ..models.surgery import analysis_copy, copy_unit
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
from .forward_ad import warm_up_jvp
from .jacobian import (
    JacobianOperator,
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
           "shortcut_jacobian", "stage_jacobian", "unit_jacobian", "upper_blocks_zero", "warm_up_jvp"]
