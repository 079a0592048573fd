"""Extreme singular values and eigenvalues by ARPACK on the matrix-free operator.

Singular values: implicitly restarted Lanczos (eigsh) on the Gram operator of the smaller side,
then a Rayleigh-Ritz step (SVD of J·V) that makes the values accurate to round-off even when the
Lanczos vectors are only accurate to √tol. Eigenvalues: implicitly restarted Arnoldi (eigs) on the
nonsymmetric J. Rows known to be zero are deflated first (their zeros are exact) and merged back.
Non-convergence is reported (``converged=False``, the values that did converge, advice), never
raised or hidden.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, eigs, eigsh

from ..operators.base import LinearOperator, compose, restrict
from ..operators.linearize import linearized
from ._util import Counted, as_numpy, drop_zero_rows, seeded_generator
from .dense import with_known_zeros
from .results import Eigenvalues, SingularValues

#: Width (once the known zeros are set aside) from which ARPACK's smallest values warn.
#: The least Arnoldi basis of :func:`arpack_eigenvalues` (scipy's default is max(2k + 1, 20)):
#: with 20 vectors ARPACK missed one of the 6 eigenvalues of largest real part of a 16384-wide
#: CIFAR unit while reporting convergence; with 40 it found it in as many products
#: (benchmarks/README.md, part (g)).
EIGEN_NCV = 40

SLOW_FROM = 512
#: The advice given when ARPACK must find the smallest singular values of a large operator
#: (wider than SLOW_FROM once the known zeros are set aside).
SLOW_SMALLEST = (
    "ARPACK finds the smallest singular values without shift-invert (J is matrix-free), which "
    "converges slowly: measured 310 s on a full-rank 2048-wide unit, and not within 5 minutes on "
    "a rank-deficient 2048x4096 one. Use method='dense' (or 'auto'), which gives every value, "
    "the tail included, in seconds at these sizes, or method='svd' where tiny values must be "
    "accurate to round-off")


def _advice(kind: str, maxiter: int | None, got: int, k: int) -> str:
    return (f"ARPACK ({kind}) did not converge: {got} of {k} values after maxiter={maxiter}; "
            "try a larger maxiter or ncv, a looser tol, or method='dense' if the size allows")


def _torch(a: np.ndarray, op: LinearOperator) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a)).to(device=op.device, dtype=op.dtype)


def arpack_singular_values(op: LinearOperator, k: int = 6, which: str = "largest", *,
                           tol: float = 0.0, maxiter: int | None = None, ncv: int | None = None,
                           seed: int | torch.Generator | None = 0) -> SingularValues:
    """The k largest or smallest singular values of J by ARPACK (eigsh on JᵀJ or JJᵀ).

    Args:
        op: (m, n) operator.
        k: number of values; 1 ≤ k < min(m, n) after dropping known zero rows.
        which: "largest" or "smallest" (the latter converges slowly; known zeros come free).
        tol: ARPACK relative tolerance on σ² (0: machine precision).
        maxiter: ARPACK restarts (None: scipy's default, 10·size).
        ncv: Lanczos basis size (None: scipy's default, max(2k + 1, 20)).
        seed: start vector seed.

    Returns:
        SingularValues with residuals ‖Jᵀu_i − σ_i v_i‖; converged=False and the converged subset
        when ARPACK stops short.

    Raises:
        ValueError: k out of range (the message says to use method="dense").
    """
    t0 = time.perf_counter()
    counted = Counted(linearized(op))  # one forward pass for all products
    kept, killed = drop_zero_rows(counted)
    a = kept if kept.shape[0] >= kept.shape[1] else kept.T  # (p, q), q ≤ p: Gram AᵀA is (q, q)
    q = a.shape[1]
    zeros = min(op.shape) - q  # exact zeros: killed rows and the larger side's excess
    want = k if which == "largest" else max(0, k - zeros)
    if want >= q or k < 1:
        raise ValueError(f"ARPACK needs 1 <= k < {q + (zeros if which == 'smallest' else 0)} "
                         f"for this {op.shape} operator; got k={k}. Use method='dense' for all "
                         "values")
    sigma, resid = np.zeros(0), np.zeros(0)
    converged, message = True, f"ARPACK converged: {want} values"
    if want and which == "smallest" and q > SLOW_FROM:
        warnings.warn(SLOW_SMALLEST, UserWarning, stacklevel=3)
    if want:
        gram = compose(a.T, a).aslinearoperator()
        v0 = seeded_generator(seed).standard_normal(q)
        try:
            _, vecs = eigsh(gram, want, which="LA" if which == "largest" else "SA", tol=tol,
                            maxiter=maxiter, ncv=ncv, v0=v0)
        except ArpackNoConvergence as e:
            vecs = e.eigenvectors
            converged, message = False, _advice("eigsh", maxiter, vecs.shape[1], want)
        sigma, resid = _rayleigh_ritz(a, vecs)
    if converged or which == "smallest":  # known zeros rank only where the ranking is complete
        values = np.concatenate([sigma, np.zeros(zeros)])
        resid = np.concatenate([resid, np.zeros(zeros)])
    else:
        values = sigma
    if which == "largest":
        values, resid = values[:k], resid[:k]
    else:
        values, resid = values[len(values) - k:], resid[len(values) - k:]
    return SingularValues(values, "arpack", converged, message, resid, None, counted.count,
                          time.perf_counter() - t0, op.shape, killed)


def _rayleigh_ritz(a: LinearOperator, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Singular values (descending) of A on span(vecs) and residuals ‖Aᵀu − σv‖."""
    if vecs.shape[1] == 0:
        return np.zeros(0), np.zeros(0)
    v, _ = np.linalg.qr(vecs)
    vt = _torch(v, a)
    av = a.matmat(vt)
    u, s, wt = torch.linalg.svd(av, full_matrices=False)  # A·V = U S Wᵀ, so A·(V W) = U S
    right = vt @ wt.T
    resid = torch.linalg.vector_norm(a.rmatmat(u) - right * s, dim=0)
    return as_numpy(s).astype(np.float64), as_numpy(resid).astype(np.float64)


def arpack_eigenvalues(op: LinearOperator, k: int = 6, which: str = "LM", *, tol: float = 0.0,
                       maxiter: int | None = None, ncv: int | None = None,
                       seed: int | torch.Generator | None = 0) -> Eigenvalues:
    """k eigenvalues of a square J by implicitly restarted Arnoldi (scipy eigs).

    Args:
        op: (n, n) operator.
        k: number of values; 1 ≤ k < r − 1 where r = n minus the rows known to be zero.
        which: scipy's codes: "LM", "SM", "LR", "SR", "LI", "SI".
        tol, maxiter, seed: as in :func:`arpack_singular_values`.
        ncv: Arnoldi basis size (None: max(2k + 1, :data:`EIGEN_NCV`), at most r).

    Returns:
        Eigenvalues with residuals ‖J x − λ x‖ (unit x); converged=False on a short stop.
    """
    t0 = time.perf_counter()
    counted = Counted(linearized(op))
    n = op.shape[0]
    block: LinearOperator = counted
    if op.zero_rows is not None and bool(op.zero_rows.any()):
        keep = ~op.zero_rows.to(op.device)
        block = restrict(counted, rows=keep, cols=keep)
    r = block.shape[0]
    if not 1 <= k < r - 1:
        raise ValueError(f"ARPACK eigs needs 1 <= k < {r - 1} for this operator ({n - r} rows "
                         f"known zero); got k={k}. Use method='dense' for all values")
    v0 = seeded_generator(seed).standard_normal(r)
    ncv = min(r, max(2 * k + 1, EIGEN_NCV)) if ncv is None else ncv
    converged, message = True, f"ARPACK converged: {k} values"
    try:
        lam, vecs = eigs(block.aslinearoperator(), k, which=which, tol=tol, maxiter=maxiter,
                         ncv=ncv, v0=v0)
    except ArpackNoConvergence as e:
        lam, vecs = e.eigenvalues, e.eigenvectors
        converged, message = False, _advice("eigs", maxiter, len(lam), k)
    resid = _eigen_residuals(block, lam, vecs)
    # known zeros rank only where the ranking is complete
    values, resid = with_known_zeros(lam, resid, n - r, k, which, converged or which == "SM")
    return Eigenvalues(values, "arpack", converged, message, resid, counted.count,
                       time.perf_counter() - t0, op.shape, n - r)


def _eigen_residuals(op: LinearOperator, lam: np.ndarray, vecs: np.ndarray) -> np.ndarray:
    if len(lam) == 0:
        return np.zeros(0)
    vecs = vecs / np.linalg.norm(vecs, axis=0)
    k = vecs.shape[1]
    prod = as_numpy(op.matmat(_torch(np.concatenate([vecs.real, vecs.imag], axis=1), op)))
    jx = prod[:, :k] + 1j * prod[:, k:]
    return np.linalg.norm(jx - vecs * lam, axis=0)
