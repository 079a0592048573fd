"""Exact spectra from the materialised Jacobian, exploiting exact structure.

Singular values: rows known to be zero (ReLU-killed outputs) are dropped before J is built, any
other exactly-zero row is dropped after; the remaining (a, b) block M (a ≤ b, J or Jᵀ, whichever
side is smaller) gives G = M·Mᵀ (a, a), whose eigenvalues are σ². Cost: a products with J or Jᵀ,
a²·b flops for the Gram (a symmetric rank-k update) and one symmetric eigensolve of size a.

Accuracy: the eigenvalues of G carry an absolute error δ ≈ a·ε·σ_max², so
|σ̂ − σ| ≤ min(√δ, δ/σ̂): the large values are accurate to round-off, values below √δ are not
resolved from zero. The result records √δ as ``resolution`` and counts the non-zero values under
it (``unresolved``); √δ is 1.5e-6·σ_max at a = 10⁴ in float64, so there the boundary between the
zero bin (1e-6·max(1, σ_max)) and the smallest non-zero values is not resolved either. Use
``method="svd"`` (a plain SVD of the same block) when tiny values must be accurate.

Precision: the products run in the operator's dtype (float32 on request, see
:data:`resdyn.spectra.PRECISIONS`); the block is stored, multiplied and solved in float64. float32
products add an error of about ε₃₂·σ_max to every value (recorded in ``resolution`` and
``error_bound``); a float32 Gram matrix would square it into √(a·ε₃₂)·σ_max and is not offered.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor

from .._threads import threads_for
from ..operators.base import LinearOperator
from ._util import Counted, as_numpy, drop_zero_rows, select_singular
from .results import Eigenvalues, SingularValues, sort_complex


def materialise(op: LinearOperator) -> Tensor:
    """The block M (a, b) with a ≤ b in float64: J (m ≤ n, by m VJPs) or Jᵀ (n < m, by n JVPs).

    The products run in the operator's dtype; each chunk is widened to float64 as it is stored,
    so a float32 operator costs no second copy of the block.
    """
    m, n = op.shape
    a, b = min(m, n), max(m, n)
    out = torch.empty(a, b, dtype=torch.float64, device=op.device)
    if m <= n:
        return op.rows(torch.arange(m, device=op.device), out=out)
    return op.columns(torch.arange(n, device=op.device), out=out)


def product_error(op: LinearOperator) -> float:
    """Round-off of the products relative to σ_max when they run below float64 (else 0).

    A float32 product carries an error of a few ε₃₂ of its size; by Weyl's inequality each
    singular value moves by at most ‖E‖₂ of the block's error E, taken here as ε·σ_max (the
    measured movement on the shipped and CIFAR-shaped models is below 1e-7·σ_max).
    """
    return 0.0 if op.dtype == torch.float64 else float(torch.finfo(op.dtype).eps)


def compact_zero_rows(a: Tensor, chunk: int = 1024) -> Tensor:
    """Move the rows of ``a`` that are not exactly zero to the front, in place; return that view.

    Works chunk by chunk so no second copy of ``a`` is made.
    """
    dst = 0
    for s in range(0, a.shape[0], chunk):
        block = a[s:s + chunk]
        keep = (block != 0).any(dim=1)
        kept = block[keep]  # a copy of at most one chunk
        a[dst:dst + len(kept)] = kept
        dst += len(kept)
    return a[:dst]


def nonzero_columns(a: Tensor, chunk: int = 1024) -> int:
    """Number of columns of ``a`` with a non-zero entry (chunked: no full-size temporary)."""
    seen = torch.zeros(a.shape[1], dtype=torch.bool, device=a.device)
    for s in range(0, a.shape[0], chunk):
        seen |= (a[s:s + chunk] != 0).any(dim=0)
    return int(seen.sum())


def gram(m: Tensor) -> Tensor:
    """G = M·Mᵀ (a, a) for M (a, b), row-major; on the CPU in float64 only its lower triangle.

    On the CPU in float64 this is a BLAS dsyrk through scipy (half the flops of the matrix
    product torch would do; measured 2x faster here), reading M without a copy.
    """
    if m.device.type == "cpu" and m.dtype == torch.float64:
        from scipy.linalg.blas import dsyrk

        # M row-major (a, b) is Mᵀ column-major: dsyrk(trans=1) gives (Mᵀ)ᵀ·Mᵀ = M·Mᵀ as the
        # upper triangle of a column-major array, i.e. the lower triangle of its row-major view
        return torch.from_numpy(dsyrk(1.0, m.numpy().T, trans=1)).T
    return m @ m.T


def gram_eigvalsh(g: Tensor) -> Tensor:
    """Eigenvalues (ascending) of a Gram matrix from :func:`gram` (its lower triangle is read).

    torch.linalg.eigvalsh on every device, on the same row-major lower-triangle layout as a
    plain ``torch.linalg.eigvalsh(a)`` (other layouts measured up to 2x slower with MKL);
    MKL's syevd beat scipy's OpenBLAS dsyevr/dsyevd by about 2x on the benchmark machine.
    """
    return torch.linalg.eigvalsh(g, UPLO="L")


def dense_singular_values(op: LinearOperator, k: int | None = None, which: str = "largest",
                          ) -> SingularValues:
    """All min(m, n) singular values of J (or the k largest/smallest of them), exactly.

    Args:
        op: (m, n) operator; its ``zero_rows`` are dropped before materialising.
        k: how many to return (None: all).
        which: "largest" or "smallest" (used with k).

    Returns:
        SingularValues with ``error_bound`` per value (see module docstring).
    """
    t0 = time.perf_counter()
    counted = Counted(op)
    kept, killed = drop_zero_rows(counted)
    block = compact_zero_rows(materialise(kept))
    # rank(M) <= its non-zero columns too (zero rows of J when M = Jᵀ): those zeros are exact
    a, rank = block.shape[0], min(block.shape[0], nonzero_columns(block))
    t1 = _synced(op)
    with threads_for(max(op.shape)):
        g = gram(block) if a else torch.zeros(0, 0, dtype=torch.float64)
        del block  # peak memory: the block and G, then G and the eigensolver's copy
        t2 = _synced(op)
        lam = gram_eigvalsh(g) if a else torch.zeros(0, dtype=torch.float64)
        del g
        t3 = _synced(op)
    lam = lam.to("cpu", torch.float64).flip(0)[:rank]
    sigma = lam.clamp(min=0).sqrt()
    sigma_max = float(sigma[0]) if rank else 0.0
    delta = a * np.finfo(np.float64).eps * sigma_max ** 2
    rounding = product_error(op) * sigma_max
    bound = torch.minimum(torch.full_like(sigma, delta ** 0.5),
                          delta / sigma.clamp(min=1e-300)) + rounding
    extra = min(op.shape) - rank
    values = np.concatenate([as_numpy(sigma), np.zeros(extra)])
    bounds = np.concatenate([as_numpy(bound), np.zeros(extra)])
    values, bounds = select_singular(values, k, which), select_singular(bounds, k, which)
    phases = {"build": t1 - t0, "gram": t2 - t1, "eigensolve": t3 - t2}
    message = (f"Gram of a {a}x{a} block, {extra} exact zeros; build {t1 - t0:.2f} s, Gram "
               f"{t2 - t1:.2f} s, eigvalsh {t3 - t2:.2f} s")
    return SingularValues(values, "dense", True, message, None, bounds, counted.count,
                          time.perf_counter() - t0, op.shape, killed,
                          resolution=max(delta ** 0.5, rounding), phases=phases)


def _synced(op: LinearOperator) -> float:
    """perf_counter after the operator's device has finished its queued work (CUDA is async)."""
    if op.device.type == "cuda":
        torch.cuda.synchronize(op.device)
    return time.perf_counter()


