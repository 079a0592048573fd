"""The top-k singular triplets (σ_i, u_i, v_i) of an operator, J v_i = σ_i u_i: dense, or
matrix-free by the block Krylov solver of :mod:`.block` or by ARPACK.

The singular-value entry point (:func:`resdyn.spectra.singular_values`) returns values only;
block coupling (:mod:`resdyn.dynamics.coupling`) needs the vectors too. The block path runs the
same thick-restart iteration as :func:`~resdyn.spectra.block.block_singular_values` on the Gram
AᵀA of the smaller side and reads the vectors off its last Rayleigh-Ritz step: right vectors
V·y_i from the basis, left ones (A·V)·y_i / σ_i from the stored products, so they cost no extra
product.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from scipy.sparse.linalg import svds

from ..operators.base import LinearOperator
from ..operators.linearize import linearized
from ._util import Counted, as_numpy, seeded_generator
from .block import _dev, _Gram, _iterate, _sizes, default_tol

#: The methods of :func:`singular_triplets`.
TRIPLET_METHODS = ("auto", "dense", "block", "arpack")
#: The dense path takes the Gram's top eigenpairs from this size up (a full SVD below).
GRAM_FROM = 256
#: ... where σ_k ≥ GRAM_FLOOR·σ_1 (below, v = Jᵀu/σ loses digits: a full SVD instead).
GRAM_FLOOR = 1e-4


@dataclass(frozen=True, eq=False)
class SingularTriplets:
    """The top k singular triplets of J (m, n), J·right[:, i] = sigma[i]·left[:, i].

    Attributes:
        sigma: (k,) float64, descending.
        left: (m, k) float64, orthonormal columns u_i.
        right: (n, k) float64, orthonormal columns v_i.
        method: "dense", "block" or "arpack".
        converged: False when an iterative solve stopped short (``message`` says what to try).
        message: convergence note.
        residuals: (k,) ‖Jᵀu_i − σ_i v_i‖ (iterative methods), None for dense.
        matvecs: products with J or Jᵀ (one per vector).
        seconds: wall time of the solve.

    Example:
        >>> import numpy as np
        >>> e = np.eye(3)[:, :2]
        >>> t = SingularTriplets(np.array([2.0, 1.0]), e, e, "dense", True, "", None, 0, 0.0)
        >>> t.k, t.shape
        (2, (3, 3))
    """

    sigma: np.ndarray
    left: np.ndarray
    right: np.ndarray
    method: str
    converged: bool
    message: str
    residuals: np.ndarray | None
    matvecs: int
    seconds: float

    @property
    def k(self) -> int:
        """How many triplets."""
        return len(self.sigma)

    @property
    def shape(self) -> tuple[int, int]:
        """(m, n) of J."""
        return (self.left.shape[0], self.right.shape[0])


def singular_triplets(op: LinearOperator | torch.Tensor, k: int, *, method: str = "auto",
                      dense_max: int = 4096, tol: float | None = None, maxiter: int = 1000,
                      seed: int | torch.Generator = 0) -> SingularTriplets:
    """The top-k singular triplets of J.

    Args:
        op: (m, n) operator, or a dense (m, n) tensor (then the dense path).
        k: how many; min(k, m, n) are returned.
        method: "dense" (``torch.linalg.svd`` of J materialised), "block" (block Krylov on the
            operator's device, batched products), "arpack" (scipy ``svds``, one vector per
            product), or "auto": dense when max(m, n) ≤ ``dense_max`` or k ≥ min(m, n) − 1, else
            block.
        dense_max: the widest J the auto method materialises.
        tol: block: residuals ‖Jᵀu_i − σ_i v_i‖ ≤ tol·σ_1 (None: 1e-10 in float64); arpack:
            its relative tolerance (None: machine precision).
        maxiter: block: thick restarts allowed.
        seed: start block (vector) of the iterative methods (an int, or a torch.Generator to
            draw it from).

    Returns:
        :class:`SingularTriplets`, sorted by σ descending.

    Raises:
        ValueError: k < 1, or an unknown method (the message lists the valid ones).

    Example:
        >>> import torch
        >>> from resdyn.operators import MatrixOperator
        >>> a = torch.randn(40, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> d, b = (singular_triplets(MatrixOperator(a), 3, method=m) for m in ("dense", "block"))
        >>> bool(abs(d.sigma - b.sigma).max() < 1e-9), b.left.shape, b.right.shape
        (True, (40, 3), (30, 3))
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int (how many triplets); got {k!r}")
    if method not in TRIPLET_METHODS:
        raise ValueError(f"unknown triplet method {method!r}; valid: {', '.join(TRIPLET_METHODS)}")
    t0 = time.perf_counter()
    if isinstance(op, torch.Tensor):
        return _dense(op, k, t0, 0)
    kk = min(k, *op.shape)
    if method == "auto":
        method = "dense" if max(op.shape) <= dense_max or kk >= min(op.shape) - 1 else "block"
    if method == "dense":
        return _dense(op.dense(), k, t0, min(op.shape))
    if method == "arpack":
        return _arpack(op, kk, tol, seed, t0)
    return _block(op, kk, tol, maxiter, seed, t0)


def _dense(j: torch.Tensor, k: int, t0: float, products: int) -> SingularTriplets:
    """Top-k of a dense J: from the k largest eigenpairs of the Gram of its smaller side
    (LAPACK syevr on a subset: ~4x faster than a full SVD at 1024², top 50) where those are
    resolved (σ_k ≥ :data:`GRAM_FLOOR`·σ_1, so that v = Jᵀu/σ is accurate to ~ε·σ_1²/σ_k²),
    else, and for small or nearly full k, by a full SVD."""
    a = j.detach().to("cpu", torch.float64).numpy()
    kk = min(k, *a.shape)
    if min(a.shape) >= GRAM_FROM and kk <= min(a.shape) // 4:
        flip = a.shape[0] > a.shape[1]
        b = a.T if flip else a  # (p, q), p ≤ q: the Gram b·bᵀ is (p, p)
        p = b.shape[0]
        w, u = scipy.linalg.eigh(b @ b.T, subset_by_index=[p - kk, p - 1], driver="evr")
        w, u = w[::-1], u[:, ::-1]
        if w[-1] > 0 and w[-1] >= GRAM_FLOOR**2 * w[0]:
            s = np.sqrt(w)
            v = (b.T @ u) / s
            left, right = (v, u) if flip else (u, v)
            return SingularTriplets(s, np.ascontiguousarray(left), np.ascontiguousarray(right),
                                    "dense", True, "Gram of the smaller side, top k by syevr",
                                    None, products, time.perf_counter() - t0)
    uu, ss, vh = np.linalg.svd(a, full_matrices=False)
    return SingularTriplets(ss[:kk].astype(np.float64), np.ascontiguousarray(uu[:, :kk]),
                            np.ascontiguousarray(vh[:kk].T), "dense", True, "full SVD", None,
                            products, time.perf_counter() - t0)


def _block(op: LinearOperator, k: int, tol: float | None, maxiter: int,
           seed: int | torch.Generator, t0: float,
           ) -> SingularTriplets:
    counted = Counted(linearized(op))  # one forward pass for all products
    flip = counted.shape[0] < counted.shape[1]
    a = counted.T if flip else counted  # (p, q), q ≤ p: the Gram AᵀA is (q, q)
    tol = default_tol(op.dtype) if tol is None else tol
    q = a.shape[1]
    sizes = _sizes(k, q, k, q, maxiter, None, None)
    space = _Gram(a, tol, sizes[0] + sizes[1])
    sigma, resid, converged, message = _iterate(space, q, k, sizes, maxiter, tol, seed)
    v, av, _ = space.cols()
    y = _dev(space.y[:, :k], v)  # the last Rayleigh-Ritz step's coefficients
    right = as_numpy(v @ y)
    left = as_numpy((av.to(torch.float64) @ y) / _dev(sigma, v).clamp(min=np.finfo(float).tiny))
    if flip:  # the solve ran on Jᵀ: its left vectors are J's right ones
        left, right = right, left
    return SingularTriplets(np.asarray(sigma, dtype=np.float64), np.ascontiguousarray(left),
                            np.ascontiguousarray(right), "block", converged, message,
                            np.asarray(resid), counted.count, time.perf_counter() - t0)


def _arpack(op: LinearOperator, k: int, tol: float | None, seed: int | torch.Generator,
            t0: float,
            ) -> SingularTriplets:
    counted = Counted(linearized(op))
    v0 = seeded_generator(seed).standard_normal(min(op.shape))
    left, sigma, right_t = svds(counted.aslinearoperator(), k=k, v0=v0,
                                tol=0.0 if tol is None else tol)
    order = np.argsort(sigma)[::-1]
    left, sigma, right = left[:, order], sigma[order], right_t[order].T
    def dev(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a.copy(), dtype=torch.float64, device=op.device)

    back = counted.rmatmat(dev(left).to(op.dtype)).to(torch.float64)
    resid = torch.linalg.vector_norm(back - dev(right) * dev(sigma), dim=0)
    return SingularTriplets(np.ascontiguousarray(sigma, dtype=np.float64),
                            np.ascontiguousarray(left), np.ascontiguousarray(right), "arpack",
                            True, "ARPACK converged", as_numpy(resid), counted.count,
                            time.perf_counter() - t0)
