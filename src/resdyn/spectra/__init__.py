"""Singular values and eigenvalues of linear operators: dense exact, ARPACK top-k, SLQ density.

One entry point each, :func:`singular_values` and :func:`eigenvalues`, with ``method="auto"``.
"""

from .api import (
    EIGEN_METHODS,
    SINGULAR_METHODS,
    choose_eigen,
    choose_singular,
    eigenvalues,
    singular_values,
)
from .results import Density, Eigenvalues, SingularValues

__all__ = ["EIGEN_METHODS", "SINGULAR_METHODS", "Density", "Eigenvalues", "SingularValues",
           "choose_eigen", "choose_singular", "eigenvalues", "singular_values"]
