"""Residual alignment (Li & Papyan, NeurIPS 2023): the measurements behind RA1-RA4.

RA1: the representations x_0, ..., x_L of one input lie on a line, equispaced
(:func:`straightness`). RA2: the top singular vectors of the residual branches' Jacobians
J_R = dR/dx align with each other and across depth: u_i ≈ v_i within a unit
(:func:`self_alignment`) and the top-k subspaces of different units overlap far more than random
ones (:func:`subspace_overlap` against :func:`random_overlap`, :func:`overlap_matrix`). RA3: the
rank of J_R is at most the number of classes (:func:`numerical_rank`, from the full SVD that
gives the triplets: :attr:`Triplets.rank`). RA4: the top σ of J_R
falls as 1/depth (fit with :func:`resdyn.metrics.power_law` on :attr:`Triplets.sigma`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .._torch import Seed
from ..models.units import Unit
from ..operators.jacobian import residual_jacobian
from ..spectra.triplets import singular_triplets


@dataclass(frozen=True, eq=False)
class Triplets:
    """The top-k singular triplets (σ_i, u_i, v_i) of a unit's residual Jacobian J_R,
    J_R v_i = σ_i u_i.

    Attributes:
        unit: the unit's name.
        sigma: (k,) float64, descending.
        left: (n_out, k) orthonormal columns u_i.
        right: (n_in, k) orthonormal columns v_i.
        seconds: wall time (operator, products and solve).
        method: "dense" (full SVD) or "svds" (scipy ARPACK on the matrix-free operator).
        rank: the numerical rank of J_R, the count of its σ above ``resolution``, read off
            the full SVD's own values ("dense"); None after "svds" (only k values known).
        resolution: the SVD's resolution :func:`rank_resolution` (max(shape)·ε·σ₁): the σ
            below which a computed value cannot be told from zero; None after "svds".

    Example:
        >>> import numpy as np
        >>> e = np.eye(4)
        >>> t = Triplets("u", np.array([2.0, 1.0]), e[:, :2], e[:, :2], seconds=0.0)
        >>> t.sigma.shape, t.left.shape, t.right.shape, t.method
        ((2,), (4, 2), (4, 2), 'dense')
    """

    unit: str
    sigma: np.ndarray
    left: np.ndarray
    right: np.ndarray
    seconds: float
    method: str = "dense"
    rank: int | None = None
    resolution: float | None = None


def residual_triplets(unit: Unit, x: Tensor, k: int, *, dtype: torch.dtype = torch.float64,
                      dense_max: int = 4096, seed: Seed = 0) -> Triplets:
    """Top-k singular triplets of J_R = ``residual_jacobian(unit, x)``.

    Dense (``torch.linalg.svd`` of J_R materialised) when max(shape) ≤ ``dense_max`` or when
    k ≥ min(shape) (ARPACK needs k < min(shape)); otherwise ARPACK (``scipy.sparse.linalg.svds``
    by :func:`resdyn.spectra.triplets.singular_triplets`) on the matrix-free operator with a
    seeded start vector. Sorted by σ descending either way. The
    dense path also gives J_R's numerical rank from the same SVD's values: the count of σ above
    :func:`rank_resolution` (max(shape)·ε·σ₁, LAPACK's tolerance; ε of ``dtype``), so RA3's rank
    needs no second build of J_R.

    Args:
        unit: a unit with a known shortcut/residual split.
        x: (*in_shape) or (1, *in_shape), the unit's input.
        k: how many triplets; min(k, n_out, n_in) are returned.
        dtype: working precision (float64).
        dense_max: largest side for the dense path.
        seed: start vector of svds.

    Returns:
        :class:`Triplets` with sigma (k,), left (n_out, k), right (n_in, k); rank and
        resolution on the dense path.

    Raises:
        ValueError: k < 1, or the unit has no known split (from ``residual_jacobian``).

    Example:
        >>> import torch
        >>> from resdyn import load_model, units
        >>> u = units(load_model("digits-resnet20"))[0]
        >>> t = residual_triplets(u, torch.randn(16, 8, 8), k=2)
        >>> t.left.shape, t.right.shape, bool(t.sigma[0] >= t.sigma[1]), t.method
        ((1024, 2), (1024, 2), True, 'dense')
        >>> 0 < t.rank <= 1024, bool(t.resolution < 1e-12 * t.sigma[0])  # rank from the same SVD
        (True, True)
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int (how many triplets); got {k!r}")
    t0 = time.perf_counter()
    op = residual_jacobian(unit, x, dtype=dtype)
    kk = min(k, *op.shape)
    rank: int | None = None
    resolution: float | None = None
    if max(op.shape) <= dense_max or kk >= min(op.shape):
        u, s, vh = torch.linalg.svd(op.dense().to(torch.float64), full_matrices=False)
        left, sigma, right = u[:, :kk].cpu().numpy(), s[:kk].cpu().numpy(), vh[:kk].T.cpu().numpy()
        method = "dense"
        values = s.cpu().numpy()
        resolution = rank_resolution(op.shape, float(values[0]) if len(values) else 0.0,
                                     op.dtype)
        rank = numerical_rank(values, resolution)
    else:
        t = singular_triplets(op, kk, method="arpack", seed=seed)
        left, sigma, right, method = t.left, t.sigma, t.right, "svds"
    return Triplets(unit.name, np.ascontiguousarray(sigma), np.ascontiguousarray(left),
                    np.ascontiguousarray(right), time.perf_counter() - t0, method, rank,
                    resolution)


def self_alignment(t: Triplets) -> np.ndarray:
    """|⟨u_i, v_i⟩| per triplet: 1 when J_R maps v_i onto itself (up to sign and scale).

    Returns:
        (k,) float64 in [0, 1].

    Raises:
        ValueError: the unit is not square (n_out != n_in: a down-sampling unit).

    Example:
        >>> import numpy as np
        >>> e = np.eye(3)[:, :2]
        >>> self_alignment(Triplets("u", np.ones(2), e, -e, 0.0)).tolist()
        [1.0, 1.0]
    """
    if t.left.shape[0] != t.right.shape[0]:
        raise ValueError(f"unit {t.unit!r} is not square ({t.left.shape[0]} outputs, "
                         f"{t.right.shape[0]} inputs): u_i and v_i live in different spaces. "
                         "Skip down-sampling units")
    return np.abs(np.sum(t.left * t.right, axis=0))


def subspace_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Overlap of span(a) and span(b): ‖aᵀb‖_F² / k = mean cos² of the principal angles.

    Args:
        a: (n, k_a) orthonormal columns.
        b: (n, k_b) orthonormal columns; k = min(k_a, k_b).

    Returns:
        float in [0, 1]: 1 when one span contains the other, k/n on average for random spans.

    Raises:
        ValueError: a and b not 2-D with the same number of rows, or no columns.

    Example:
        >>> import numpy as np
        >>> subspace_overlap(np.eye(4)[:, :2], np.eye(4)[:, 1:3])
        0.5
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"subspace_overlap needs two (n, k) bases of the same space R^n; got "
                         f"shapes {a.shape} and {b.shape}")
    k = min(a.shape[1], b.shape[1])
    if k == 0:
        raise ValueError("subspace_overlap needs at least one column on each side")
    return float(np.sum((a.T @ b) ** 2) / k)