def svd_singular_values(op: LinearOperator, k: int | None = None, which: str = "largest",
                        ) -> SingularValues:
    """Like :func:`dense_singular_values` but by a plain SVD of the block (torch.linalg.svdvals).

    Slower (several times the Gram path) but accurate to ε·σ_max for every value, tiny ones too.
    """
    t0 = time.perf_counter()
    counted = Counted(op)
    kept, killed = drop_zero_rows(counted)
    block = compact_zero_rows(materialise(kept))
    a = block.shape[0]
    sigma = torch.linalg.svdvals(block).to("cpu", torch.float64) if a else torch.zeros(0)
    del block
    extra = min(op.shape) - a
    values = np.concatenate([as_numpy(sigma), np.zeros(extra)])
    eps = (max(np.finfo(np.float64).eps * max(op.shape), product_error(op))
           * (values[0] if len(values) else 0.0))
    bounds = np.full(len(values), eps)
    bounds[a:] = 0.0
    values, bounds = select_singular(values, k, which), select_singular(bounds, k, which)
    return SingularValues(values, "svd", True, f"SVD of a {a}x{op.shape[1]} block, {extra} exact "
                          "zeros", None, bounds, counted.count, time.perf_counter() - t0,
                          op.shape, killed, resolution=float(eps))


_WHICH_KEY = {
    "LM": lambda v: -np.abs(v), "SM": lambda v: np.abs(v),
    "LR": lambda v: -v.real, "SR": lambda v: v.real,
    "LI": lambda v: -v.imag, "SI": lambda v: v.imag,
}


