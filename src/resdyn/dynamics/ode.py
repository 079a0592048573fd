"""Integrating an ODE y' = f(y) as a ResNet's forward pass does (forward Euler at step h) and
accurately (a reference integrator), for the right-hand sides of paper 004's ODE view:
y' = K y ("linear") and y' = σ(K y + b) ("nonlinear")."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: σ of the nonlinear system by name.
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh, "relu": lambda v: np.maximum(v, 0.0)}


def right_hand_side(K: np.ndarray, system: str, activation: str, bias: float):
    """f(y) of ẏ = K y ("linear") or ẏ = σ(K y + b) ("nonlinear")."""
    if system == "linear":
        return lambda y: K @ y
    sigma = ACTIVATIONS[activation]
    return lambda y: sigma(K @ y + bias)


def euler(f, y0: np.ndarray, h: float, steps: int) -> np.ndarray:
    """Forward Euler y_{j+1} = y_j + h f(y_j): (steps + 1, n), the ResNet's forward pass."""
    out = np.empty((steps + 1, y0.size))
    out[0] = y0
    for j in range(steps):
        out[j + 1] = out[j] + h * f(out[j])
    return out


def reference(f, y0: np.ndarray, times: np.ndarray) -> np.ndarray:
    """An accurate solution at ``times`` (scipy's DOP853, rtol 1e-10, atol 1e-12)."""
    from scipy.integrate import solve_ivp

    sol = solve_ivp(lambda t, y: f(y), (times[0], times[-1]), y0, method="DOP853", t_eval=times,
                    rtol=1e-10, atol=1e-12)
    if not sol.success:
        raise RuntimeError(f"the reference integrator failed: {sol.message}")
    return sol.y.T
