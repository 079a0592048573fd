"""The ODE examples' claims (paper 004): distances of nearby trajectories follow the sign of max
Re λ(K), and forward Euler grows them even where Re λ(K) = 0; the notes with their numbers."""

from __future__ import annotations

import numpy as np

from .base import Claim
from .intervals import Interval, Test

PRESERVED = 0.01  # |log distance growth| / T below this: distance preserved


def sign_claim(tables, ctx) -> Claim:
    """Distances between nearby trajectories grow, shrink or stay as max Re λ(K) is >, <, = 0."""
    eig = tables["eigenvalues"].drop_duplicates("K").set_index("K")["max_re"]
    g = tables["growth"]
    g = g[(g["system"] == "linear") & (g["integrator"] == "reference")].set_index("K")
    parts, tests = [], []
    for k, rate in g["rate"].items():
        expect = int(np.sign(eig[k])) if abs(eig[k]) > 1e-12 else 0
        if expect > 0:
            tests.append(Test(f"{k}: rate", Interval.exact(rate), PRESERVED, "above"))
        elif expect < 0:
            tests.append(Test(f"{k}: rate", Interval.exact(rate), -PRESERVED, "below"))
        else:
            tests.append(Test(f"{k}: |rate|", Interval.exact(abs(rate)), PRESERVED, "below"))
        parts.append(f"{k}: max Re λ = {eig[k]:+.2f}, distance × {g.loc[k, 'growth']:.3g}")
    return Claim.judged("; ".join(parts) + " (ẏ = K y, reference integrator; holds if each "
                        f"distance grows, shrinks or stays within {PRESERVED:g}·T in log as max "
                        "Re λ is positive, negative or zero; the rate is log(growth)/T, exact: "
                        "no sampling)", tests)


def euler_claim(tables, ctx) -> Claim:
    """Forward Euler on a rotation (Re λ = 0) still grows distances, by (1 + h²ρ²)^(N/2)."""
    eig = tables["eigenvalues"]
    g = tables["growth"]
    cfg = ctx.config
    rotations = [k for k, e in eig.groupby("K") if np.allclose(e["re"], 0) and
                 np.allclose(np.abs(e["im"]), np.abs(e["im"]).max())]
    if not rotations:
        return Claim(None, "no K with purely imaginary eigenvalues of one modulus")
    parts, tests = [], []
    for k in rotations:
        rho = float(np.abs(eig[eig["K"] == k]["im"]).max())
        expect = (1 + cfg.h ** 2 * rho ** 2) ** (cfg.steps / 2)
        got = float(g[(g["K"] == k) & (g["system"] == "linear") &
                      (g["integrator"] == "euler")]["growth"].iloc[0])
        tests.append(Test(f"{k}: |Euler growth / (1 + h²|λ|²)^(N/2) − 1|",
                          Interval.exact(abs(got / expect - 1)), 1e-9, "below"))
        parts.append(f"{k}: Euler distance × {got:.6f}, (1 + h²|λ|²)^(N/2) = {expect:.6f}")
    return Claim.judged("; ".join(parts) + f" (h = {cfg.h:g}, N = {cfg.steps} steps)", tests)


def notes(tables, ctx) -> str:
    eig, g = tables["eigenvalues"], tables["growth"]
    lines = ["## Numbers", "", "| K | eigenvalues | max Re λ |", "|---|---|---|"]
    for k, e in eig.groupby("K", sort=False):
        lines.append(f"| {k} | " + ", ".join(f"{r.re:+.3g}{r.im:+.3g}i" for r in e.itertuples())
                     + f" | {e['max_re'].iloc[0]:+.3g} |")
    lines += ["", "Distance between the farthest two trajectories at T over that at t = 0:", "",
              "| K | system | integrator | growth | rate log(growth)/T |", "|---|---|---|---|---|"]
    lines += [f"| {r.K} | {r.system} | {r.integrator} | {r.growth:.4g} | {r.rate:+.3f} |"
              for r in g.itertuples()]
    cfg = ctx.config
    lines += ["", f"h = {cfg.h:g}, T = {cfg.T:g} ({cfg.steps} steps), {cfg.starts} starts at "
              f"distance {cfg.spread:g} from {cfg.center}; nonlinear system σ = "
              f"{cfg.activation}, b = {cfg.bias:g}.", ""]
    return "\n".join(lines)


CLAIMS = {
    "nearby trajectories separate, contract or keep their distance as max Re λ(K) is "
    "positive, negative or zero": sign_claim,
    "forward Euler grows distances even where Re λ(K) = 0": euler_claim,
}
