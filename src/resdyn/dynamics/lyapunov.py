"""Finite-time Lyapunov exponents of a residual network across depth.

For units u_1, ..., u_L in forward order (the output of u_l is the input of u_{l+1}: ResNet
blocks across stages, down-sampling units included, or a transformer's sub-layers) and the input
x of u_1, the map from u_1's input to u_l's output has the Jacobian

    J_{1→l} = J_l ⋯ J_1,   J_i = dF_i/dx at x_i,  x_{i+1} = F_i(x_i),  x_1 = x,

and its finite-time Lyapunov exponents are

    λ_i(l) = (1/l)·log σ_i(J_{1→l}),   i = 1, ..., k' (descending).

Two ways to get them:

- :func:`exact_exponents`: the singular values of the product itself. Dense where the input is
  at most ``dense_max`` wide: M_l = J_l·M_{l−1} (M_0 = I, n_1 JVPs per unit) and
  ``torch.linalg.svdvals``; otherwise ARPACK on the composed operator (matrix-free) per depth.
- :func:`qr_exponents`: the QR (Benettin) method. Push k orthonormal input directions through
  each unit and re-orthonormalise, Z = J_l·Q_{l−1} = Q_l·R_l; then
  λ_i(l) ≈ (1/l)·Σ_{t≤l} log|(R_t)_ii|. Costs k JVPs per unit. It equals the exact exponents
  only as l grows (the error is O(1/l) for a random start): Σ_i log|R_ii| over all n directions
  is log|det J_{1→l}| exactly, the single values converge.

**Down-sampling units.** Across a unit whose output is narrower (or wider) than its input,
J_{1→l} is rectangular (n_l × n_1) and its σ_i are defined for i ≤ min(n_l, n_1). λ_i(l) then
measures how much the image of the best-stretched i-dimensional subspace of the *input* space
(R^{n_1}) grows, each length measured in the Euclidean norm of the space it lives in (input
space for the subspace, unit l's output space for its image): σ_1⋯σ_i is the largest
i-volume ratio vol_i(J V)/vol_i(V). No norm is rescaled when the width changes, so a
down-sampling unit's own scale (its 1x1 convolution and BatchNorm) is part of the exponent.
QR carries at most min(k, n_1, n_2, ..., n_l) directions.

**Zero rule.** A σ_i with σ_i ≤ 1e-12·max(1, σ_1)·√max(shape) is numerically zero and gives
λ_i = −inf (a ReLU-killed row of J_l makes exact zeros that round-off turns into ~1e-16·σ_1);
in the QR method the same rule applies to |R_ii| relative to the largest column norm of Z, and a
direction found zero stays −inf at every later depth. ``n_zero`` counts the −inf values.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .._torch import Seed, generator
from ..models.surgery import copy_unit
from ..models.units import Unit
from ..operators.base import LinearOperator, compose
from ..operators.jacobian import unit_jacobian
from ..spectra.api import singular_values

#: Relative size under which a singular value (or |R_ii|) counts as zero; see the module doc.
ZERO_RTOL = 1e-12


@dataclass(frozen=True)
class Exponents:
    """Finite-time Lyapunov exponents of J_{1→l} at one depth l.

    Attributes:
        depth: l, the 1-based number of units composed.
        unit: name of unit l.
        width: n_out of unit l (its output size).
        values: (k',) float64, λ_i(l) descending, −inf where numerically zero;
            k' = min(k, width, n_in of u_1) (QR: min(k, every width up to l, n_in of u_1)).
        n_zero: how many of ``values`` are −inf.
        method: "dense", "arpack", "svd" (ARPACK's fallback when k' leaves no room for a
            Krylov solve) or "qr".
        seconds: wall time spent on this depth (its products and its solve).

    Example:
        >>> import torch
        >>> from resdyn import units
        >>> from resdyn.models import Arch, StableNet
        >>> _ = torch.manual_seed(0)
        >>> net = StableNet(Arch("euler", 3, in_channels=2, num_classes=2, width=4, kernel=1))
        >>> ex = exact_exponents(units(net.eval(), (2, 1, 1)), torch.zeros(4, 1, 1), k=2)
        >>> [(e.depth, e.unit, e.width, e.values.shape, e.method) for e in ex]
        [(1, 'units.0', 4, (2,), 'dense'), (2, 'units.1', 4, (2,), 'dense'), (3, 'units.2', 4, (2,), 'dense')]
    """

    depth: int
    unit: str
    width: int
    values: np.ndarray
    n_zero: int
    method: str
    seconds: float


def zero_threshold(sigma_max: float, shape: Sequence[int]) -> float:
    """The zero rule: values ≤ 1e-12·max(1, σ_max)·√max(shape) count as zero.

    Example:
        >>> zero_threshold(2.0, (100, 4))
        2e-11
    """
    return ZERO_RTOL * max(1.0, float(sigma_max)) * math.sqrt(max(shape))


def _check(unit_list: Sequence[Unit], k: int) -> None:
    if len(unit_list) == 0:
        raise ValueError("need at least one unit, e.g. units(model) or one stage of stages(...)")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int (how many exponents); got {k!r}")
    for a, b in zip(unit_list, unit_list[1:], strict=False):
        if tuple(a.out_shape) != tuple(b.in_shape):
            raise ValueError(f"units must be consecutive: {a.name!r} gives {a.out_shape} but "
                             f"{b.name!r} takes {b.in_shape}. Pass units in forward order "
                             "without gaps, e.g. units(model)[i:j]")


def unit_inputs(unit_list: Sequence[Unit], x: Tensor, dtype: torch.dtype = torch.float64,
                ) -> list[Tensor]:
    """The inputs x_1, ..., x_L of consecutive units, recomputed in ``dtype`` from x.

    x_1 = x and x_{l+1} = F_l(x_l) through a ``copy_unit(u, dtype)`` of each unit (as
    :func:`resdyn.stage_jacobian` does), so the chain is float64 from the start rather than
    float32 captures.

    Args:
        unit_list: units in forward order, each one's output the next one's input.
        x: (*in_shape) or (1, *in_shape) input of the first unit.
        dtype: working precision.

    Returns:
        L tensors, x_l of shape (1, *unit_list[l−1].in_shape), in ``dtype`` on the units'
        device.

    Raises:
        ValueError: no units, units that do not chain, or x not of the first unit's in_shape.

    Example:
        >>> import torch
        >>> from resdyn import load_model, units
        >>> us = units(load_model("digits-resnet20"))[:2]
        >>> [tuple(t.shape) for t in unit_inputs(us, torch.randn(16, 8, 8))]
        [(1, 16, 8, 8), (1, 16, 8, 8)]
    """
    _check(unit_list, 1)
    shape = tuple(unit_list[0].in_shape)
    if tuple(x.shape) == shape:
        x = x.unsqueeze(0)
    if tuple(x.shape) != (1, *shape):
        raise ValueError(f"unit {unit_list[0].name!r} takes one input of shape {shape} or "
                         f"(1, *{shape}); got {tuple(x.shape)}. Pass the first unit's input, "
                         "e.g. capture(model, images, us).inputs[us[0].name][i]")
    p = next(unit_list[0].module.parameters(), None)
    x = x.detach().to(device=p.device if p is not None else x.device, dtype=dtype)
    out = [x]
    with torch.no_grad():
        for u in unit_list[:-1]:
            out.append(copy_unit(u, dtype).forward(out[-1].clone()))
    return out


def _log_or_inf(values: Tensor, threshold: float) -> np.ndarray:
    """log of |values| (float64 numpy), −inf where ≤ threshold."""
    v = values.detach().abs().to(device="cpu", dtype=torch.float64).numpy()
    with np.errstate(divide="ignore"):
        return np.where(v > threshold, np.log(np.maximum(v, np.finfo(float).tiny)), -np.inf)


def _result(depth: int, u: Unit, logs: np.ndarray, method: str, t0: float) -> Exponents:
    values = logs / depth
    return Exponents(depth, u.name, u.n_out, values, int(np.isneginf(values).sum()), method,
                     time.perf_counter() - t0)


def exact_exponents(unit_list: Sequence[Unit], x: Tensor, k: int, *,
                    dtype: torch.dtype = torch.float64, dense_max: int = 4096,
                    seed: Seed = 0) -> list[Exponents]:
    """λ_i(l) = (1/l)·log σ_i(J_l ⋯ J_1) for every depth l, from the product's own σ.

    Dense when n_1 = n_in of u_1 ≤ ``dense_max``: M_l = J_l·M_{l−1} (n_l, n_1), M_0 = I, by
    n_1 JVPs per unit, and all σ by ``torch.linalg.svdvals``. Wider: ARPACK on
    ``compose(J_l, ..., J_1)`` (matrix-free) at each depth; where k' leaves no room for ARPACK
    (k' ≥ the product's live rank bound) a plain SVD of the composed operator instead.

    Args:
        unit_list: L consecutive units in forward order.
        x: (*in_shape) or (1, *in_shape) input of the first unit.
        k: how many exponents (the top k); k' = min(k, n_l, n_1) are returned at depth l.
        dtype: working precision (float64).
        dense_max: the widest input for the dense path.
        seed: ARPACK's start vector (the dense path is deterministic).

    Returns:
        L :class:`Exponents`, depth 1..L; −inf where σ_i is zero by the module's zero rule.

    Raises:
        ValueError: no units, units that do not chain, k < 1, or x of the wrong shape.

    Example:
        >>> import torch
        >>> from resdyn import load_model, units
        >>> us = units(load_model("digits-resnet20"))[:2]
        >>> ex = exact_exponents(us, torch.randn(16, 8, 8), k=3)
        >>> [e.depth for e in ex], ex[1].values.shape, ex[0].method
        ([1, 2], (3,), 'dense')
    """
    _check(unit_list, k)
    xs = unit_inputs(unit_list, x, dtype)
    n1 = unit_list[0].n_in
    if n1 <= dense_max:
        return _exact_dense(unit_list, xs, k, dtype)
    return _exact_krylov(unit_list, xs, k, dtype, seed)


def _exact_dense(unit_list: Sequence[Unit], xs: list[Tensor], k: int, dtype: torch.dtype,
                 ) -> list[Exponents]:
    n1 = unit_list[0].n_in
    m = torch.eye(n1, dtype=dtype, device=xs[0].device)
    out = []
    for depth, (u, xl) in enumerate(zip(unit_list, xs, strict=True), start=1):
        t0 = time.perf_counter()
        m = unit_jacobian(u, xl, dtype=dtype).matmat(m)
        sigma = torch.linalg.svdvals(m.to(torch.float64))
        kk = min(k, u.n_out, n1)
        logs = _log_or_inf(sigma[:kk], zero_threshold(float(sigma[0]), m.shape))
        out.append(_result(depth, u, logs, "dense", t0))
    return out


def _exact_krylov(unit_list: Sequence[Unit], xs: list[Tensor], k: int, dtype: torch.dtype,
                  seed: Seed) -> list[Exponents]:
    n1 = unit_list[0].n_in
    ops: list[LinearOperator] = []
    out: list[Exponents] = []
    for depth, (u, xl) in enumerate(zip(unit_list, xs, strict=True), start=1):
        t0 = time.perf_counter()
        ops.insert(0, unit_jacobian(u, xl, dtype=dtype))
        product = compose(*ops)  # J_l ⋯ J_1: the last factor is applied first
        kk = min(k, u.n_out, n1)
        live = product.shape[0] - (int(product.zero_rows.sum())
                                   if product.zero_rows is not None else 0)
        method = "arpack" if kk < min(live, n1) else "svd"
        res = singular_values(product, k=kk, method=method, seed=seed)
        sigma = torch.as_tensor(np.asarray(res.values[:kk], dtype=np.float64))
        if len(sigma) < kk:  # ARPACK stopped short: the unconverged values are unknown
            sigma = torch.cat([sigma, torch.full((kk - len(sigma),), float("nan"),
                                                 dtype=torch.float64)])
        top = float(sigma[0]) if len(sigma) else 0.0
        logs = _log_or_inf(sigma, zero_threshold(top, product.shape))
        logs[np.isnan(sigma.numpy())] = np.nan
        out.append(_result(depth, u, logs, method, t0))
    return out


def qr_exponents(unit_list: Sequence[Unit], x: Tensor, k: int, *,
                 dtype: torch.dtype = torch.float64, seed: Seed = 0) -> list[Exponents]:
    """λ_i(l) ≈ (1/l)·Σ_{t≤l} log|(R_t)_ii| by the QR method, k JVPs per unit.

    Q_0 (n_1, k) is the orthonormal factor of a seeded Gaussian matrix; per unit
    Z = J_l·Q_{l−1} (n_l, k) by one batched ``matmat`` and Q_l, R_l = qr(Z) (reduced). After a
    unit narrower than the directions carried, only its first min(k, n_l) directions are kept.
    An |R_ii| ≤ 1e-12·max(1, max_j ‖Z_j‖)·√max(Z.shape) makes λ_i −inf from then on.

    Args:
        unit_list: L consecutive units in forward order.
        x: (*in_shape) or (1, *in_shape) input of the first unit.
        k: directions carried.
        dtype: working precision (float64).
        seed: int or torch.Generator for Q_0 (drawn in float64 on the CPU, then moved).

    Returns:
        L :class:`Exponents` (method "qr"), depth 1..L, values sorted descending (direction i's
        sum is tracked per direction; the sort only orders the report).

    Raises:
        ValueError: no units, units that do not chain, k < 1, or x of the wrong shape.

    Example:
        >>> import torch
        >>> from resdyn import load_model, units
        >>> us = units(load_model("digits-resnet20"))[:2]
        >>> qr = qr_exponents(us, torch.randn(16, 8, 8), k=3, seed=0)
        >>> qr[-1].values.shape, qr[-1].method
        ((3,), 'qr')
    """
    _check(unit_list, k)
    xs = unit_inputs(unit_list, x, dtype)
    n1 = unit_list[0].n_in
    g = torch.randn(n1, min(k, n1), generator=generator(seed), dtype=torch.float64)
    q = torch.linalg.qr(g)[0].to(device=xs[0].device, dtype=dtype)
    total = np.zeros(q.shape[1])
    out = []
    for depth, (u, xl) in enumerate(zip(unit_list, xs, strict=True), start=1):
        t0 = time.perf_counter()
        z = unit_jacobian(u, xl, dtype=dtype).matmat(q)
        q, r = torch.linalg.qr(z)
        kk = min(q.shape[1], z.shape[1])
        q, total = q[:, :kk], total[:kk]
        norms = torch.linalg.vector_norm(z, dim=0)
        top = float(norms.max()) if norms.numel() else 0.0
        total = total + _log_or_inf(torch.diagonal(r)[:kk], zero_threshold(top, z.shape))
        # reported descending; ``total`` keeps each direction's own sum (its −inf included)
        out.append(_result(depth, u, np.sort(total)[::-1].copy(), "qr", t0))
    return out
