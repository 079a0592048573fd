"""Extreme singular values and eigenvalues by thick-restart block Krylov on the operator's device.

ARPACK (:mod:`.krylov`) drives the products from the CPU one vector at a time, each crossing to
the device and back (115 s for the extreme eigenvalues of a 200704-wide ResNet-18 unit on an
H200). Here the basis is a float64 torch tensor on ``op.device``, each step is one batched product
of b vectors (vmapped JVPs / VJPs), and only the small projected problem goes to the CPU. On an
orthonormal basis V (n, c) and its stored image M·V (M = AᵀA or J), repeat: (1) append a block
Z and its products; (2) the next block is M·Z orthogonalised against V (classical Gram-Schmidt
twice, an SVD drops what is already in V, random directions fill a short block); while it fits,
back to (1); (3) Rayleigh-Ritz on the projected problem, residuals from the stored products (no
extra product), stop when the wanted ones are ≤ tol·scale; (4) else a thick restart: keep the
best Ritz vectors (their images are the same combinations of the stored ones), go on with (2)'s
block, which lies outside the whole basis.

Singular values: the Krylov space of the Gram G = AᵀA of the smaller side (A = J or Jᵀ once the
rows known to be zero are dropped); Ritz values from the SVD of A·V (accurate to ε·σ_1, where
G's eigenvalues give √ε·σ_1 near zero); residuals ‖Aᵀu − σv‖ = ‖Gv − σ²v‖/σ. Eigenvalues: block
Arnoldi on J restricted to the kept rows and columns, H = Vᵀ(J·V), Krylov-Schur restarts (an
ordered real Schur form of H keeps the wanted invariant subspace as a real orthonormal basis).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg
import scipy.linalg.lapack
import torch
from torch import Tensor

from ..operators.base import LinearOperator, restrict
from ..operators.linearize import linearized
from ._util import Counted, as_numpy, drop_zero_rows, seeded_generator
from .dense import _WHICH_KEY, with_known_zeros
from .results import Eigenvalues, SingularValues

F64 = torch.float64
#: Directions of a new block left with less than this share of its norm once the basis is
#: projected out are dropped: they are rounding, not new directions.
DROP = 1e-12
#: ``which`` the eigenvalue solver takes (SM needs shift-invert; LI/SI would split pairs).
EIGEN_WHICH = ("LM", "LR", "SR")


def default_tol(dtype: torch.dtype) -> float:
    """1e-10 for float64 products; 100·ε of a lower precision (1.2e-5 for float32), whose
    products cannot bring residuals under a few ε·scale."""
    return 1e-10 if dtype == F64 else 100 * torch.finfo(dtype).eps


def _sizes(k: int, limit: int, want: int, n: int, maxiter: int, block: int | None,
           basis: int | None) -> tuple[int, int, int]:
    """(block b, basis size m, Ritz vectors kept at a restart) in a space of size n, after
    checking the request (1 ≤ k ≤ limit).

    Defaults b = 4, m = max(160, want + 8·b); a restart keeps want + (m − want − b)/2. Products
    on a 16384-wide CIFAR-shaped unit (top 20 σ; 6 λ of largest real part): b = 4, m = 160: 752
    and 1604 in 94 and 401 steps; m = 96: 752 and 2340; b = 8, m = 192: 1088 and 2688 in 68
    and 336 steps.
    """
    b = min(n, block if block is not None else 4)
    m = min(n, basis if basis is not None else max(160, want + 8 * b))
    if not 1 <= k <= limit or maxiter < 0 or b < 1 or m < min(n, want + b):
        raise ValueError(f"need 1 <= k <= {limit}, maxiter >= 0, block >= 1 and basis >= "
                         f"k + block; got k={k}, maxiter={maxiter}, block={b}, basis={m}")
    return b, m, want + (m - want - b) // 2


def _dev(a: np.ndarray, like: Tensor) -> Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=F64, device=like.device)


def _orthonormal(w: Tensor, v: Tensor, coeff: Tensor | None = None) -> Tensor:
    """Orthonormal basis (n, ≤ b) of the part of span(w) (n, b) outside span(v) (v orthonormal);
    ``coeff``: vᵀw where already computed (the first Gram-Schmidt pass's coefficients)."""
    scale = float(torch.linalg.vector_norm(w, dim=0).max()) if w.numel() else 0.0
    w = w - v @ (v.T @ w if coeff is None else coeff)
    w = w - v @ (v.T @ w)
    q, r = torch.linalg.qr(w)
    u, s, _ = torch.linalg.svd(r)
    kept = s > DROP * scale
    w = q @ u[:, kept]
    if kept.any() and s[kept].min() < 1e-4 * scale:  # normalising amplified what rounding
        w = torch.linalg.qr(w - v @ (v.T @ w))[0]     # left of span(v): one more pass
    return w


def _next_block(image: Tensor, coeff: Tensor, v: Tensor, b: int, rng: np.random.Generator,
                ) -> Tensor:
    """The new directions of ``image`` = M·(last block) (``coeff`` = vᵀ·image), filled up to b
    with random ones."""
    z = _orthonormal(image, v, coeff)
    short = min(b - z.shape[1], v.shape[0] - v.shape[1] - z.shape[1])
    if short > 0:
        extra = _dev(rng.standard_normal((v.shape[0], short)), v)
        z = torch.cat([z, _orthonormal(extra, torch.cat([v, z], 1))], 1)
    return z


class _Space:
    """Basis V and stored products as column blocks in preallocated (rows, capacity) buffers on
    the device (torch.cat would copy them all at every step); ``c`` columns in use."""

    def __init__(self, rows: tuple[int, ...], capacity: int, device: torch.device):
        self.bufs = [torch.empty(n, capacity, dtype=F64, device=device) for n in rows]
        self.c = 0

    def cols(self) -> list[Tensor]:
        return [buf[:, :self.c] for buf in self.bufs]

    def _append(self, *blocks: Tensor) -> None:
        for buf, block in zip(self.bufs, blocks, strict=True):
            buf[:, self.c:self.c + block.shape[1]] = block
        self.c += blocks[0].shape[1]

    def _combine(self, y: Tensor) -> None:
        """Every buffer B ← B·y (c, c'): the kept Ritz vectors and their stored products."""
        for buf, new in zip(self.bufs, [x @ y for x in self.cols()], strict=True):
            buf[:, :y.shape[1]] = new
        self.c = y.shape[1]


class _Gram(_Space):
    """Krylov space of G = AᵀA: basis V (q, c), stored A·V (p, c) and G·V (q, c)."""

    def __init__(self, a: LinearOperator, tol: float, capacity: int):
        super().__init__((a.shape[1], a.shape[0], a.shape[1]), capacity, a.device)
        self.a, self.tol = a, tol

    def append(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Add the block z (q, b) and its products; returns (G·z, Vᵀ·G·z)."""
        az = self.a.matmat(z.to(self.a.dtype))
        gz = self.a.rmatmat(az).to(F64)
        self._append(z, az, gz)
        return gz, self.cols()[0].T @ gz

    def ritz(self, want: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Top Ritz values σ (descending) from the SVD of A·V's R factor, residuals
        ‖Gv − σ²v‖/σ, and σ_1. Under √tol·σ_1, where u = Av/σ is not determined, the residual is
        ‖Gv − σ²v‖/(√tol·σ_1): the accuracy the Gram equation gives such values."""
        v, av, gv = self.cols()
        _, s, yt = np.linalg.svd(as_numpy(torch.linalg.qr(av, mode="r")[1]))
        self.y = yt.T  # Vᵀ·G·V = (AV)ᵀ(AV) = Y·S²·Yᵀ
        y, sig = _dev(self.y[:, :want], v), _dev(s[:want], v)
        floor = max(np.sqrt(self.tol) * s[0], np.finfo(float).tiny)
        resid = torch.linalg.vector_norm(gv @ y - (v @ y) * sig**2, dim=0)
        return s[:want], as_numpy(resid / sig.clamp(min=floor)), float(s[0])

    def restart(self, keep: int) -> None:
        self._combine(_dev(self.y[:, :keep], self.bufs[0]))


class _Arnoldi(_Space):
    """Krylov space of a square J: basis V (r, c), stored J·V (r, c), H = Vᵀ(J·V) (c, c)."""

    def __init__(self, j: LinearOperator, which: str, capacity: int):
        super().__init__((j.shape[0], j.shape[0]), capacity, j.device)
        self.j, self.key, self.h = j, _WHICH_KEY[which], np.zeros((0, 0))

    def append(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Add the block z (r, b) and its product; returns (J·z, Vᵀ·J·z)."""
        jz = self.j.matmat(z.to(self.j.dtype)).to(F64)
        below = as_numpy(z.T @ self.cols()[1])
        self._append(z, jz)
        coeff = self.cols()[0].T @ jz
        right, c = as_numpy(coeff), below.shape[1]
        self.h = np.block([[self.h, right[:c]], [below, right[c:]]])
        return jz, coeff

    def ritz(self, want: int) -> tuple[np.ndarray, np.ndarray, float]:
        """The ``want`` Ritz values first by ``which``, residuals ‖Jx − θx‖ (‖x‖ = 1), max |θ|."""
        theta, y = scipy.linalg.eig(self.h)
        order = np.argsort(self.key(theta), kind="stable")[:want]
        top, y = theta[order], y[:, order] / np.linalg.norm(y[:, order], axis=0)
        v, jv = self.cols()
        yy = _dev(np.concatenate([y.real, y.imag], 1), v)
        x, jx = (torch.complex(t[:, :want], t[:, want:]) for t in (v @ yy, jv @ yy))
        resid = torch.linalg.vector_norm(jx - x * torch.as_tensor(top, device=x.device), dim=0)
        return top, as_numpy(resid), float(np.abs(theta).max())

    def restart(self, keep: int) -> None:
        """Keep the invariant subspace of H of its ``keep`` best eigenvalues (a conjugate pair
        whole): V ← V·Z, H ← T[:p, :p] of H's real Schur form reordered by position (LAPACK
        trsen): a unit's J has eigenvalues of high multiplicity (1 where the branch's ReLUs are
        off), which a selection by value would split at random."""
        t, z = scipy.linalg.schur(self.h, output="real")
        select = np.zeros(len(t), dtype=np.int32)
        select[np.argsort(self.key(_schur_eigenvalues(t)), kind="stable")[:keep]] = 1
        t, z, *_, kept, _, _, _ = scipy.linalg.lapack.dtrsen(select, t, z, job="N")
        if kept < len(t) and t[kept, kept - 1] != 0:  # a pair left split by a failed reordering
            kept += 1
        self._combine(_dev(z[:, :kept], self.bufs[0]))
        self.h = t[:kept, :kept]


def _schur_eigenvalues(t: np.ndarray) -> np.ndarray:
    """The eigenvalues of a real Schur form T by position (a 2x2 diagonal block holds a pair)."""
    lam, i = np.zeros(len(t), dtype=np.complex128), 0
    while i < len(t):
        size = 2 if i + 1 < len(t) and t[i + 1, i] != 0 else 1
        lam[i:i + size] = np.linalg.eigvals(t[i:i + size, i:i + size])
        i += size
    return lam


def _iterate(space: _Gram | _Arnoldi, n: int, want: int, sizes: tuple[int, int, int],
             maxiter: int, tol: float, seed: int | torch.Generator | None,
             ) -> tuple[np.ndarray, np.ndarray, bool, str]:
    """Steps 1-4 of the module docstring until converged, maxiter restarts, or the basis spans
    everything (Rayleigh-Ritz is then exact). Returns (values, residuals, converged, message)."""
    b, m, keep = sizes
    rng = seeded_generator(seed)
    z = _orthonormal(_dev(rng.standard_normal((n, b)), space.bufs[0]), space.cols()[0])
    restarts = 0
    while True:
        image, coeff = space.append(z)
        z = _next_block(image, coeff, space.cols()[0], b, rng)
        if z.shape[1] and space.c + z.shape[1] <= m:
            continue
        values, resid, scale = space.ritz(want)  # once per fill: the small solve runs serially
        if len(values) == want and np.all(resid <= tol * scale):
            return values, resid, True, (f"block Krylov converged: residuals <= {tol * scale:.2e} "
                                         f"after {restarts} restarts (block {b}, basis {m})")
        if not z.shape[1] or restarts == maxiter:
            return values, resid, False, (
                f"block Krylov did not converge: largest residual {resid.max():.2e} > "
                f"{tol * scale:.2e} after {restarts} restarts (block {b}, basis {m}); try a "
                "larger maxiter, basis or block, a looser tol, or method='arpack'")
        space.restart(keep)
        restarts += 1


def block_singular_values(op: LinearOperator, k: int = 6, which: str = "largest", *,
                          tol: float | None = None, maxiter: int = 1000, block: int | None = None,
                          basis: int | None = None,
                          seed: int | torch.Generator | None = 0) -> SingularValues:
    """The k largest singular values of J by thick-restart block Krylov on JᵀJ or JJᵀ.

    Args:
        op: (m, n) operator; the basis and products stay on ``op.device``.
        k: number of values, 1 ≤ k ≤ min(m, n); beyond the rows not known to be zero the values
            are the known exact zeros.
        which: "largest" only.
        tol: converged when the top k have ‖Jᵀu_i − σ_i v_i‖ ≤ tol·σ_1 (None: :func:`default_tol`).
        maxiter: thick restarts allowed.
        block: vectors per product call (None: 4).
        basis: most basis vectors before a restart (None: max(160, k + 8·block)).
        seed: start block seed.

    Returns:
        SingularValues (descending) with residuals and matvecs (products with J and Jᵀ);
        converged=False with advice when maxiter ran out (the best values found, with their
        residuals).

    Raises:
        ValueError: which is not "largest"; k, maxiter, block or basis out of range.

    Example:
        >>> from resdyn.operators import MatrixOperator
        >>> a = torch.diag(torch.linspace(1.0, 2.0, 60, dtype=torch.float64))
        >>> res = block_singular_values(MatrixOperator(a), k=2)
        >>> res.converged, [round(float(v), 6) for v in res.values]
        (True, [2.0, 1.983051])
    """
    if which != "largest":
        raise ValueError(f"method='block' computes the largest singular values only; got "
                         f"which={which!r}. Use method='dense' (all values, the tail included)")
    tol = default_tol(op.dtype) if tol is None else tol
    t0 = time.perf_counter()
    counted = Counted(linearized(op))  # one forward pass for all products
    kept, killed = drop_zero_rows(counted)
    a = kept if kept.shape[0] >= kept.shape[1] else kept.T  # (p, q), q ≤ p: Gram AᵀA is (q, q)
    q = a.shape[1]
    want = min(k, q)
    sizes = _sizes(k, min(op.shape), want, q, maxiter, block, basis)
    sigma, resid, converged, message = _iterate(_Gram(a, tol, sizes[0] + sizes[1]), q, want,
                                                sizes, maxiter, tol, seed)
    values = np.concatenate([sigma, np.zeros(k - want)])  # the rest: known exact zeros
    resid = np.concatenate([resid, np.zeros(k - want)])
    return SingularValues(values, "block", converged, message, resid, None, counted.count,
                          time.perf_counter() - t0, op.shape, killed)


def block_eigenvalues(op: LinearOperator, k: int = 6, which: str = "LM", *,
                      tol: float | None = None, maxiter: int = 1000, block: int | None = None,
                      basis: int | None = None,
                      seed: int | torch.Generator | None = 0) -> Eigenvalues:
    """k eigenvalues of a square J by block Arnoldi with Krylov-Schur restarts.

    Args:
        op: (n, n) operator; the basis and products stay on ``op.device``.
        k: number of values, 1 ≤ k ≤ n.
        which: "LM", "LR" or "SR" (largest magnitude, largest / smallest real part).
        tol: converged when the k have ‖Jx_i − λ_i x_i‖ ≤ tol·max|θ| over the Ritz values
            (None: :func:`default_tol`).
        maxiter, block, basis, seed: as in :func:`block_singular_values`.

    Returns:
        Eigenvalues sorted like :func:`resdyn.spectra.krylov.arpack_eigenvalues`, with
        residuals; converged=False with advice when maxiter ran out (the best values found).

    Raises:
        ValueError: which not in LM, LR, SR; k, maxiter, block or basis out of range.
    """
    if which not in EIGEN_WHICH:
        raise ValueError(f"method='block' supports which in {', '.join(EIGEN_WHICH)}; got "
                         f"which={which!r}. Use method='arpack' or method='dense'")
    tol = default_tol(op.dtype) if tol is None else tol
    t0 = time.perf_counter()
    n = op.shape[0]
    counted = Counted(linearized(op))
    j: LinearOperator = counted
    if op.zero_rows is not None and bool(op.zero_rows.any()):
        keep = ~op.zero_rows.to(op.device)  # e_i is a left eigenvector for 0 of a zero row i
        j = restrict(counted, rows=keep, cols=keep)
    r = j.shape[0]
    want = min(k, r)
    sizes = _sizes(k, n, want, r, maxiter, block, basis)
    values, resid, converged, message = _iterate(_Arnoldi(j, which, sizes[0] + sizes[1]), r,
                                                 want, sizes, maxiter, tol, seed)
    # known zeros rank only where the ranking is complete
    values, resid = with_known_zeros(values, resid, n - r, k, which, converged or which == "LM")
    return Eigenvalues(values, "block", converged, message, resid, counted.count,
                       time.perf_counter() - t0, op.shape, n - r)