def with_known_zeros(values: np.ndarray, resid: np.ndarray, zeros: int, k: int, which: str,
                     complete: bool) -> tuple[np.ndarray, np.ndarray]:
    """An iterative solver's eigenvalues (and residuals) with the ``zeros`` exact zeros of the
    rows known to be zero, where ``complete`` (its ranking is whole, so the zeros may rank); the
    first k by ``which``, sorted by descending real part, then imaginary part."""
    values = values.astype(np.complex128)
    if complete:
        values = np.concatenate([values, np.zeros(zeros, dtype=np.complex128)])
        resid = np.concatenate([resid, np.zeros(zeros)])
    order = np.argsort(_WHICH_KEY[which](values), kind="stable")[:k]
    values, resid = values[order], resid[order]
    final = np.lexsort((-values.imag, -values.real))
    return values[final], resid[final]


def select_eigen(values: np.ndarray, k: int | None, which: str) -> np.ndarray:
    """The k eigenvalues first by ``which`` (scipy's codes LM, SM, LR, SR, LI, SI), sorted."""
    if k is not None and k < len(values):
        values = values[np.argsort(_WHICH_KEY[which](values), kind="stable")[:k]]
    return sort_complex(values)


def dense_eigenvalues(op: LinearOperator, k: int | None = None, which: str = "LM",
                      ) -> Eigenvalues:
    """All n eigenvalues of a square J (or k of them by ``which``) by LAPACK geev.

    A zero row i makes e_i a left eigenvector for 0 and J block-triangular after a permutation,
    so eig(J) = eig(J[keep][:, keep]) ∪ {0, ..., 0}: rows known to be zero and their columns are
    dropped before the (expensive, ~10 n³) nonsymmetric eigensolve.

    A unit operator with :class:`~resdyn.operators.jacobian.BranchFactors` (identity shortcut,
    branch cut after a ReLU with r active outputs) goes further: on the kept rows J = α·I + U·Vᵀ
    with U (k, r) and Vᵀ (r, k), and eig(U·Vᵀ) = eig(Vᵀ·U) ∪ {0}^(k−r), so
    eig(J) = {α + eig(Vᵀ·U)} ∪ {α}^(k−r) ∪ {0}^(n−k): an r x r geev instead of k x k, from r VJPs
    through the branch (``BranchFactors.core``) instead of k.
    """
    t0 = time.perf_counter()
    factors = getattr(op, "factors", None)
    if factors is not None:
        solved = _factored(op, factors)
        if solved is not None:
            values, message, count, zeros = solved
            return Eigenvalues(select_eigen(values, k, which), "dense", True, message, None,
                               count, time.perf_counter() - t0, op.shape, zeros)
    counted = Counted(op)
    n = op.shape[0]
    if op.zero_rows is not None:
        keep = torch.nonzero(~op.zero_rows.to(op.device)).reshape(-1)
        block = torch.empty(len(keep), len(keep), dtype=torch.float64, device=op.device)
        step = counted.chunk_size()
        for s in range(0, len(keep), step):
            block[s:s + step] = counted.rows(keep[s:s + step])[:, keep]
    else:
        full = counted.dense()
        keep = torch.nonzero((full != 0).any(dim=1)).reshape(-1)
        block = (full if len(keep) == n else full[keep][:, keep]).to(torch.float64)
        del full
    with threads_for(len(keep)):
        lam = (torch.linalg.eigvals(block) if len(keep)
               else torch.zeros(0, dtype=torch.complex128))
    del block
    values = np.concatenate([as_numpy(lam).astype(np.complex128), np.zeros(n - len(keep))])
    values = select_eigen(values, k, which)
    return Eigenvalues(values, "dense", True, f"geev of a {len(keep)}x{len(keep)} block, "
                       f"{n - len(keep)} exact zeros", None, counted.count,
                       time.perf_counter() - t0, op.shape, n - len(keep))


def _factored(op: LinearOperator, factors) -> tuple[np.ndarray, str, int, int] | None:
    """All eigenvalues of D·(α·I + J_outer·J_inner) through the r x r product Vᵀ·U.

    Returns (values, message, products, exact zeros), or None when the branch is not of lower
    rank than the kept block (then the plain path is no more work).
    """
    n = op.shape[0]
    live = None if op.zero_rows is None else ~op.zero_rows.to(op.device)
    k = n if live is None else int(live.sum())
    core = factors.core(live)                            # Vᵀ·U on the inner ReLU's outputs
    active = torch.nonzero(~core.zero_rows).reshape(-1)
    r, alpha = len(active), factors.alpha
    if r >= k:
        return None
    if r:
        block = core.rows(active)[:, active].to(torch.float64)  # (r, r): r VJPs
        lam = as_numpy(torch.linalg.eigvals(block)).astype(np.complex128) + alpha
    else:
        lam = np.zeros(0, np.complex128)
    values = np.concatenate([lam, np.full(k - r, alpha, np.complex128), np.zeros(n - k)])
    message = (f"geev of a {r}x{r} block (branch of rank <= {r} on {k} kept rows), {k - r} "
               f"eigenvalues = {alpha:g}, {n - k} exact zeros")
    return values, message, r, n - k
