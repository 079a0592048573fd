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

**Zero rule: each depth's own resolution.** A σ_i of J_{1→l} at or below the resolution of that
depth's computed product,

    ρ_l = (ε₆₄·max(m, n) + l·ε)·σ_1(J_{1→l}),   (m, n) the product's shape, ε of the working dtype,

is not told from zero and gives λ_i = −inf (a ReLU-killed row of J_l makes exact zeros that
round-off turns into ~1e-16·σ_1). The first term is the SVD's own resolution (LAPACK's rank
tolerance, as for the dense spectra, :mod:`resdyn.spectra.dense`); the second the round-off of
the l products that formed it, each about ε of its result, carried to depth l as the product
itself is. Relative to σ_1 of the product, never to 1: a product that contracts every direction
still has its values. A tiny σ_i above ρ_l is a value, however small against σ_1 (a long
non-normal product separates its σ by many orders: (d_i/d_1)^l for factors Q_t·D·Q_{t−1}ᵀ).
In the QR method a unit's |R_ii| are those of one product Z = J_l·Q_{l−1}: ρ = (ε₆₄·max(Z.shape)
+ ε)·max_j ‖Z_j‖ (its largest column norm), and a direction found zero stays −inf at every
later depth. ``n_zero`` counts the −inf values; :attr:`Exponents.resolution` records ρ_l.
"""

from __future__ import annotations

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
        resolution: ρ_l, the σ (QR: |R_ii|) at or below which a value is not told from zero
            at this depth (:func:`zero_threshold`); the values under it are the −inf ones.

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
    resolution: float = float("nan")


def zero_threshold(sigma_max: float, shape: Sequence[int], products: int = 1,
                   dtype: torch.dtype = torch.float64) -> float:
    """The resolution of a computed product's singular values: (ε₆₄·max(shape) +
    products·ε)·σ_max, ε of ``dtype`` (the products' precision); values at or below it count
    as zero.

    ε₆₄·max(shape)·σ_max is what the float64 SVD of the product resolves (LAPACK's rank
    tolerance); each of the ``products`` factors that formed it added a round-off of about ε of
    its result, carried to the end as the product itself is (see the module doc).

    Args:
        sigma_max: σ_1 of the product (its largest computed value; 0 gives 0).
        shape: (m, n) of the product.
        products: how many products formed it (the depth l; 1 for a single QR step).
        dtype: the precision the products ran in.

    Example:
        >>> zero_threshold(2.0, (100, 4)) == 2.0 * 101 * 2.0 ** -52
        True
        >>> zero_threshold(1e-9, (4, 4), products=60) < 1e-20  # relative to the product, not to 1
        True
    """
    eps64, eps = float(torch.finfo(torch.float64).eps), float(torch.finfo(dtype).eps)
    return (eps64 * max(shape) + products * eps) * float(sigma_max)


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


def _result(depth: int, u: Unit, logs: np.ndarray, method: str, t0: float,
            resolution: float) -> Exponents:
    values = logs / depth
    return Exponents(depth, u.name, u.n_out, values, int(np.isneginf(values).sum()), method,
                     time.perf_counter() - t0, resolution)


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
        rho = zero_threshold(float(sigma[0]), m.shape, depth, dtype)
        out.append(_result(depth, u, _log_or_inf(sigma[:kk], rho), "dense", t0, rho))
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
        rho = zero_threshold(top, product.shape, depth, dtype)
        logs = _log_or_inf(sigma, rho)
        logs[np.isnan(sigma.numpy())] = np.nan
        out.append(_result(depth, u, logs, method, t0, rho))
    return out


def qr_exponents(unit_list: Sequence[Unit], x: Tensor, k: int, *,
                 dtype: torch.dtype = torch.float64, seed: Seed = 0) -> list[Exponents]:
    """λ_i(l) ≈ (1/l)·Σ_{t≤l} log|(R_t)_ii| by the QR method, k JVPs per unit.

    Q_0 (n_1, k) is the orthonormal factor of a seeded Gaussian matrix; per unit
    Z = J_l·Q_{l−1} (n_l, k) by one batched ``matmat`` and Q_l, R_l = qr(Z) (reduced). After a
    unit narrower than the directions carried, only its first min(k, n_l) directions are kept.
    An |R_ii| ≤ (ε₆₄·max(Z.shape) + ε)·max_j ‖Z_j‖ (the resolution of that one product and its
    QR, :func:`zero_threshold`) makes λ_i −inf from then on.

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
        rho = zero_threshold(top, z.shape, 1, dtype)
        total = total + _log_or_inf(torch.diagonal(r)[:kk], rho)
        # reported descending; ``total`` keeps each direction's own sum (its −inf included)
        out.append(_result(depth, u, np.sort(total)[::-1].copy(), "qr", t0, rho))
    return out
