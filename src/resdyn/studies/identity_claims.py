"""The identity study's claims (paper 002): each section a perturbation from the identity, earlier
blocks transforming more than later ones; and the notes with the numbers behind them. Each
number's 95 % interval resamples the images (:mod:`.intervals`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import Claim
from .intervals import Test, bootstrap, by_unit, evidence_unit


def _first_eps(ctx) -> float:
    return ctx.config.eps[0]


def perturbation_claim(tables, ctx) -> Claim:
    eps = _first_eps(ctx)
    d = tables["distances"]
    d = d[d["section"] != "total"]
    b = tables["blocks"]
    # per image and section: d_scaled / L, whose mean over images is the mean scaled perturbation
    per = (b.groupby(["section_index", "section", "image"], sort=True)
           .agg(d_scaled=("scaled", "sum"), L=("position", "size")).reset_index())
    x, sections = by_unit(per.assign(m=per["d_scaled"] / per["L"]), "image", "section", "m")
    ivs = bootstrap(x, lambda s: s.mean(axis=1), unit=evidence_unit(ctx))
    return Claim.judged(
        "mean scaled perturbation per section " + ", ".join(
            f"{r.section}: {r.mean_scaled:.3f}" for r in d.itertuples())
        + f" (holds if all below ε = {eps:g})",
        [Test(f"mean scaled perturbation of {sec}", iv, eps, "below")
         for sec, iv in zip(sections, ivs, strict=True)])


def coarse_to_fine_claim(tables, ctx) -> Claim:
    pb, b = tables["per_block"], tables["blocks"]
    first = sorted(pb["section_index"].unique())[:2]
    parts, tests = [], []
    for s in first:
        sec = pb[pb["section_index"] == s].sort_values("position")
        if len(sec) < 2:
            return Claim(None, f"section {sec['section'].iloc[0]} has one block: no early and late")
        half = len(sec) // 2
        early, late = sec["abs_mean"].iloc[:half].mean(), sec["abs_mean"].iloc[-half:].mean()
        name = sec["section"].iloc[0]
        parts.append((name, early, late))
        x, _ = by_unit(b[b["section_index"] == s].sort_values("position"), "image", "position",
                       "abs")

        def ratio(v: np.ndarray, half: int = half) -> np.ndarray:
            with np.errstate(all="ignore"):
                return (v[..., :half].mean(axis=(1, 2)) / v[..., -half:].mean(axis=(1, 2)))

        iv, = bootstrap(x, ratio, unit=evidence_unit(ctx))
        tests.append(Test(f"{name}: mean ‖δ‖ of the first half / the last half", iv, 1.0, "above"))
    return Claim.judged("mean ‖δ‖ of the first vs last half of the blocks: " + ", ".join(
                            f"{n}: {e:.3f} vs {la:.3f}" for n, e, la in parts)
                        + " (holds if the first half is larger in the first two sections)", tests)


def notes(tables, ctx) -> str:
    dist, stop = tables["distances"], tables["stopping"]
    lines = ["## Numbers", "", f"Images: {len(ctx.meta['images'])} test images (seed "
             f"{ctx.config.seed}). Down-sampling blocks are measured against their projection "
             "shortcut, ‖x_(l+1) − S(x_l)‖, and counted in the section they output to.", "",
             "| section | L | d | d_scaled | mean ‖δ‖ | mean scaled |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.section} | {r.L} | {r.d:.3f} ± {r.d_std:.3f} | {r.d_scaled:.3f} ± "
              f"{r.d_scaled_std:.3f} | {r.mean:.4f} | {r.mean_scaled:.4f} |"
              for r in dist.itertuples()]
    lines += ["", "Stopping rule L = ceil(d_scaled / ε) against the blocks the network has: "
              + "; ".join(f"{r.section} at ε = {r.eps:g}: {r.predicted_L} (has {r.L})"
                          for r in stop.itertuples()) + ".", ""]
    kinds = sublayer_kinds(tables["per_block"])
    if kinds is not None:
        lines += ["Per kind of sub-layer (the steps of a transformer block), mean over its "
                  "blocks: " + "; ".join(
                      f"{k}: ‖δ‖ {g['abs_mean'].mean():.3f}, scaled {g['scaled_mean'].mean():.3f}"
                      for k, g in kinds) + ".", ""]
    return "\n".join(lines)


def sublayer_kinds(pb: pd.DataFrame) -> list[tuple[str, pd.DataFrame]] | None:
    """Blocks grouped by their step name (``...encoder_layer_0.mlp`` -> "mlp") when the blocks
    are steps of a few kinds (a transformer's attention and MLP), else None (ResNet blocks end
    in their index)."""
    last = pb["name"].str.rsplit(".", n=1).str[-1]
    if last.str.isdigit().any() or last.nunique() < 2 or last.nunique() >= len(pb):
        return None
    return [(k, pb[last == k]) for k in dict.fromkeys(last)]


CLAIMS = {
    "every section is a perturbation from identity (mean scaled perturbation below ε)":
        perturbation_claim,
    "earlier blocks of a section transform more than later ones (first two sections)":
        coarse_to_fine_claim,
}
