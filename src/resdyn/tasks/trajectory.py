"""Trajectories of one ODE y' = K y or y' = σ(K y + b) from several starts, by forward Euler and
by the reference integrator (:mod:`resdyn.dynamics.ode`): the task of the ODE examples of paper
004 (:mod:`resdyn.studies.stable_ode`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..dynamics.ode import euler, reference, right_hand_side


def trajectory_task(name: str, K: tuple, system: str, activation: str, bias: float, h: float,
                    steps: int, starts: list[list[float]]) -> pd.DataFrame:
    """Euler and reference trajectories of one (K, system) from every start: one row per
    (integrator, start, step) with t and the state's coordinates y0, y1, ..."""
    f = right_hand_side(np.asarray(K, dtype=float), system, activation, bias)
    times = h * np.arange(steps + 1)
    frames = []
    for s, y0 in enumerate(np.asarray(starts, dtype=float)):
        for integrator, ys in (("euler", euler(f, y0, h, steps)),
                               ("reference", reference(f, y0, times))):
            frame = pd.DataFrame(ys, columns=[f"y{i}" for i in range(ys.shape[1])])
            frames.append(frame.assign(K=name, system=system, integrator=integrator, start=s,
                                       step=np.arange(steps + 1), t=times))
    cols = ["K", "system", "integrator", "start", "step", "t"]
    out = pd.concat(frames, ignore_index=True)
    return out[cols + [c for c in out.columns if c not in cols]]
