"""Spectra of an operator that is exactly zero: every output row is known to be zero.

A unit whose output ReLU is off everywhere (e.g. a large negative bias) has J = 0 exactly, and
its ``zero_rows`` say so. Its spectrum needs no solver, and the iterative ones cannot run on an
empty deflated operator; :func:`resdyn.spectra.singular_values` and
:func:`resdyn.spectra.eigenvalues` return these results for every method.
"""

from __future__ import annotations

import numpy as np

from ..operators.base import LinearOperator
from .results import Eigenvalues, SingularValues

METHOD = "zero"
REASON = "operator exactly zero (every output row killed): no solver needed"


def is_exactly_zero(op: LinearOperator) -> bool:
    """True when ``op`` has rows and every one of them is known to be zero."""
    rows = getattr(op, "zero_rows", None)
    return rows is not None and op.shape[0] > 0 and bool(rows.all())


def _note(op: LinearOperator, count: int) -> str:
    return (f"the operator is exactly zero: all {op.shape[0]} output rows are known zero (every "
            f"output killed by the output ReLU), so its spectrum is {count} exact zeros; no "
            "solver ran")


def zero_singular_values(op: LinearOperator, k: int | None) -> SingularValues:
    """k (None: all min(m, n)) exact zero singular values of a zero operator, converged."""
    count = min(op.shape) if k is None else k
    zeros = np.zeros(count)
    note = _note(op, count)
    return SingularValues(zeros, METHOD, True, note, zeros.copy(), zeros.copy(), 0, 0.0,
                          op.shape, op.shape[0], reason=REASON)


def zero_eigenvalues(op: LinearOperator, k: int | None) -> Eigenvalues:
    """k (None: all n) exact zero eigenvalues of a square zero operator, converged."""
    count = op.shape[0] if k is None else k
    note = _note(op, count)
    return Eigenvalues(np.zeros(count, dtype=np.complex128), METHOD, True, note, np.zeros(count),
                       0, 0.0, op.shape, op.shape[0], reason=REASON)