def random_overlap(n: int, k: int) -> float:
    """E[subspace_overlap] of two independent uniformly random k-dim subspaces of R^n: k / n.

    (Each of the k² squared cosines ⟨a_i, b_j⟩² has mean 1/n.)

    Raises:
        ValueError: not 1 ≤ k ≤ n.

    Example:
        >>> random_overlap(64, 4)
        0.0625
    """
    if not 1 <= k <= n:
        raise ValueError(f"random_overlap needs 1 <= k <= n; got n={n}, k={k}")
    return k / n


def overlap_matrix(triplets: Sequence[Triplets], side: str = "left") -> np.ndarray:
    """Pairwise :func:`subspace_overlap` of the units' top-k singular subspaces.

    Args:
        triplets: L results of :func:`residual_triplets`.
        side: "left" (u_i, output space) or "right" (v_i, input space).

    Returns:
        (L, L) float64, symmetric, NaN where two units' spaces differ in size.

    Raises:
        ValueError: an unknown side.

    Example:
        >>> import numpy as np
        >>> e, f = np.eye(4), np.eye(2)
        >>> ts = [Triplets("a", np.ones(2), e[:, :2], e[:, :2], 0.0),
        ...       Triplets("b", np.ones(2), e[:, 1:3], e[:, 1:3], 0.0),
        ...       Triplets("c", np.ones(1), f[:, :1], f[:, :1], 0.0)]  # another space: NaN
        >>> overlap_matrix(ts)
        array([[1. , 0.5, nan],
               [0.5, 1. , nan],
               [nan, nan, 1. ]])
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right'; got {side!r}")
    bases = [getattr(t, side) for t in triplets]
    out = np.full((len(bases), len(bases)), np.nan)
    for i, a in enumerate(bases):
        for j in range(i, len(bases)):
            if a.shape[0] == bases[j].shape[0]:
                out[i, j] = out[j, i] = subspace_overlap(a, bases[j])
    return out


def straightness(points: Sequence[Tensor]) -> dict:
    """How straight and equispaced a trajectory x_0, ..., x_L is (RA1).

    straightness = ‖x_L − x_0‖ / Σ_l ‖x_{l+1} − x_l‖ (1: a straight line, NaN if it never
    moves); step_cv = std / mean of the step lengths ‖x_{l+1} − x_l‖ (0: equispaced).

    Args:
        points: L + 1 tensors of one shape (e.g. a stage's inputs and its last output).

    Returns:
        {"straightness": float, "step_mean": float, "step_cv": float, "steps": L}.

    Raises:
        ValueError: fewer than two points, or points of different shapes.

    Example:
        >>> import torch
        >>> straightness([torch.zeros(2), torch.tensor([1., 0.]), torch.tensor([1., 1.])])["straightness"]
        0.7071067811865476
    """
    if len(points) < 2:
        raise ValueError(f"straightness needs at least two points; got {len(points)}")
    shapes = {tuple(p.shape) for p in points}
    if len(shapes) != 1:
        raise ValueError(f"straightness needs points of one shape; got {sorted(shapes)}. "
                         "Use the units of one stage (a down-sampling unit changes the shape)")
    xs = torch.stack([p.detach().to(device="cpu", dtype=torch.float64).reshape(-1)
                      for p in points])
    steps = torch.linalg.vector_norm(xs[1:] - xs[:-1], dim=1).numpy()
    total, mean = float(steps.sum()), float(steps.mean())
    chord = float(torch.linalg.vector_norm(xs[-1] - xs[0]))
    return {"straightness": chord / total if total > 0 else float("nan"),
            "step_mean": mean,
            "step_cv": float(steps.std()) / mean if mean > 0 else float("nan"),
            "steps": len(steps)}


def rank_resolution(shape: Sequence[int], sigma_max: float,
                    dtype: torch.dtype = torch.float64) -> float:
    """The σ a computed SVD resolves from zero: max(shape)·ε(dtype)·σ_max.

    This is LAPACK's (and numpy.linalg.matrix_rank's) default tolerance: a full SVD gives every
    σ to about ε·σ_max, so a value below this bound cannot be told from zero.

    Example:
        >>> rank_resolution((10, 4), 1.0) == 10 * 2.0 ** -52
        True
    """
    return float(max(shape) * torch.finfo(dtype).eps * sigma_max)


def numerical_rank(sigma: np.ndarray, resolution: float) -> int:
    """Count of σ > ``resolution`` (RA3: at most the number of classes for aligned ResNets).

    Example:
        >>> numerical_rank(np.array([3.0, 1.0, 1e-17]), rank_resolution((3, 3), 3.0))
        2
    """
    return int(np.sum(np.asarray(sigma) > resolution))
