"""The largest singular values by LOBPCG (scipy) on the Gram operator, block products throughout.

LOBPCG iterates a block of vectors of the Gram G = AᵀA of the smaller side (A = J or Jᵀ after the
rows known to be zero are dropped), so every step is one batched product with J and one with Jᵀ:
the vmapped JVP/VJP blocks of the Jacobian operators. It runs in rounds; after each round a
Rayleigh-Ritz step (SVD of A·V) turns the block into singular triplets, whose residuals
‖Aᵀu_i − σ_i v_i‖ decide convergence. The block holds more vectors than asked for: the extra ones
speed up convergence of the wanted ones and are never waited for.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from scipy.sparse.linalg import lobpcg

from ..operators.base import LinearOperator, compose
from ..operators.linearize import linearized
from ._util import Counted, drop_zero_rows, seeded_generator
from .krylov import _rayleigh_ritz
from .results import SingularValues

#: LOBPCG iterations between two convergence checks (each check costs one block product each way).
ROUND = 25


def _block_size(want: int, q: int, block: int | None) -> int:
    """Block vectors: ``block`` or max(2·want, want + 4), at most q (the Gram size)."""
    size = block if block is not None else max(2 * want, want + 4)
    if size < want:
        raise ValueError(f"block={block} is smaller than the number of values wanted ({want}); "
                         f"pass block >= {want} or leave it None")
    return min(size, q)


def _rounds(gram, x: np.ndarray, a: LinearOperator, want: int, tol: float, maxiter: int,
            ) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """LOBPCG in rounds until the top ``want`` residuals are ≤ tol·σ_1 or maxiter iterations.

    Returns:
        (sigma, residuals) of the whole block after Rayleigh-Ritz, iterations allowed so far
        (scipy may stop a round early), converged.
    """
    done, sigma, resid = 0, np.zeros(0), np.zeros(0)
    scipy_tol = None
    while True:
        step = min(ROUND, maxiter - done)
        with warnings.catch_warnings():
            # scipy warns at every round that stops short (expected) and when the size is too
            # small for iterations (it then solves the Gram densely, which is exact)
            warnings.simplefilter("ignore", UserWarning)
            _, x = lobpcg(gram, x, tol=scipy_tol, maxiter=step, largest=True)
        done += step
        sigma, resid = _rayleigh_ritz(a, x)
        top = float(sigma[0]) if len(sigma) else 0.0
        if np.all(resid[:want] <= tol * top) or done >= maxiter:
            return sigma, resid, done, bool(np.all(resid[:want] <= tol * top))
        # scipy stops early once every Gram residual ‖Gx − λx‖ = σ·‖Aᵀu − σv‖ is small enough
        scipy_tol = tol * top * max(float(sigma[want - 1]), 1e-3 * top)


def lobpcg_singular_values(op: LinearOperator, k: int = 6, which: str = "largest", *,
                           tol: float | None = None, maxiter: int = 500,
                           block: int | None = None,
                           seed: int | torch.Generator | None = 0) -> SingularValues:
    """The k largest singular values of J by LOBPCG on JᵀJ or JJᵀ (the smaller side).

    Args:
        op: (m, n) operator.
        k: number of values, 1 ≤ k ≤ min(m, n); beyond the rows not known to be zero the values
            are the known exact zeros.
        which: "largest" only (LOBPCG without a preconditioner is slow for the smallest; use
            method="arpack" or "dense" for those).
        tol: converged when every returned value has ‖Jᵀu_i − σ_i v_i‖ ≤ tol·σ_1 (None: 1e-8
            for float64 products; 100·ε of a lower precision, e.g. 1.2e-5 for float32, whose
            products cannot bring residuals under a few ε·σ_1).
        maxiter: LOBPCG iterations in all.
        block: vectors in the block (None: max(2k, k + 4), at most the Gram size).
        seed: start block seed.

    Returns:
        SingularValues (descending) with residuals ‖Jᵀu_i − σ_i v_i‖ and the matvec count;
        converged=False with advice when maxiter ran out first (the values are then the best
        found, with their residuals saying how good).

    Raises:
        ValueError: which is not "largest", k out of range, or block < k.

    Example:
        >>> import torch
        >>> from resdyn.operators import MatrixOperator
        >>> a = torch.diag(torch.linspace(1.0, 2.0, 60, dtype=torch.float64))
        >>> res = lobpcg_singular_values(MatrixOperator(a), k=2)
        >>> res.converged, [round(float(v), 6) for v in res.values]
        (True, [2.0, 1.983051])
    """
    if which != "largest":
        raise ValueError(f"lobpcg computes the largest singular values only; got which={which!r}. "
                         "Use method='arpack' (k values) or method='dense' (all values) for the "
                         "smallest")
    if not 1 <= k <= min(op.shape):
        raise ValueError(f"k must be in [1, {min(op.shape)}] for a {op.shape} operator; got {k}")
    if maxiter < 1:
        raise ValueError(f"maxiter must be >= 1 (LOBPCG iterations in all); got {maxiter}")
    if tol is None:
        tol = 1e-8 if op.dtype == torch.float64 else 100 * torch.finfo(op.dtype).eps
    t0 = time.perf_counter()
    counted = Counted(linearized(op))  # one forward pass for all products
    kept, killed = drop_zero_rows(counted)
    a = kept if kept.shape[0] >= kept.shape[1] else kept.T  # (p, q), q ≤ p: Gram AᵀA is (q, q)
    q = a.shape[1]
    want = min(k, q)
    sigma, resid, iters, converged, size = np.zeros(0), np.zeros(0), 0, True, 0
    if want:
        size = _block_size(want, q, block)
        x0 = seeded_generator(seed).standard_normal((q, size))
        gram = compose(a.T, a).aslinearoperator()
        sigma, resid, iters, converged = _rounds(gram, x0, a, want, tol, maxiter)
    values = np.concatenate([sigma[:want], np.zeros(k - want)])  # the rest: known exact zeros
    resid = np.concatenate([resid[:want], np.zeros(k - want)])
    if converged:
        message = (f"LOBPCG converged: {want} values (block of {size} on a {q}x{q} Gram) within "
                   f"{iters} iterations; {k - want} known exact zeros")
    else:
        message = (f"LOBPCG did not converge: largest residual {resid.max():.2e} > tol·σ_1 = "
                   f"{tol * (values[0] if len(values) else 0.0):.2e} after maxiter={maxiter} "
                   "iterations; try a larger maxiter or block, a looser tol, or method='arpack'")
    return SingularValues(values, "lobpcg", converged, message, resid, None, counted.count,
                          time.perf_counter() - t0, op.shape, killed)
