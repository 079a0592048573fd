"""Depth sweep of paper 002: train pre-activation ResNets with L blocks per section for several L,
then measure each one's perturbation from identity (:mod:`.identity`).

Each training is a task (:mod:`resdyn.tasks.training`) whose result is a checkpoint in the
run folder (``checkpoints/preresnet<L>.safetensors``), so a rerun skips finished depths and a Dask cluster
trains depths in parallel; each network's measurement tasks run after its training. One recipe
for every depth: the network is built under ``seed``, trained with SGD (Nesterov, cosine decay,
one warm-up epoch, 1-pixel shifts) for ``epochs`` at batch size ``batch_size`` and peak rate
``lr`` (:func:`resdyn.train.train_and_save`).

Its claims, and the notes with their numbers, are in :mod:`.identity_sweep_claims`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..metrics import crossing_depth, power_law, stopping_rule
from ..plots import identity as figs
from ..runs import ModelRef, Task
from ..tasks.perturbation import perturbation_tasks
from ..tasks.training import train_task
from . import identity_sweep_claims
from .base import Context, Figure, Plan, Study, Table
from .identity import block_order, check_eps, distances, per_block, stopping
from .options import (
    EPS_OPTION,
    IMAGES_HELP,
    MAX_BATCH,
    MAX_DEPTH,
    MAX_EPOCHS,
    MAX_IMAGES,
    MAX_SEED,
    option,
    options_class,
)

# paper 002, §3.5.1, as printed: d_scaled per section, and the L it says ceil(d_scaled / 0.1) gives


@dataclass(frozen=True)
@options_class
class SweepConfig:
    """The depth sweep (each field's meaning: its ``help``); one training recipe for every
    depth.

    Example:
        >>> SweepConfig(depths=(2, 4), epochs=1)
        SweepConfig(depths=(2, 4), epochs=1, lr=0.1, batch_size=128, seed=0, images=100, eps=(0.1,))
        >>> SweepConfig(depths=(2, 2))
        Traceback (most recent call last):
            ...
        ValueError: depths repeat: (2, 2)
    """

    depths: tuple[int, ...] = option((2, 4, 8, 16, 32), 1, MAX_DEPTH, help="blocks per section "
                                     "L of each network, comma-separated")
    epochs: int = option(15, 1, MAX_EPOCHS, help="training epochs per depth")
    lr: float = option(0.1, above=0, help="learning rate")
    batch_size: int = option(128, 1, MAX_BATCH, help="training batch size")
    seed: int = option(0, 0, MAX_SEED, help="training and image choice")
    images: int = option(100, 1, MAX_IMAGES, short="-n", help=IMAGES_HELP + " (per network)")
    eps: tuple[float, ...] = EPS_OPTION

    def __post_init__(self) -> None:
        if not self.depths:
            raise ValueError("depths must be one or more positive integers; got none")
        if len(set(self.depths)) != len(self.depths):
            raise ValueError(f"depths repeat: {self.depths}")
        check_eps(self.eps)


def _plan(ctx: Context) -> Plan:
    cfg: SweepConfig = ctx.config
    images = [int(i) for i in ctx.dataset.choose(cfg.images, cfg.seed)]
    (ctx.out / "checkpoints").mkdir(exist_ok=True)
    tasks = []
    for blocks in sorted(cfg.depths):
        path = ctx.out / "checkpoints" / f"preresnet{blocks}.safetensors"
        tasks.append(Task("training", f"L{blocks}", train_task,
                          dict(data=ctx.dataset.name, spec=f"preresnet({blocks})", path=str(path),
                               epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                               seed=cfg.seed), tags={"blocks": blocks, "depth": 6 * blocks + 2}))
        tasks += perturbation_tasks(ModelRef.checkpoint(path), ctx.dataset, images,
                                    key=f"L{blocks}-", blocks=blocks,
                                    after=(f"training/L{blocks}",))
    return Plan(tasks, {"images": images})


# ---------------------------------------------------------------- derived tables

def fits(dist: pd.DataFrame) -> pd.DataFrame:
    """Mean scaled perturbation ≈ c · L^(−p) per section (and total), 95 % interval on p."""
    rows = []
    for section, g in dist.groupby("section", sort=False):
        g = g.sort_values("blocks")
        if len(g) < 2:
            continue
        f = power_law(g["blocks"], g["mean_scaled"])
        rows.append({"section": section, "c": f.c, "p": f.p, "p_low": f.p_low,
                     "p_high": f.p_high, "r2": f.r2, "depths": f.n})
    # one depth fits nothing: an empty table with its columns, for the claims and figures
    return pd.DataFrame(rows, columns=["section", "c", "p", "p_low", "p_high", "r2", "depths"])


def crossings(dist: pd.DataFrame, eps) -> pd.DataFrame:
    """Per section and ε: where the mean scaled perturbation falls below ε (first trained depth
    and the interpolated crossing) against the stopping rule of the deepest network."""
    rows = []
    for section, g in dist[dist["section"] != "total"].groupby("section", sort=False):
        g = g.sort_values("blocks")
        deepest = g.iloc[-1]
        for e in eps:
            first = g[g["mean_scaled"] < e]["blocks"]
            rows.append({"section": section, "eps": e,
                         "first_L_below": int(first.iloc[0]) if len(first) else None,
                         "crossing_L": crossing_depth(g["blocks"], g["mean_scaled"], e),
                         "predicted_L": stopping_rule(deepest["d_scaled"], e),
                         "from_blocks": int(deepest["blocks"]),
                         "d_scaled": float(deepest["d_scaled"])})
    return pd.DataFrame(rows)


SWEEP = Study(
    name="identity-sweep", title="Identity depth sweep", config=SweepConfig, plan=_plan,
    precisions=("float64",), precision_note="it takes no Jacobian products",
    tables={
        "training": Table(order=lambda t, ctx: t.sort_values("blocks", ignore_index=True)),
        "blocks": Table(order=block_order),
        "per_block": Table(derive=lambda t, ctx: per_block(t["blocks"])),
        "distances": Table(derive=lambda t, ctx: distances(t["blocks"])),
        "stopping": Table(derive=lambda t, ctx: stopping(t["distances"], ctx.config.eps)),
        "fits": Table(derive=lambda t, ctx: fits(t["distances"])),
        "crossings": Table(derive=lambda t, ctx: crossings(t["distances"], ctx.config.eps)),
    },
    figures={
        "fig1_test_error": Figure(
            lambda t, ctx, p: figs.test_error(t["training"], p, ctx.dataset.name),
            "test error per depth L (paper 002, Fig. 1)"),
        "fig2_5_blocks": Figure(
            lambda t, ctx, p: figs.blocks(t["per_block"], p, f"preresnet(L) on {ctx.dataset.name}"),
            "absolute and scaled perturbation per block along each section, one line per depth "
            "(paper 002, Figs. 2 and 5)"),
        "fig3_4_distances": Figure(
            lambda t, ctx, p: figs.distances(t["distances"], p, ctx.dataset.name, scaled=False),
            "computational distance d per section and in total, and the mean perturbation d/L, "
            "against depth (paper 002, Figs. 3 and 4)"),
        "fig6_7_scaled": Figure(
            lambda t, ctx, p: figs.distances(t["distances"], p, ctx.dataset.name, scaled=True,
                                             fits=t["fits"], eps=ctx.config.eps[0]),
            "scaled distance d_scaled and mean scaled perturbation d_scaled/L against depth, "
            "with the fitted c·L^(−p) and ε (paper 002, Figs. 6 and 7)"),
    },
    claims=identity_sweep_claims.CLAIMS,
    notes=identity_sweep_claims.notes,
)

