"""The stable comparison's claims (paper 004): the stable networks keep Re λ of their blocks
nearer 0 and do not grow adversarial perturbations more than the standard ResNet; the notes
with the numbers behind them."""

from __future__ import annotations

import pandas as pd

from ..models import STABLE_FAMILIES
from .base import Claim


def _per_data(c: pd.DataFrame):
    for data, g in c.groupby("data", sort=False):
        yield data, g.set_index("family")


def re_near_zero_claim(tables, ctx) -> Claim:
    c = tables["comparison"]
    parts, held = [], True
    for data, g in _per_data(c):
        e = g["branch_max_re"].abs()
        held &= bool(max(e["antisymmetric"], e["hamiltonian"]) < e["euler"])
        parts.append(f"{data}: " + ", ".join(f"{f} {g.loc[f, 'branch_max_re']:+.3g}"
                                             for f in STABLE_FAMILIES))
    return Claim(held, "median over images and blocks of max Re λ of the residual branch: "
                 + "; ".join(parts) + " (holds if both stable networks are nearer 0 than the "
                 "standard one on every data set)")


def growth_claim(tables, ctx) -> Claim:
    c = tables["comparison"]
    parts, held = [], True
    for data, g in _per_data(c):
        gr = g["growth_fgsm"]
        held &= bool(max(gr["antisymmetric"], gr["hamiltonian"]) <= gr["euler"])
        parts.append(f"{data}: " + ", ".join(f"{f} × {gr[f]:.3g}" for f in STABLE_FAMILIES))
    return Claim(held, "FGSM perturbation growth from the first block's input to the last "
                 "block's output: " + "; ".join(parts) + " (holds if neither stable network "
                 "grows it more than the standard one, on every data set)")


def notes(tables, ctx) -> str:
    c = tables["comparison"]
    cfg = ctx.config
    lines = ["## Numbers", "",
             f"{cfg.blocks} blocks of width {cfg.width}, h = {cfg.h:g}, γ = {cfg.gamma:g} "
             f"(antisymmetric); {cfg.epochs} epochs, lr {cfg.lr:g}, batch {cfg.batch_size}, seed "
             f"{cfg.seed}; analysed on {cfg.images} test images per data set; FGSM ε = "
             f"{cfg.eps:g} of the data range. The share of Re λ < 0 counts a branch "
             "eigenvalue only when Re λ < 0 by more than its own error bound (p·ε·‖J‖_F / |yᴴx|, "
             "its round-off in the dense eigensolver times its condition number); one within "
             "its bound is not told from Re λ = 0.", "",
             "| data | network | test accuracy | max Re λ (branch) | share Re λ < 0 (branch) | "
             "σ > 1.01 | σ on plateau | FGSM growth | random growth | training s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.data} | {r.family} | {r.test_accuracy:.3f} | {r.branch_max_re:+.3g} | "
              f"{r.branch_share_negative:.2%} | {r.sv_above:.2%} | {r.sv_plateau:.2%} | "
              f"{r.growth_fgsm:.3g} | {r.growth_random_fgsm:.3g} | {r.seconds:.0f} |"
              for r in c.itertuples()]
    lines += ["", "Accuracy cost of the stable networks against the standard one: " + "; ".join(
        f"{data}: " + ", ".join(f"{f} {g.loc[f, 'test_accuracy'] - g.loc['euler', 'test_accuracy']:+.3f}"
                                for f in ("antisymmetric", "hamiltonian"))
        for data, g in _per_data(c)) + ".", ""]
    return "\n".join(lines)


CLAIMS = {
    "the stable architectures keep Re λ of their blocks nearer 0 than the standard ResNet":
        re_near_zero_claim,
    "the stable architectures do not grow adversarial perturbations more than the standard "
    "ResNet": growth_claim,
}
