"""The identity study's claims (paper 002): each section a perturbation from the identity, earlier
blocks transforming more than later ones; and the notes with the numbers behind them."""

from __future__ import annotations

import pandas as pd

from .base import Claim


def _first_eps(ctx) -> float:
    return ctx.config.eps[0]


def perturbation_claim(tables, ctx) -> Claim:
    eps = _first_eps(ctx)
    d = tables["distances"]
    d = d[d["section"] != "total"]
    return Claim(bool((d["mean_scaled"] < eps).all()),
                 "mean scaled perturbation per section " + ", ".join(
                     f"{r.section}: {r.mean_scaled:.3f}" for r in d.itertuples())
                 + f" (holds if all below ε = {eps:g})")


def coarse_to_fine_claim(tables, ctx) -> Claim:
    pb = tables["per_block"]
    first = sorted(pb["section_index"].unique())[:2]
    parts = []
    for s in first:
        sec = pb[pb["section_index"] == s].sort_values("position")
        if len(sec) < 2:
            return Claim(None, f"section {sec['section'].iloc[0]} has one block: no early and late")
        half = len(sec) // 2
        early, late = sec["abs_mean"].iloc[:half].mean(), sec["abs_mean"].iloc[-half:].mean()
        parts.append((sec["section"].iloc[0], early, late))
    return Claim(all(e > la for _, e, la in parts),
                 "mean ‖δ‖ of the first vs last half of the blocks: " + ", ".join(
                     f"{n}: {e:.3f} vs {la:.3f}" for n, e, la in parts)
                 + " (holds if the first half is larger in the first two sections)")


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
