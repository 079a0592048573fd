"""The ODE view of paper 004 (Haber & Ruthotto): ẏ = σ(K y + b) and ẏ = K y for K₊, K₋, K₀ (and
any K given), integrated by forward Euler at step h (a ResNet's forward pass) and by an accurate
reference integrator, from several nearby initial conditions.

K₊ = [[2, −2], [0, 2]] (eigenvalues 2, 2) separates nearby trajectories, K₋ = [[−2, 0], [2, −2]]
(−2, −2) contracts them, K₀ = [[0, −1], [1, 0]] (±i) rotates them and keeps their distance; forward
Euler on K₀ grows every norm by sqrt(1 + h²) per step.

Its claims, and the notes with their numbers, are in :mod:`.stable_ode_claims`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..dynamics.ode import ACTIVATIONS
from ..plots import stable as figs
from ..runs import Task
from ..tasks.trajectory import trajectory_task
from . import stable_ode_claims
from .base import Context, Figure, Plan, Study, Table
from .options import MAX_K, option, options_class

PAPER_K = (("K+", ((2.0, -2.0), (0.0, 2.0))), ("K-", ((-2.0, 0.0), (2.0, -2.0))),
           ("K0", ((0.0, -1.0), (1.0, 0.0))))
#: Largest log of a state's norm allowed: norms and distances square the states, so states must
#: stay below sqrt(largest float64) ≈ e^354.9 (beyond it they overflow to inf and NaN).
LOG_LIMIT = 0.5 * float(np.log(np.finfo(np.float64).max))
#: Most forward Euler steps T/h (each a row per start and system in the trajectories table).
MAX_STEPS = 100_000


def parse_matrix(text: str) -> tuple[tuple[float, ...], ...]:
    """A square matrix from 'a,b;c,d' (rows separated by ';').

    Raises:
        ValueError: not numeric, not finite (nan, inf), ragged, or not square.
    """
    try:
        rows = tuple(tuple(float(v) for v in row.split(",")) for row in text.split(";"))
    except ValueError:
        raise ValueError(f"K must be numbers like '0,-1;1,0' (rows separated by ';'); got "
                         f"{text!r}") from None
    if not all(np.isfinite(v) for r in rows for v in r):
        raise ValueError(f"K must have finite entries (no nan or inf, no number beyond "
                         f"float64's range); got {text!r}")
    if any(len(r) != len(rows) for r in rows):
        raise ValueError(f"K must be square (n rows of n numbers); got {text!r} with rows of "
                         f"{[len(r) for r in rows]}")
    return rows


def with_extra(texts: str | list[str] | tuple[str, ...]) -> tuple:
    """The paper's K₊, K₋, K₀ and the matrices of ``--K`` ('a,b;c,d' each), named K (one) or
    K1, K2, ..."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    return PAPER_K + tuple((f"K{i + 1}" if len(texts) > 1 else "K", parse_matrix(str(t)))
                           for i, t in enumerate(texts))


@dataclass(frozen=True)
@options_class
class OdeConfig:
    """The ODE examples (each field's meaning: its ``help``): (name, K) pairs, default the
    paper's K₊, K₋, K₀, integrated by forward Euler against a reference.

    Example:
        >>> cfg = OdeConfig(h=0.05, activation="relu")
        >>> [name for name, K in cfg.matrices], cfg.steps
        (['K+', 'K-', 'K0'], 40)
        >>> OdeConfig(h=0.5, T=0.25)
        Traceback (most recent call last):
            ...
        ValueError: h = 0.5 exceeds the horizon T = 0.25
    """

    matrices: tuple[tuple[str, tuple[tuple[float, ...], ...]], ...] = option(
        PAPER_K, flag="K", multiple=True, parse=with_extra,
        help="another matrix to integrate besides K+, K-, K0, rows separated by ';' (e.g. "
        "'0,-2;2,-0.1'); repeatable")
    h: float = option(0.1, above=0, help="forward Euler step (a ResNet's step size)")
    T: float = option(2.0, above=0, help="time horizon (T/h steps, rounded)")
    starts: int = option(3, 2, MAX_K, help="nearby initial conditions, on a circle of radius "
                         "--spread around --center")
    spread: float = option(0.1, above=0, help="their distance from the center")
    center: tuple[float, ...] = option((1.0, 1.0), help="the center of the starts")
    activation: str = option("tanh", choices=tuple(ACTIVATIONS), help="σ of the nonlinear "
                             "system ẏ = σ(K y + b)")
    bias: float = option(0.0, help="b of the nonlinear system")

    def __post_init__(self) -> None:
        if self.h > self.T:
            raise ValueError(f"h = {self.h} exceeds the horizon T = {self.T}")
        if self.T / self.h > MAX_STEPS:
            raise ValueError(f"T/h = {self.T:g}/{self.h:g} = {self.T / self.h:.3g} forward Euler "
                             f"steps, more than {MAX_STEPS}; take a larger h or a shorter T")
        for name, k in self.matrices:
            if any(len(r) != len(k) for r in k) or len(k) != len(self.center):
                raise ValueError(f"{name} must be a square {len(self.center)}x{len(self.center)} "
                                 f"matrix (the size of center, the phase plane drawn); got rows "
                                 f"of {[len(r) for r in k]}")
            if not np.isfinite(np.asarray(k, dtype=float)).all():
                raise ValueError(f"{name} must have finite entries (no nan or inf); got {k}")
            self._check_growth(name, np.asarray(k, dtype=float))

    def _check_growth(self, name: str, K: np.ndarray) -> None:
        """Refuse a K whose solutions may overflow float64 over the horizon.

        Every ẏ = K y (and ẏ = relu(K y + b)) grows by at most exp(t·‖K‖₂) (from ‖y0‖ plus the
        bias' share |b|·√n·t), and forward Euler by (1 + h‖K‖₂)^N ≤ exp(N·h·‖K‖₂): both stay
        finite and squarable (norms, distances) while that bound stays below e^LOG_LIMIT. Past
        it, forward Euler overflows and the reference integrator fails or crawls.
        """
        norm = float(np.linalg.norm(K, 2))
        horizon = self.steps * self.h
        y0 = (float(np.linalg.norm(self.center)) + self.spread
              + abs(self.bias) * np.sqrt(len(K)) * horizon)
        room = LOG_LIMIT - np.log(max(1.0, y0))
        if norm * horizon > room:
            raise ValueError(
                f"{name} is too large for T = {self.T:g}: T·‖{name}‖₂ = {horizon:g}·{norm:.4g} = "
                f"{norm * horizon:.4g}, and its solutions may grow by up to exp(T·‖{name}‖₂), "
                f"which overflows float64 above about {room:.0f} (norms square the states). "
                f"Fix: scale {name} down to ‖{name}‖₂ ≤ {room / horizon:.4g}, or shorten T to "
                f"at most {room / norm:.4g}")

    @property
    def steps(self) -> int:
        return max(1, round(self.T / self.h))


