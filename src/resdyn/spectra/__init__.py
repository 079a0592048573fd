"""Singular values and eigenvalues of linear operators: dense exact, ARPACK, LOBPCG and block
Krylov (its basis on the operator's device) top-k, SLQ density.

One entry point each, :func:`singular_values` and :func:`eigenvalues`, with ``method="auto"``.
"""

from .._torch import PRECISIONS, precision_dtype  # the run's precisions, for the solvers' users
from .api import (
    EIGEN_METHOD_NAMES,
    EIGEN_METHODS,
    SINGULAR_METHOD_NAMES,
    SINGULAR_METHODS,
    check_singular_request,
    choose_eigen,
    choose_singular,
    eigenvalues,
    singular_values,
)
from .results import Density, Eigenvalues, SingularValues
from .triplets import SingularTriplets, singular_triplets

__all__ = ["EIGEN_METHODS", "EIGEN_METHOD_NAMES", "PRECISIONS", "SINGULAR_METHODS", "SINGULAR_METHOD_NAMES",
           "Density", "Eigenvalues", "SingularTriplets", "SingularValues",
           "check_singular_request", "singular_triplets",
           "choose_eigen", "choose_singular",
           "eigenvalues", "precision_dtype", "singular_values"]
