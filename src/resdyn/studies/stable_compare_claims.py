"""The stable comparison's claims (paper 004): the stable networks keep Re λ of their blocks
nearer 0 and do not grow adversarial perturbations more than the standard ResNet; the notes
with the numbers behind them. Each number's 95 % interval resamples the images each data set's
networks are analysed on (the same for the three networks, :mod:`.intervals`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..models import STABLE_FAMILIES
from .base import Claim
from .intervals import Test, bootstrap, by_unit


def _per_data(c: pd.DataFrame):
    for data, g in c.groupby("data", sort=False):
        yield data, g.set_index("family")


def re_near_zero_claim(tables, ctx) -> Claim:
    c = tables["comparison"]
    eig = tables["eigen"]
    eig = eig[eig["method"] != "skipped"]
    parts, tests = [], []
    for data, g in _per_data(c):
        parts.append(f"{data}: " + ", ".join(f"{f} {g.loc[f, 'branch_max_re']:+.3g}"
                                             for f in STABLE_FAMILIES))
        rows = eig[eig["data"] == data]
        # every block of a family is a column of its own: the median is over images and blocks
        x = np.stack([by_unit(rows[rows["family"] == f].assign(branch=rows["max_real"] - 1),
                              "image", "block", "branch")[0] for f in STABLE_FAMILIES], axis=1)

        def nearer(v: np.ndarray) -> np.ndarray:  # (r, n, families, blocks)
            m = np.abs(np.nanmedian(np.moveaxis(v, 2, 1).reshape(len(v), v.shape[2], -1), axis=2))
            with np.errstate(all="ignore"):
                return m[:, 1:].max(axis=1) / m[:, 0]

        iv, = bootstrap(x, nearer, unit="images")
        tests.append(Test(f"{data}: max |Re λ| (branch) of the stable networks / the standard "
                          "one's", iv, 1.0, "below"))
    return Claim.judged("median over images and blocks of max Re λ of the residual branch: "
                        + "; ".join(parts) + " (holds if both stable networks are nearer 0 than "
                        "the standard one on every data set)", tests)


def growth_claim(tables, ctx) -> Claim:
    c = tables["comparison"]
    prop = tables["propagation"]
    prop = prop[prop["perturbation"] == "fgsm"]
    parts, tests = [], []
    for data, g in _per_data(c):
        gr = g["growth_fgsm"]
        parts.append(f"{data}: " + ", ".join(f"{f} × {gr[f]:.3g}" for f in STABLE_FAMILIES))
        cols = []
        for f in STABLE_FAMILIES:
            p = prop[(prop["data"] == data) & (prop["family"] == f)]
            first = p[p["index"] == 0].groupby("image")["in_norm"].mean()
            out = p[p["index"] == p["index"].max()].groupby("image")["out_norm"].mean()
            cols += [out, first]
        x = pd.concat(cols, axis=1).to_numpy(float)

        def ratio(v: np.ndarray) -> np.ndarray:
            m = v.mean(axis=1)
            with np.errstate(all="ignore"):
                growth = m[:, 0::2] / m[:, 1::2]
                return growth[:, 1:].max(axis=1) / growth[:, 0]

        iv, = bootstrap(x, ratio, unit="images")
        tests.append(Test(f"{data}: largest FGSM growth of the stable networks / the standard "
                          "one's", iv, 1.0, "below"))
    return Claim.judged("FGSM perturbation growth from the first block's input to the last "
                        "block's output: " + "; ".join(parts) + " (holds if neither stable "
                        "network grows it more than the standard one, on every data set)",
                        tests)


def notes(tables, ctx) -> str:
    c = tables["comparison"]
    cfg = ctx.config
    lines = ["## Numbers", "",
             f"{cfg.blocks} blocks of width {cfg.width}, h = {cfg.h:g}, γ = {cfg.gamma:g} "
             f"(antisymmetric); {cfg.epochs} epochs, lr {cfg.lr:g}, batch {cfg.batch_size}, seed "
             f"{cfg.seed}; analysed on {cfg.images} test images per data set; FGSM ε = "
             f"{cfg.eps:g} of the data range. Eigenvalues of J − I, the residual branch (paper "
             "004's vector field; the stiffness study's are of the block Jacobian J, paper "
             "003). The share of Re λ < 0 counts a branch "
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
