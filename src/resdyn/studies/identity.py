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

Its claims, and the notes with their numbers, are in :mod:`.identity_claims`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..metrics import stopping_rule
from ..plots import identity as figs
from ..tasks.perturbation import perturbation_tasks
from . import identity_claims
from .base import Context, Figure, Plan, Study, Table
from .options import EPS_OPTION, IMAGES_HELP, MAX_IMAGES, MAX_SEED, option, options_class


@dataclass(frozen=True)
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
    claims=identity_claims.CLAIMS,
    notes=identity_claims.notes,
)
