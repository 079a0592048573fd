"""The dynamics study's claims, each with its threshold: the network contracts (top Lyapunov
exponent), and the residual alignment RA1-RA4 of Li & Papyan; the notes with their numbers.
Each number's 95 % interval resamples the images (:mod:`.intervals`); RA4's is its fit's over
the family's depths."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..metrics import power_law
from .base import Claim
from .identity_sweep_claims import POWER_TOLERANCE
from .intervals import Interval, Test, bootstrap, by_unit, distance_from, evidence_unit

STRAIGHT = 0.9      # RA1: straightness at least this


EVEN = 0.25         # RA1: coefficient of variation of the step lengths at most this


ALIGNED = 0.5       # RA2: median |⟨u₁, v₁⟩| at least this


ABOVE_RANDOM = 5.0  # RA2: median overlap of different units at least this many times random


def depth_fit(law: pd.DataFrame):
    """The power law σ₁ ≈ c·L^(−p) over the family, or None with fewer than two depths."""
    return power_law(law["units"], law["sigma1_median"]) if len(law) >= 2 else None


def _last(ly: pd.DataFrame, path: str) -> pd.DataFrame:
    """Rows of the last depth of one path."""
    p = ly[ly["path"] == path]
    return p[p["depth"] == p["depth"].max()]


def top_at_last(ly: pd.DataFrame, path: str) -> pd.Series:
    """Median over images of λ_i at the last unit, per i."""
    return _last(ly, path).groupby("i")["exponent"].median()


def contraction_claim(tables, ctx=None) -> Claim:
    ly = tables["lyapunov"]
    exact, qr = top_at_last(ly, "exact"), top_at_last(ly, "qr")
    last = int(ly["depth"].max())
    lam = float(exact.iloc[0])
    top = _last(ly, "exact")
    x, _ = by_unit(top[top["i"] == top["i"].min()], "image", "i", "exponent")
    iv, = bootstrap(x, lambda s: np.median(s[..., 0], axis=1), unit=evidence_unit(ctx))
    return Claim.judged(f"λ₁ at the last unit (depth {last}, median over images): {lam:+.4f} exactly, "
                 f"{float(qr.iloc[0]):+.4f} by QR; top {len(exact)} exactly: "
                 + ", ".join(f"{v:+.4f}" for v in exact)
                 + " (holds if λ₁ < 0: every direction shrinks on average per unit)",
                 [Test("λ₁ at the last unit", iv, 0.0, "below")])


def ra1_claim(tables, ctx=None) -> Claim:
    st = tables["trajectory"]
    if st.empty:
        return Claim(None, "no stage has three points of one shape")
    per = st.groupby("section", sort=False)[["straightness", "step_cv"]].median()
    tests = []
    for col, threshold, side in (("straightness", STRAIGHT, "above"), ("step_cv", EVEN, "below")):
        x, sections = by_unit(st, "image", "section", col)
        ivs = bootstrap(x, lambda s: np.nanmedian(s, axis=1), unit=evidence_unit(ctx))
        tests += [Test(f"{sec}: {col}", iv, threshold, side)
                  for sec, iv in zip(sections, ivs, strict=True)]
    return Claim.judged("per stage (median over images) straightness / step-length CV: "
                 + ", ".join(f"{s}: {r.straightness:.3f} / {r.step_cv:.3f}"
                             for s, r in per.iterrows())
                 + f" (holds if every stage has straightness ≥ {STRAIGHT} and CV ≤ {EVEN})",
                 tests)


def ra2_claim(tables, ctx=None) -> Claim:
    res, pairs = tables["residual"], tables["overlap"]
    align = float(res["align1"].median()) if "align1" in res and res["align1"].notna().any() \
        else float("nan")
    same = pairs[pairs["same_stage"]] if len(pairs) else pairs
    if not np.isfinite(align) or same.empty:
        return Claim(None, "needs square units and two units of one width")
    ratio = float((same["left"] / same["random"]).median())
    a, _ = by_unit(res, "image", "unit", "align1")
    b, _ = by_unit(same.assign(q=same["left"] / same["random"]), "image", ["a_index", "b_index"],
                   "q")
    width = a.shape[1]

    def medians(s: np.ndarray) -> np.ndarray:
        r = len(s)
        return np.stack([np.nanmedian(s[..., :width].reshape(r, -1), axis=1),
                         np.nanmedian(s[..., width:].reshape(r, -1), axis=1)], axis=1)

    iv_align, iv_ratio = bootstrap(np.concatenate([a, b], axis=1), medians,
                                   unit=evidence_unit(ctx))
    return Claim.judged(
                 f"median |⟨u₁, v₁⟩| over units and images {align:.3f} (random vectors: "
                 f"~{float(np.sqrt(2 / np.pi / res['n_in'].median())):.3f}); median overlap "
                 f"of top-{ctx.config.k if ctx else 'k'} left subspaces of different units of "
                 f"a stage {same['left'].median():.4f} = {ratio:.1f}× random "
                 f"({same['random'].median():.4f}) (holds if ≥ {ALIGNED} and ≥ "
                 f"{ABOVE_RANDOM:g}× random)",
                 [Test("median |⟨u₁, v₁⟩|", iv_align, ALIGNED, "above"),
                  Test("median overlap / random", iv_ratio, ABOVE_RANDOM, "above")])


def ra3_claim(tables, ctx=None) -> Claim:
    res = tables["residual"]
    if "rank" not in res or res["rank"].isna().all():
        return Claim(None, "no unit is narrow enough for its full spectrum (dense_max)")
    classes = int(ctx.meta["classes"]) if ctx else 10
    per = res.groupby("unit", sort=False)["rank"].median()
    x, _ = by_unit(res, "image", "unit", "rank")
    iv, = bootstrap(x, lambda s: np.nanmax(np.nanmedian(s, axis=1), axis=1),
                    unit=evidence_unit(ctx))
    return Claim.judged(
                 f"numerical rank of J_R (σ above its resolution, median over images): from "
                 f"{per.min():.0f} to {per.max():.0f} over units (of n = "
                 f"{int(res['n_in'].min())}–{int(res['n_in'].max())}), against {classes} classes "
                 "(holds if every unit's rank ≤ classes; Li & Papyan state it for "
                 "fully-connected ResNets)",
                 # integer ranks: ≤ classes is below classes + ½
                 [Test("largest rank of J_R", iv, classes + 0.5, "below")])


def ra4_claim(tables, ctx=None) -> Claim:
    law = tables["depth_law"]
    if len(law) < 3:
        return Claim(None, f"needs a family of at least 3 depths; has {len(law)} (--family)")
    fit = depth_fit(law)
    p = Interval(fit.p, fit.p_low, fit.p_high, "regression", fit.n, "depths")
    return Claim.judged(
                 "median σ₁(J_R) per depth L: " + ", ".join(
                     f"L={int(r.units)}: {r.sigma1_median:.4f}" for r in law.itertuples())
                 + f"; fit σ₁ ≈ {fit.c:.3g}·L^(−p), p = {fit.p:.3f} (95 % interval "
                 f"{fit.p_low:.3f} to {fit.p_high:.3f}, R² {fit.r2:.3f}) (holds if the interval "
                 f"lies within {POWER_TOLERANCE:g} of 1, not if it lies wholly farther)",
                 [Test("|p − 1|", distance_from(p, 1.0), POWER_TOLERANCE, "below")])


CLAIMS = {
    "the network contracts: the top Lyapunov exponent at the last unit is negative":
        contraction_claim,
    "RA1: an input's representations are equispaced on a line": ra1_claim,
    "RA2: top singular vectors of residual Jacobians align within units and across depth":
        ra2_claim,
    "RA3: residual Jacobians have rank at most the number of classes": ra3_claim,
    "RA4: the top singular value of residual Jacobians scales inversely with depth": ra4_claim,
}


def notes(tables, ctx) -> str:
    ly, res = tables["lyapunov"], tables["residual"]
    exact, qr = top_at_last(ly, "exact"), top_at_last(ly, "qr")
    err = tables["qr_error"]
    first = err[err["i"] == 1].set_index("depth")["error"]
    zeros = _last(ly[ly["path"] == "exact"], "exact").groupby("image")["n_zero"].first()
    seconds = ly.drop_duplicates(["path", "image", "depth"]).groupby("path")["seconds"].sum()
    picks = sorted({int(first.index.min()), int(first.index[len(first) // 2]),
                    int(first.index.max())}) if len(first) else []
    lines = ["## Numbers", "",
             f"Images {ctx.meta['images']}; k = {ctx.config.k}; exact path: "
             f"{', '.join(sorted(set(ly[ly['path'] == 'exact']['method'])))}.", "",
             f"Exponents at the last unit (depth {int(ly['depth'].max())}), median over images, "
             "exact: " + ", ".join(f"{v:+.4f}" for v in exact) + "; QR: "
             + ", ".join(f"{v:+.4f}" for v in qr) + ".", "",
             "QR against exact, |Δλ₁| (median over images) at depth "
             + ", ".join(f"{d}: {first[d]:.2e}" for d in picks) + ".", "",
             f"Exact zeros (σ_i numerically 0, λ_i = −∞, counted, never plotted) among the top "
             f"{ctx.config.k} at the last unit: {int(zeros.max()) if len(zeros) else 0} at most "
             "per image.", "",
             f"Seconds (all images): exact {seconds.get('exact', 0.0):.1f}, QR "
             f"{seconds.get('qr', 0.0):.1f}; residual triplets per unit: n = "
             f"{int(res['n_in'].min())}–{int(res['n_in'].max())}.", ""]
    return "\n".join(lines)
