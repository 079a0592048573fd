"""Identity study of paper 002: how far each residual block is from the identity.

Per block l of a section (stage) and image: the absolute perturbation ‖x_{l+1} − S(x_l)‖₂ and the
scaled perturbation ‖x_{l+1} − S(x_l)‖₂ / ‖S(x_l)‖₂, where S is the block's shortcut. For an
identity shortcut this is the paper's ‖x_{l+1} − x_l‖₂ (/ ‖x_l‖₂). A down-sampling block changes
the shape, so x_{l+1} − x_l does not exist; it is measured against its projection shortcut
S(x_l) (what the block adds to its own skip path) and counted in the section whose shape it
outputs, so each section has its L blocks, as in the paper's sums over l = 0 … L − 1.

Per section and in total: the computational distance d = Σ_l mean abs, the scaled distance
d_scaled = Σ_l mean scaled, the mean (scaled) perturbation d / L, and the stopping rule
L = ceil(d_scaled / ε). The depth sweep (:mod:`.identity_sweep`) trains pre-activation ResNets of
several depths and reuses these tasks and tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..metrics import stopping_rule
from ..plots import identity as figs
from ..tasks.perturbation import perturbation_tasks
from .base import Claim, Context, Figure, Plan, Study, Table
from .options import EPS_OPTION, IMAGES_HELP, MAX_IMAGES, MAX_SEED, option, options_class


@options_class
class IdentityConfig:
    """What the identity study computes (each field's meaning: its ``help``).

    Example:
        >>> IdentityConfig(images=10, eps=(0.1, 0.05))
        IdentityConfig(images=10, seed=0, eps=(0.1, 0.05))
        >>> IdentityConfig(eps=(0.0,))
        Traceback (most recent call last):
            ...
        ValueError: eps must be greater than 0; got 0.0
    """

    images: int = option(100, 1, MAX_IMAGES, short="-n", help=IMAGES_HELP)
    seed: int = option(0, 0, MAX_SEED, help="image choice")
    eps: tuple[float, ...] = EPS_OPTION

    def __post_init__(self) -> None:
        check_eps(self.eps)


def check_eps(eps: Sequence[float]) -> None:
    if not eps or any(not e > 0 for e in eps):
        raise ValueError(f"eps must be one or more positive numbers; got {tuple(eps)}")


# ---------------------------------------------------------------- task


# ---------------------------------------------------------------- tables

def _by(blocks: pd.DataFrame, keys: list[str]) -> list[str]:
    return [k for k in keys if k in blocks.columns]


def per_block(blocks: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and 10/90 % quantiles over images, per block."""
    keys = _by(blocks, ["blocks", "section_index", "section", "position", "n_blocks",
                        "pos_scaled", "name", "kind", "shortcut"])
    g = blocks.groupby(keys, sort=True)
    out = g[["abs", "scaled"]].agg(["mean", "std"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    for col in ("abs", "scaled"):
        out[f"{col}_q10"] = g[col].quantile(0.1)
        out[f"{col}_q90"] = g[col].quantile(0.9)
    return out.reset_index().assign(images=g.size().to_numpy())


def distances(blocks: pd.DataFrame) -> pd.DataFrame:
    """Per section and in total: d, d_scaled, their spread over images, L and the means d / L.

    d = Σ_l mean_images ‖δ_l‖ (the mean over images of each image's distance); the spread is
    the standard deviation over images of the per-image distance.
    """
    net = _by(blocks, ["blocks"])
    per_image = (blocks.groupby(net + ["section_index", "section", "image"], sort=True)
                 .agg(d=("abs", "sum"), d_scaled=("scaled", "sum"), L=("position", "size"))
                 .reset_index())
    total = (per_image.groupby(net + ["image"], sort=True)
             .agg(d=("d", "sum"), d_scaled=("d_scaled", "sum"), L=("L", "sum")).reset_index()
             .assign(section_index=-1, section="total"))
    both = pd.concat([per_image, total], ignore_index=True)
    out = (both.groupby(net + ["section_index", "section"], sort=True)
           .agg(L=("L", "first"), d=("d", "mean"), d_std=("d", "std"),
                d_scaled=("d_scaled", "mean"), d_scaled_std=("d_scaled", "std"),
                images=("image", "size")).reset_index())
    out["mean"] = out["d"] / out["L"]
    out["mean_scaled"] = out["d_scaled"] / out["L"]
    order = out["section_index"].where(out["section_index"] >= 0, np.inf)
    return (out.assign(_o=order).sort_values(net + ["_o"]).drop(columns="_o")
            .reset_index(drop=True))


def stopping(dist: pd.DataFrame, eps: Sequence[float]) -> pd.DataFrame:
    """The stopping rule per section (and network): predicted L = ceil(d_scaled / ε) next to
    the L the network has, for each ε."""
    rows = []
    for r in dist[dist["section"] != "total"].itertuples():
        for e in eps:
            row = {"section": r.section, "eps": e, "L": int(r.L), "d_scaled": r.d_scaled,
                   "mean_scaled": r.mean_scaled, "predicted_L": stopping_rule(r.d_scaled, e),
                   "below_eps": bool(r.mean_scaled < e)}
            rows.append({"blocks": int(r.blocks), **row} if "blocks" in dist else row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- the study

def _plan(ctx: Context) -> Plan:
    cfg: IdentityConfig = ctx.config
    ctx.ref.units(ctx.dataset.input_shape)  # a model without recognisable blocks stops here
    images = [int(i) for i in ctx.dataset.choose(cfg.images, cfg.seed)]
    return Plan(perturbation_tasks(ctx.ref, ctx.dataset, images), {"images": images})


def block_order(blocks: pd.DataFrame, ctx=None) -> pd.DataFrame:
    """The blocks table in (depth, section, position, image) order (the sweep's too)."""
    keys = _by(blocks, ["blocks", "section_index", "position", "image"])
    return blocks.sort_values(keys, ignore_index=True)


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


IDENTITY = Study(
    name="identity", title="Identity study", config=IdentityConfig, plan=_plan,
    precisions=("float64",), precision_note="it takes no Jacobian products",
    tables={
        "blocks": Table(order=block_order),
        "per_block": Table(derive=lambda t, ctx: per_block(t["blocks"])),
        "distances": Table(derive=lambda t, ctx: distances(t["blocks"])),
        "stopping": Table(derive=lambda t, ctx: stopping(t["distances"], ctx.config.eps)),
    },
    figures={"fig2_5_blocks": Figure(
        lambda t, ctx, p: figs.blocks(t["per_block"], p, ctx.model_name),
        "absolute ‖x_(l+1) − x_l‖ and scaled ‖x_(l+1) − x_l‖ / ‖x_l‖ perturbation per block "
        "along each section (position scaled to [0, 1]), mean over images with the 10–90 % band "
        "(paper 002, Figs. 2 and 5)")},
    claims={
        "every section is a perturbation from identity (mean scaled perturbation below ε)":
            perturbation_claim,
        "earlier blocks of a section transform more than later ones (first two sections)":
            coarse_to_fine_claim,
    },
    notes=notes,
)
