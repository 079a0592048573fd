"""Verification of Jacobian operators: the Taylor test and the adjoint test (DESIGN §1).

Taylor: along a random unit direction v, ‖F(x+εv) − F(x)‖ must fall like ε (order 1) and the
remainder ‖F(x+εv) − F(x) − ε·Jv‖ like ε² (order 2). Orders are slopes of log-log fits over a
geometric range of ε. ReLU kinks crossed by the perturbation make the remainder O(ε^1.5) in
expectation and noisy, so order 2 is accepted down to ``quadratic_min`` (1.4 by default); a wrong J
gives order 1. A piecewise-linear F (ReLU network) is exactly linear below its nearest kink, so a
remainder at round-off at the smallest ε also passes; a wrong J cannot reach round-off there.
Adjoint: ⟨Jv, w⟩ = ⟨v, Jᵀw⟩ to round-off, relative to ‖Jv‖·‖w‖.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ._torch import generator
from .capture import capture
from .models.units import Unit, stage_name, stages, units
from .operators.base import LinearOperator
from .operators.jacobian import stage_jacobian, unit_jacobian

#: What the figures of :func:`check_model`'s table mean.
LEGEND = ("order_linear should be 1 and order_quadratic 2 (≥ 1.4 accepted: crossing ReLU kinks "
          "makes the remainder noisier); adjoint_error is |⟨Jv, w⟩ − ⟨v, Jᵀw⟩| relative, at "
          "round-off.")
#: What a remainder at round-off (no order_quadratic) means.
EXACT = ("exact*: the Taylor remainder ‖F(x+εv) − F(x) − ε·Jv‖ is at round-off for the step "
         "sizes tried, so there is no slope to fit: F is exactly linear along v there (no ReLU "
         "kink crossed), which only the true J achieves.")


@dataclass(frozen=True, eq=False)
class JacobianCheck:
    """Figures of the Taylor and adjoint tests.

    Attributes:
        eps: (s,) step sizes ε (descending).
        err_linear: (s,) ‖F(x+εv) − F(x)‖.
        err_quadratic: (s,) ‖F(x+εv) − F(x) − ε·Jv‖.
        roundoff: (s,) the round-off level below which a remainder is not measurable.
        order_linear: fitted slope of log err_linear against log ε (should be 1).
        order_quadratic: fitted slope of the remainder over the ε where it is above round-off
            (should be 2; NaN when fewer than 3 such ε: F is linear along v at these steps).
        adjoint_error: |⟨Jv, w⟩ − ⟨v, Jᵀw⟩| / max(‖Jv‖·‖w‖, ‖v‖·‖Jᵀw‖).
        order_tol, quadratic_min, adjoint_tol: the thresholds ``passed`` uses.

    Example:
        >>> import torch
        >>> from resdyn.operators import function_jacobian
        >>> J = function_jacobian(torch.tanh, torch.linspace(-1, 1, 5, dtype=torch.float64))
        >>> r = check_jacobian(J, J.fn, J.x)
        >>> r.passed, round(r.order_linear), round(r.order_quadratic), r.adjoint_error < 1e-12
        (True, 1, 2, True)
    """

    eps: np.ndarray
    err_linear: np.ndarray
    err_quadratic: np.ndarray
    roundoff: np.ndarray
    order_linear: float
    order_quadratic: float
    adjoint_error: float
    order_tol: float
    quadratic_min: float
    adjoint_tol: float

    @property
    def taylor_passed(self) -> bool:
        """Order 1 for the difference, and for the remainder either order ≥ quadratic_min or
        round-off at the smallest ε (a piecewise-linear F is exactly linear below its nearest kink;
        a wrong J leaves ε·‖(J − Ĵ)v‖ there, far above round-off)."""
        if not abs(self.order_linear - 1.0) <= self.order_tol:
            return False
        if self.err_quadratic[-1] <= self.roundoff[-1]:
            return True
        return bool(self.order_quadratic >= self.quadratic_min)

    @property
    def adjoint_passed(self) -> bool:
        return self.adjoint_error <= self.adjoint_tol

    @property
    def passed(self) -> bool:
        return self.taylor_passed and self.adjoint_passed


def _slope(eps: np.ndarray, err: np.ndarray) -> float:
    ok = err > 0
    if ok.sum() < 3:
        return float("nan")
    return float(np.polyfit(np.log(eps[ok]), np.log(err[ok]), 1)[0])


def check_jacobian(op: LinearOperator, fn: Callable[[Tensor], Tensor], x: Tensor, *,
                   seed: int = 0, eps: Sequence[float] | None = None, order_tol: float = 0.15,
                   quadratic_min: float = 1.4, adjoint_tol: float | None = None,
                   ) -> JacobianCheck:
    """Run the Taylor and adjoint tests of ``op`` as the Jacobian of ``fn`` at ``x``.

    Args:
        op: (m, n) operator claiming to be dF/dx at x.
        fn: F; takes a tensor shaped like ``x`` and returns m numbers (any shape).
            For a :class:`~resdyn.operators.JacobianOperator` pass ``op.fn, op.x``.
        x: the point (n elements).
        seed: for the random directions v (n,) and w (m,).
        eps: step sizes (default: 9 values from 1e-2·s down to 1e-6·s, s = max(‖x‖, 1)).
        order_tol: allowed |order_linear − 1|.
        quadratic_min: smallest accepted order_quadratic.
        adjoint_tol: allowed adjoint error (default 1e4·machine epsilon of op.dtype).

    Returns:
        JacobianCheck with a ``passed`` property.

    Example:
        >>> import torch
        >>> from resdyn.operators import function_jacobian
        >>> J = function_jacobian(torch.tanh, torch.randn(5))
        >>> check_jacobian(J, J.fn, J.x).passed
        True
    """
    m, n = op.shape
    x = x.detach().to(device=op.device, dtype=op.dtype)
    if x.numel() != n:
        raise ValueError(f"x has {x.numel()} elements; the operator takes {n}")
    g = generator(seed)
    v = torch.randn(n, generator=g, dtype=torch.float64).to(op.device, op.dtype)
    v = v / torch.linalg.vector_norm(v)
    w = torch.randn(m, generator=g, dtype=torch.float64).to(op.device, op.dtype)

    def f(t: Tensor) -> Tensor:
        with torch.no_grad():
            return fn(t.reshape(x.shape)).reshape(-1)

    scale = max(float(torch.linalg.vector_norm(x)), 1.0)
    steps = np.asarray(eps if eps is not None else scale * np.logspace(-2, -6, 9), dtype=float)
    f0, jv = f(x), op.matvec(v)
    unit_round = torch.finfo(op.dtype).eps
    lin, rem, floor = [], [], []
    for e in steps:
        fe = f(x + e * v.reshape(x.shape))
        lin.append(float(torch.linalg.vector_norm(fe - f0)))
        rem.append(float(torch.linalg.vector_norm(fe - f0 - e * jv)))
        floor.append(1e3 * unit_round * max(float(torch.linalg.vector_norm(f0)),
                                            float(torch.linalg.vector_norm(fe))))
    lin_a, rem_a, floor_a = np.array(lin), np.array(rem), np.array(floor)
    above = rem_a > floor_a
    order_q = _slope(steps[above], rem_a[above]) if above.sum() >= 3 else float("nan")
    jtw = op.rmatvec(w)
    a, b = float(jv @ w), float(v @ jtw)
    denom = max(float(torch.linalg.vector_norm(jv) * torch.linalg.vector_norm(w)),
                float(torch.linalg.vector_norm(jtw)), 1e-300)
    tol = adjoint_tol if adjoint_tol is not None else 1e4 * unit_round
    return JacobianCheck(steps, lin_a, rem_a, floor_a, _slope(steps, lin_a), order_q,
                         abs(a - b) / denom, order_tol, quadratic_min, tol)


def _one_image(model: nn.Module, x: Tensor | Sequence[int], seed: int) -> Tensor:
    if isinstance(x, Tensor):
        x = x.detach()
        one = 2 if hasattr(model, "embed") else 3  # an embedded context (T, d), or an image
        if x.dim() == one:
            x = x.unsqueeze(0)
        if x.dim() != one + 1:
            what = "an embedded context (T, d)" if one == 2 else "an image (C, H, W)"
            raise ValueError(f"expected {what} or a batch of them; got shape {tuple(x.shape)}")
        return x[:1]
    shape = tuple(int(s) for s in x)
    if not shape:
        raise ValueError(f"expected an input shape, e.g. (C, H, W); got {shape}")
    p = next(model.parameters(), None)
    g = generator(seed)
    img = torch.randn(1, *shape, generator=g)
    return img.to(device=p.device, dtype=p.dtype) if p is not None else img


def _row(name: str, kind: str, stage: int, op: LinearOperator, res: JacobianCheck) -> dict:
    return {"name": name, "kind": kind, "stage": stage, "n_in": op.shape[1],
            "n_out": op.shape[0], "order_linear": res.order_linear,
            "order_quadratic": res.order_quadratic, "adjoint_error": res.adjoint_error,
            "remainder": ("round-off" if res.err_quadratic[-1] <= res.roundoff[-1]
                          else "measured"),
            "passed": res.passed}


def check_model(model: nn.Module, x: Tensor | Sequence[int], *,
                unit_list: Sequence[Unit] | None = None, with_stages: bool = True,
                seed: int = 0, dtype: torch.dtype = torch.float64) -> pd.DataFrame:
    """Taylor and adjoint tests of every unit's and every stage's Jacobian operator.

    Args:
        model: the network (not modified; analysed on float64 eval-mode copies).
        x: an image (C, H, W) / batch (its first image is used) or an input shape (C, H, W)
            for a seeded random image.
        unit_list: units to check (default: ``units(model, shape)``).
        with_stages: also check each stage (the composition of its units).
        seed: random image and test directions.
        dtype: working precision of the operators.

    Returns:
        DataFrame, one row per unit then per stage: name, kind ("regular", "downsampling",
        "stage"), stage, n_in, n_out, order_linear, order_quadratic, adjoint_error, remainder
        ("round-off": the Taylor remainder fell to round-off at the smallest ε, so F is exactly
        linear along v there and order_quadratic has too few points, NaN; "measured"), passed.

    Example:
        >>> import torch
        >>> from resdyn import load_model
        >>> _ = torch.manual_seed(0)  # random weights: a ReLU kink inside the ε range of the
        >>> # Taylor test (about 1 network in 60) would lower the quadratic order below 1.4
        >>> df = check_model(load_model("cifar-resnet20", in_channels=1), (1, 8, 8))
        >>> bool(df.passed.all()), len(df)
        (True, 12)
    """
    img = _one_image(model, x, seed)
    unit_list = list(unit_list) if unit_list is not None else units(model, tuple(img.shape[1:]))
    acts = capture(model, img, unit_list)
    rows = []
    for i, u in enumerate(unit_list):
        op = unit_jacobian(u, acts.inputs[u.name][0], dtype=dtype)
        rows.append(_row(u.name, u.kind, u.stage, op, check_jacobian(op, op.fn, op.x,
                                                                     seed=seed + i)))
    if with_stages:
        for st in stages(unit_list):
            op = stage_jacobian(st, acts.inputs[st[0].name][0], dtype=dtype)
            res = check_jacobian(op, op.fn, op.x, seed=seed + len(rows))
            rows.append(_row(stage_name(st), "stage", st[0].stage, op, res))
    return pd.DataFrame(rows)
