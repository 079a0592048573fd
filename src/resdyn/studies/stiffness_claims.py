"""The stiffness study's claims (paper 003): stiffness rises toward the end of the network, and
the last block's stiffness correlates with loss or correctness (:mod:`.stiffness_stats`); the
notes with the numbers behind them."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..tasks.eigen import BRANCH_METRICS
from .base import Claim
from .intervals import (
    Test,
    bootstrap,
    by_unit,
    correlation_interval,
    distance_from,
    evidence_unit,
)
from .stiffness_stats import ALPHA


def _per_block(table: pd.DataFrame) -> pd.DataFrame:
    sq = table[table["method"] != "skipped"]
    return (sq.groupby(["index", "block", "stage"], sort=True)
            [["share_negative", "stiffness_signed", "stiffness_ratio", "spectral_radius",
              *[m for m in BRANCH_METRICS if m in sq]]]
            .median().reset_index())


SMALL_R = 0.1  # a correlation counts from |r| above this (a small effect), none below it


def rising_claim(tables, ctx=None) -> Claim:
    t = tables["stiffness"]
    pb = _per_block(t)
    stages = sorted(pb["stage"].unique())
    if len(stages) >= 2:
        first, last = pb[pb["stage"] == stages[0]], pb[pb["stage"] == stages[-1]]
        where = ("first stage", "last stage")
    elif len(pb) >= 2:  # one stage (a ViT's encoder): its first half of blocks against its last
        ordered = pb.sort_values("index")
        half = len(ordered) // 2
        first, last = ordered.iloc[:half], ordered.iloc[-half:]
        where = ("first half of the blocks", "last half")
    else:
        return Claim(None, "needs at least two blocks")
    sq = t[t["method"] != "skipped"]
    parts, tests = [], []
    for metric, label in (("stiffness_ratio", "max |Re λ| / min |Re λ|"),
                          ("share_negative", "share of Re λ < 0")):
        a, b = first[metric].mean(), last[metric].mean()
        if not (np.isfinite(a) and np.isfinite(b)):
            return Claim(None, f"{label} is not defined in the {where[0]} and the {where[1]} "
                               "(an Arnoldi path, or no eigenvalue off the imaginary axis)")
        parts.append(f"{label} {a:.3g} in the {where[0]} vs {b:.3g} in the {where[1]}")
        x, blocks = by_unit(sq, "image", "block", metric)
        early = np.isin(blocks, first["block"].to_numpy())
        late = np.isin(blocks, last["block"].to_numpy())

        def rise(v: np.ndarray, early=early, late=late) -> np.ndarray:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a block NaN in a resample
                m = np.nanmedian(v, axis=1)
                return np.nanmean(m[:, late], axis=1) - np.nanmean(m[:, early], axis=1)

        iv, = bootstrap(x, rise, unit=evidence_unit(ctx))
        tests.append(Test(f"{label}: {where[1]} − {where[0]}", iv, 0.0, "above"))
    signed = last["stiffness_signed"]
    note = (f"; signed SI in the {where[1]} "
            + (f"{signed.mean():.3g}" if signed.notna().all()
               else "undefined where no Re λ < 0 (min Re λ = 0)"))
    return Claim.judged("; ".join(parts) + note + " (medians over images, mean over the blocks; "
                        f"holds if the ratio and the share are both larger in the {where[1]})",
                        tests)


def correlation_claim(tables, ctx=None) -> Claim:
    c = tables["correlations"]
    if c.empty:
        return Claim(None, "no square block was analysed")
    last = c[c["index"] == c["index"].max()]
    last = last[last["level"] == "image"]
    if last["p"].isna().all():
        return Claim(None, "no correlation is defined for the last block: "
                     + "; ".join(sorted(set(last["note"]))))
    t = tables["stiffness"]
    rows = t[t["index"] == last["index"].iloc[0]]
    tests = []
    finite = last[np.isfinite(last["r"])]
    for r in finite.itertuples():
        pairs = rows[[r.metric, r.target]].to_numpy(float)
        n = int(np.isfinite(pairs).all(axis=1).sum())  # the pairs r was computed on
        iv = correlation_interval(float(r.r), n, tests=len(finite), unit=evidence_unit(ctx))
        tests.append(Test(f"|r| of {r.metric} vs {r.target}", distance_from(iv, 0.0), SMALL_R,
                          "above"))
    return Claim.judged(
        f"last block {last['block'].iloc[0]}: " + ", ".join(
            f"{r.metric} vs {r.target} r = {r.r:+.2f} (adjusted p = {r.p_adjusted:.2g})"
            for r in last.itertuples() if np.isfinite(r.r))
        + f" (holds if the 95 % interval of any r lies beyond ±{SMALL_R:g}, not if every one "
        f"lies within ±{SMALL_R:g}; Fisher z intervals, Bonferroni over the {len(finite)} "
        f"correlations; Benjamini–Hochberg adjusted p at {ALPHA:g} for reference)",
        tests, rule="any")


CLAIMS = {
    "stiffness rises toward the end of the network": rising_claim,
    "the last block's stiffness correlates with loss or correctness": correlation_claim,
}


def notes(tables, ctx) -> str:
    t, c = tables["stiffness"], tables["correlations"]
    pb = _per_block(t)
    sq = t[t["method"] != "skipped"]
    last = pb.iloc[-1] if len(pb) else None
    acc = t.drop_duplicates("image")["correct"].mean()
    lines = ["## Numbers", "",
             "Eigenvalues of the block Jacobian J = ∂x_(l+1)/∂x_l (paper 003: \"the Jacobian of "
             "individual residual blocks with respect to their inputs\"); the stable comparison "
             "(paper 004) takes those of J − I, the residual branch's, and the table gives their "
             "share of Re(λ − 1) < 0 and indices too (branch_share_negative, "
             "branch_stiffness_signed, branch_stiffness_ratio).", "",
             f"{t['image'].nunique()} test images (accuracy on them {acc:.3f}); "
             f"{sq['block'].nunique()} square blocks analysed ("
             + ", ".join(f"{m}: {int((sq['method'] == m).sum())} solves"
                         for m in sorted(set(sq["method"]))) + "), "
             f"{t[t['method'] == 'skipped']['block'].nunique()} down-sampling blocks skipped (not "
             "square).", ""]
    if last is not None:
        signed = (f"{last['stiffness_signed']:.3f}" if np.isfinite(last["stiffness_signed"])
                  else "undefined (no eigenvalue with Re λ < 0, so min Re λ = 0)")
        lines += [f"Last block {last['block']}: median signed stiffness index "
                  f"{signed}, share of eigenvalues with Re λ < 0 "
                  f"{last['share_negative']:.2%}, classical ratio {last['stiffness_ratio']:.3g}, "
                  f"spectral radius {last['spectral_radius']:.3f} (paper 003, ResNet-50's last "
                  "block: SI −35.32, 31.96 %)"
                  + (f"; of J − I: share of Re(λ − 1) < 0 {last['branch_share_negative']:.2%}, "
                     f"signed index {last['branch_stiffness_signed']:.3g}"
                     if "branch_share_negative" in last else "") + ".", ""]
    if "known_zero_rows" in sq and len(sq):
        zeros = sq.groupby("block", sort=False)["known_zero_rows"].median()
        lines += [("Rows known to be zero (outputs the unit's output ReLU kills; each is an exact "
                   f"eigenvalue 0, deflated before the solve): median {zeros.median():.0f} per "
                   f"block (from {zeros.min():.0f} to {zeros.max():.0f})."
                   if zeros.max() > 0 else
                   "No rows known to be zero: no block has a ReLU after its sum (e.g. a "
                   "transformer's x + f(x)), so nothing is deflated and every eigenvalue comes "
                   "from the solve (this table keeps no error bounds; the stable comparison "
                   "computes one per eigenvalue, values_err)."), ""]
    sig = c[c["significant"]]
    lines.append(f"Correlations: {len(c)} tests, {int(c['p'].notna().sum())} defined, "
                 f"{len(sig)} significant at {ALPHA:g} after Benjamini–Hochberg"
                 + (": " + "; ".join(f"{r.block} {r.metric} vs {r.target} ({r.level}) "
                                      f"r = {r.r:+.2f}, adjusted p = {r.p_adjusted:.2g}"
                                      for r in sig.itertuples()) if len(sig) else "")
                 + ". Paper 003: ResNet-18's last block SI vs accuracy r = −0.36.")
    lines.append("")
    return "\n".join(lines)
