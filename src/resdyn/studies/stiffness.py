"""Stiffness study of paper 003: eigenvalues of every square block's Jacobian with respect to its
input, stiffness indices, and their correlation with per-image loss and correctness.

Convention: the eigenvalues are those of the block Jacobian J = ∂x_(l+1)/∂x_l (paper 003, "the
Jacobian of individual residual blocks with respect to their inputs"); the stable comparison
(paper 004) judges those of J − I, the residual branch (the ODE's vector field). The table
gives both: the metrics of J, and of J − I (λ − 1) as ``branch_share_negative``,
``branch_stiffness_signed`` and ``branch_stiffness_ratio``.

One task per image: it captures the image's activations once and, for each square block,
computes all eigenvalues (dense LAPACK geev of the block with the rows its output ReLU kills
deflated) when the block is at most ``dense_max`` wide, else the extreme real parts by Arnoldi
(ARPACK, ``k`` each side). Metrics follow DESIGN §1: share of Re λ < 0, the signed stiffness index
max Re λ / min Re λ, the classical ratio max |Re λ| / min |Re λ| over Re λ ≠ 0, and the spectral
radius. A metric that is NaN says why in ``nan_reason`` ("metric: why", joined by "; "): min Re λ
= 0 for the signed index, no non-zero real part for the ratio, and on the Arnoldi path the ones that
need every eigenvalue. Down-sampling blocks are not square: their rows say so and carry no metrics.

Its claims, and the notes with their numbers, are in :mod:`.stiffness_claims`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn

from ..data import Dataset
from ..models import units
from ..plots import stiffness as figs
from ..runs import Task
from ..tasks.eigen import METRICS, stiffness_task
from . import stiffness_claims
from . import stiffness_stats as stats
from .base import Context, Figure, Plan, Study, Table
from .options import IMAGES_HELP, MAX_DENSE, MAX_IMAGES, MAX_K, MAX_SEED, option, options_class


@dataclass(frozen=True)
@options_class
class StiffnessConfig:
    """What the stiffness study computes (each field's meaning: its ``help``).

    Example:
        >>> from resdyn import load_data, load_model
        >>> cfg = StiffnessConfig(images=20, metrics=("stiffness_ratio",))
        >>> resolve(cfg, load_model("digits-resnet20"), load_data("digits")).blocks[:3]
        ('stages.0.0', 'stages.0.1', 'stages.0.2')
        >>> StiffnessConfig(metrics=("trace",))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ValueError: metrics: unknown 'trace'; valid: share_negative, stiffness_signed, ...
    """

    images: int = option(200, 2, MAX_IMAGES, short="-n", help=IMAGES_HELP + " (at least 2: "
                         "the correlations with loss and correctness are across images, so "
                         "--images 1 is refused)")
    seed: int = option(0, 0, MAX_SEED, help="image choice and the Arnoldi start vectors")
    blocks: tuple[str, ...] | None = option(None, none="all", help="all (every square block), "
                                            "or comma-separated block names")
    dense_max: int = option(4096, 0, MAX_DENSE, help="widest block whose eigenvalues are all "
                            "computed; wider: Arnoldi extremes")
    k: int = option(6, 1, MAX_K, flag="arnoldi-k", help="eigenvalues per side (largest and "
                    "smallest real part) on the Arnoldi path")
    keep_values: int = option(5, 0, MAX_IMAGES, help="images whose eigenvalues themselves are "
                              "kept (the complex-plane figure); metrics are kept for all")
    metrics: tuple[str, ...] = option(METRICS, choices=METRICS, help="metrics correlated with "
                                      "loss and correctness, comma-separated")


def resolve(config: StiffnessConfig, model: nn.Module, data: Dataset) -> StiffnessConfig:
    """The analysed blocks made explicit: every square block, or the named ones (checked)."""
    unit_list = units(model, data.input_shape)
    square = [u.name for u in unit_list if u.in_shape == u.out_shape]
    if config.blocks is None:
        return replace(config, blocks=tuple(square))
    names = {u.name: u for u in unit_list}
    unknown = [b for b in config.blocks if b not in names]
    if unknown:
        raise ValueError(f"unknown block(s) {unknown}; blocks: {', '.join(names)}")
    flat = [b for b in config.blocks if b not in square]
    if flat:
        shapes = "; ".join(f"{b}: {names[b].in_shape} -> {names[b].out_shape}" for b in flat)
        raise ValueError(f"block(s) {flat} are not square ({shapes}): eigenvalues need a block "
                         "whose output has its input's shape; leave them out (singular values: "
                         "resdyn spectra)")
    return config


# ---------------------------------------------------------------- the study

def _plan(ctx: Context) -> Plan:
    cfg: StiffnessConfig = ctx.config
    data = ctx.dataset
    images = [int(i) for i in data.choose(cfg.images, cfg.seed)]
    tasks = [Task("stiffness", f"img{i}", stiffness_task,
                  dict(model=ctx.ref, input_shape=data.input_shape, x=data.x[i].clone(),
                       label=int(data.y[i]), image=i, blocks=cfg.blocks, dense_max=cfg.dense_max,
                       k=cfg.k, seed=cfg.seed, keep_values=j < cfg.keep_values))
             for j, i in enumerate(images)]
    return Plan(tasks, {"images": images})


STIFFNESS = Study(
    name="stiffness", title="Stiffness study", config=StiffnessConfig, plan=_plan,
    resolve=resolve, revision=3,
    changes="every square block's row records the share and indices of J − I "
            "(branch_share_negative, branch_stiffness_signed, branch_stiffness_ratio); since "
            "revision 2, known_zero_rows (the rows its output ReLU kills)",
    tables={
        "stiffness": Table(order=lambda t, ctx: t.sort_values(["index", "image"],
                                                               ignore_index=True)),
        "correlations": Table(derive=lambda t, ctx: stats.correlations(t["stiffness"],
                                                                       ctx.config.metrics)),
    },
    figures={
        "eigenvalues": Figure(
            lambda t, ctx, p: figs.eigenvalue_planes(t["stiffness"], p, ctx.model_name),
            "eigenvalues of the block Jacobian of the first, middle and last analysed block in "
            "the complex plane, several images overlaid; the unit circle and Re λ = 0 drawn"),
        "metrics_depth": Figure(
            lambda t, ctx, p: figs.metrics_along_depth(t["stiffness"], p, ctx.model_name),
            "stiffness metrics per block along the depth: median over images with the 10–90 % "
            "band"),
        "last_block_vs_loss": Figure(
            lambda t, ctx, p: figs.last_block_scatter(t["stiffness"], t["correlations"], p,
                                                      ctx.model_name),
            "the last analysed block: stiffness metrics against per-image loss, with Pearson r "
            "and its p-value"),
    },
    claims=stiffness_claims.CLAIMS,
    notes=stiffness_claims.notes,
)
