"""Stochastic Lanczos quadrature (SLQ): the density of σ² without computing the σ.

For a unit probe z, s Lanczos steps on the Gram G (JᵀJ or JJᵀ, the smaller side) give a
tridiagonal T = Q Θ Qᵀ; the nodes θ_j and weights τ_j = Q[0, j]² form a Gauss quadrature for
the spectral measure zᵀ δ(t − G) z, whose expectation over Rademacher probes is the eigenvalue
distribution of G. All probes run together as one block of independent Lanczos recurrences, so
each step is one batched product with J and one with Jᵀ. Known zero rows are deflated and enter
as an exact point mass at 0.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor

from ..operators.base import LinearOperator
from ..operators.linearize import linearized
from ._util import Counted, as_numpy, drop_zero_rows, seeded_generator
from .results import Density, SingularValues


def _lanczos_block(a: LinearOperator, z: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """Independent Lanczos on G = AᵀA for each column of z (q, p), full reorthogonalisation.

    Returns:
        alpha (steps, p) and beta (steps - 1, p): the tridiagonals, one per probe.
    """
    q, p = z.shape
    basis = torch.zeros(steps, q, p, dtype=z.dtype, device=z.device)
    alpha = torch.zeros(steps, p, dtype=z.dtype, device=z.device)
    beta = torch.zeros(max(steps - 1, 0), p, dtype=z.dtype, device=z.device)
    v = z / torch.linalg.vector_norm(z, dim=0)
    for j in range(steps):
        basis[j] = v
        w = a.rmatmat(a.matmat(v))
        alpha[j] = (w * v).sum(0)
        # twice is enough (Kahan-Parlett): project out the whole basis of each probe
        for _ in range(2):
            w = w - torch.einsum("jqp,jp->qp", basis[:j + 1], torch.einsum("jqp,qp->jp",
                                                                             basis[:j + 1], w))
        if j + 1 == steps:
            break
        b = torch.linalg.vector_norm(w, dim=0)
        alive = b > 1e-12 * alpha[: j + 1].abs().amax(0).clamp(min=1e-300)
        # a finished recurrence (invariant subspace) continues with zero vectors: its extra
        # Ritz values get zero weight because T decouples
        beta[j] = torch.where(alive, b, torch.zeros_like(b))
        v = torch.where(alive, w / b.clamp(min=1e-300), torch.zeros_like(w))
    return alpha, beta


def _quadrature(alpha: Tensor, beta: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (p, s) of each probe's tridiagonal."""
    s, p = alpha.shape
    t = torch.zeros(p, s, s, dtype=torch.float64)
    idx = torch.arange(s)
    t[:, idx, idx] = alpha.T.cpu().double()
    if s > 1:
        t[:, idx[:-1], idx[1:]] = beta.T.cpu().double()
        t[:, idx[1:], idx[:-1]] = beta.T.cpu().double()
    theta, q = torch.linalg.eigh(t)
    return as_numpy(theta), as_numpy(q[:, 0, :] ** 2)


def kernel_density(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, bandwidth: float,
                   ) -> np.ndarray:
    """Per-probe Gaussian-smoothed densities (p, g): Σ_j τ_j φ_h(t − θ_j)."""
    z = (grid[None, None, :] - nodes[:, :, None]) / bandwidth
    phi = np.exp(-0.5 * z ** 2) / (bandwidth * np.sqrt(2 * np.pi))
    return np.einsum("pj,pjg->pg", weights, phi)


def slq_singular_values(op: LinearOperator, k: int | None = None, which: str = "largest", *,
                        probes: int = 16, steps: int = 80, grid_size: int = 256,
                        bandwidth: float | None = None,
                        seed: int | torch.Generator | None = 0) -> SingularValues:
    """The density of σ² (eigenvalues of the smaller Gram side) by SLQ, with error bars.

    Args:
        op: (m, n) operator.
        k, which: ignored (SLQ estimates the whole distribution); accepted for a uniform API.
        probes: number of Rademacher probes p (error bars shrink like 1/√p).
        steps: Lanczos steps s per probe (capped at the Gram size).
        grid_size: points of the density grid on [0, 1.05·θ_max].
        bandwidth: Gaussian kernel width h in σ² units (None: 1/50 of the grid's range).
        seed: probe seed.

    Returns:
        SingularValues with empty ``values`` and ``density`` set; ``error_bound`` holds the
        largest standard error of the density on the grid. Cost: p·s products with J and Jᵀ.
    """
    t0 = time.perf_counter()
    counted = Counted(linearized(op))
    kept, killed = drop_zero_rows(counted)
    a = kept if kept.shape[0] >= kept.shape[1] else kept.T
    q, n = a.shape[1], min(op.shape)
    steps = max(1, min(steps, q))
    rng = seeded_generator(seed)
    z = torch.as_tensor(rng.choice([-1.0, 1.0], size=(q, probes))).to(op.device, op.dtype)
    alpha, beta = _lanczos_block(a, z, steps)
    nodes, weights = _quadrature(alpha, beta)
    # the deflated exact zeros: a point mass (n - q)/n at 0, identical in every probe
    nodes = np.concatenate([nodes, np.zeros((probes, 1))], axis=1)
    weights = np.concatenate([weights * q / n, np.full((probes, 1), (n - q) / n)], axis=1)
    top = max(float(nodes.max()), 1e-300)
    grid = np.linspace(0.0, 1.05 * top, grid_size)
    h = bandwidth if bandwidth is not None else 1.05 * top / 50
    per_probe = kernel_density(nodes, weights, grid, h)
    stderr = per_probe.std(axis=0, ddof=1) / np.sqrt(probes) if probes > 1 else np.full(
        grid_size, np.nan)
    density = Density(grid, per_probe.mean(axis=0), stderr, nodes, weights, n, h)
    message = f"{probes} probes x {steps} Lanczos steps on a {q}x{q} Gram, {n - q} exact zeros"
    return SingularValues(np.zeros(0), "slq", True, message, None, np.array([stderr.max()]),
                          counted.count, time.perf_counter() - t0, op.shape, killed,
                          density=density)