def starting_points(cfg: OdeConfig) -> np.ndarray:
    """(starts, n) initial conditions on a circle (in the first two coordinates) around center."""
    angles = 2 * np.pi * np.arange(cfg.starts) / cfg.starts
    y0 = np.tile(np.asarray(cfg.center, dtype=float), (cfg.starts, 1))
    y0[:, 0] += cfg.spread * np.cos(angles)
    if y0.shape[1] > 1:
        y0[:, 1] += cfg.spread * np.sin(angles)
    return y0


def eigen_table(cfg: OdeConfig) -> pd.DataFrame:
    """Eigenvalues of each K, with max Re λ."""
    rows = []
    for name, K in cfg.matrices:
        lam = np.linalg.eigvals(np.asarray(K, dtype=float))
        for i, v in enumerate(sorted(lam, key=lambda z: (-z.real, -z.imag))):
            rows.append({"K": name, "i": i, "re": float(v.real), "im": float(v.imag),
                         "max_re": float(lam.real.max())})
    return pd.DataFrame(rows)


def growth_table(traj: pd.DataFrame) -> pd.DataFrame:
    """Largest distance between trajectories at the end over that at the start, per (K, system,
    integrator), and its rate log(growth) / T."""
    rows = []
    coords = [c for c in traj.columns if c.startswith("y")]
    for (k, system, integrator), g in traj.groupby(["K", "system", "integrator"], sort=False):
        ends = []
        for step in (g["step"].min(), g["step"].max()):
            pts = g[g["step"] == step].sort_values("start")[coords].to_numpy()
            ends.append(max(np.linalg.norm(a - b) for i, a in enumerate(pts) for b in pts[i + 1:]))
        T = float(g["t"].max())
        rows.append({"K": k, "system": system, "integrator": integrator, "d0": ends[0],
                     "dT": ends[1], "growth": ends[1] / ends[0],
                     "rate": float(np.log(ends[1] / ends[0]) / T)})
    return pd.DataFrame(rows)


def _plan(ctx: Context) -> Plan:
    cfg: OdeConfig = ctx.config
    starts = starting_points(cfg).tolist()
    tasks = [Task("trajectories", f"{name.replace('+', 'plus').replace('-', 'minus')}-{system}",
                  trajectory_task, dict(name=name, K=K, system=system, activation=cfg.activation,
                                        bias=cfg.bias, h=cfg.h, steps=cfg.steps, starts=starts))
             for name, K in cfg.matrices for system in ("linear", "nonlinear")]
    return Plan(tasks, {"order": [name for name, _ in cfg.matrices]})


def _order(traj: pd.DataFrame, ctx: Context) -> pd.DataFrame:
    rank = {n: i for i, n in enumerate(ctx.meta["order"])}
    return (traj.assign(_k=traj["K"].map(rank))
            .sort_values(["_k", "system", "integrator", "start", "step"]).drop(columns="_k")
            .reset_index(drop=True))


ODE = Study(
    name="stable-ode", title="ODE examples of stable architectures", config=OdeConfig,
    plan=_plan,
    precisions=("float64",), precision_note="it takes no Jacobian products",
    tables={
        "trajectories": Table(order=_order),
        "eigenvalues": Table(derive=lambda t, ctx: eigen_table(ctx.config)),
        "growth": Table(derive=lambda t, ctx: growth_table(t["trajectories"])),
    },
    figures={"fig1_trajectories": Figure(
        lambda t, ctx, p: figs.trajectories(t["trajectories"], t["eigenvalues"], p,
                                            ctx.config.activation),
        "trajectories of ẏ = K y (top) and ẏ = σ(K y + b) (bottom) from nearby starts: forward "
        "Euler at step h (dashed, dots every step) against the reference integrator (solid) "
        "(paper 004, Fig. 1)")},
    claims=stable_ode_claims.CLAIMS,
    notes=stable_ode_claims.notes,
)
