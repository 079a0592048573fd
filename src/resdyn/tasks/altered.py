"""Spectra of one unit altered: its shortcut scaled by α (paper 000, Fig. 5 left) or its weights
interpolated toward a random initialisation (eq. 3 and Fig. 5 right). Tasks of the stability
study."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..capture import capture
from ..metrics import plateau, singular_summary
from ..models import units
from ..models.interventions import interpolate_weights
from ..operators import unit_jacobian
from ..runs import ModelRef, current
from ..spectra import singular_values


def skip_task(model: ModelRef, input_shape: tuple[int, ...], unit: str, x: torch.Tensor,
              alpha: float, image: int, method: str, k: int | None) -> pd.DataFrame:
    """Spectrum of ``unit`` with its shortcut scaled by α (paper 000, Fig. 5 left)."""
    run = current()
    u = next(u for u in model.units(input_shape) if u.name == unit)
    x_in = capture(model.load(), run.put(x[None]), [u]).inputs[unit][0]
    res = singular_values(unit_jacobian(u, x_in, alpha=alpha, dtype=run.dtype), k=k,
                          method=method)
    v = np.asarray(res.values, dtype=np.float64)
    pos, share = plateau(v)
    return pd.DataFrame([{"image": image, "unit": unit, "alpha": alpha, "values": v.tolist(),
                          "plateau_position": pos, "plateau_window_share": share,
                          "share_near_alpha": float(np.mean(np.abs(v - alpha) <= 0.01)),
                          "method": res.method, "converged": bool(res.converged)}])


def interpolation_task(model: ModelRef, input_shape: tuple[int, ...], unit: str, x: torch.Tensor,
                       t: float, image: int, seed: int, method: str, k: int | None) -> pd.DataFrame:
    """Spectrum of one unit after θ̂(t) = tθ + (1 − t)η (paper 000, eq. 3 and Fig. 5 right)."""
    run = current()
    mixed = interpolate_weights(model.load(), [unit], t, seed=seed)
    u = next(u for u in units(mixed, input_shape) if u.name == unit)
    x_in = capture(mixed, run.put(x[None]), [u]).inputs[unit][0]
    res = singular_values(unit_jacobian(u, x_in, dtype=run.dtype), k=k, method=method)
    v = np.asarray(res.values, dtype=np.float64)
    pos, share = plateau(v)
    return pd.DataFrame([{"image": image, "unit": unit, "t": t, "values": v.tolist(),
                          "plateau_share": singular_summary(v).share_plateau,
                          "plateau_position": pos, "plateau_window_share": share,
                          "sigma_max": float(v.max()), "method": res.method,
                          "converged": bool(res.converged)}])
