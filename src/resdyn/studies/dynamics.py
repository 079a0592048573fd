"""The dynamics study: how the units' stretching adds up across depth, and residual alignment.

Finite-time Lyapunov exponents (paper 000, §3.2, asks how the stability of single units adds up):
for an image, the map from the first unit's input to unit l's output has Jacobian
J_{1→l} = J_l ⋯ J_1 and exponents λ_i(l) = (1/l)·log σ_i(J_{1→l}), computed exactly (the
composed operator's singular values) and by the classical QR method (k vectors pushed through
each unit, re-orthonormalised, λ_i ≈ (1/l)·Σ log|R_ii|), side by side.

Residual alignment (Li & Papyan, NeurIPS 2023): RA1, an input's representations equispaced on a
line (per stage: straightness ‖x_L − x_0‖ / path length and the spread of the step lengths);
RA2, the top singular vectors of the residual branches' Jacobians J_R aligned within a unit
(|⟨u_i, v_i⟩|) and across depth (overlaps of top-k subspaces against random ones); RA3, the
numerical rank of J_R against the number of classes; RA4, σ₁(J_R) against depth over a family
of networks trained alike (by default the shipped digits ResNet-20/32/44/56/110), a power-law
fit.

Block coupling (Aubry, Meng, Sugolov & Papyan, ICLR 2025): m_K between the per-token Jacobians
of the blocks' residual contributions, across depth and tokens, against a random level
(:mod:`resdyn.dynamics.coupling`; its tables, figure and claim in :mod:`.dynamics_coupling`).

Its claims, and the notes with their numbers, are in :mod:`.dynamics_claims`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from ..data import Dataset, check_compatible
from ..models import load_model
from ..models.zoo import SHIPPED
from ..plots import dynamics as figs
from ..runs import ModelRef, Task
from ..runs.identity import model_digest
from ..tasks.coupling import coupling_task
from ..tasks.dynamics import alignment_task, depth_task, lyapunov_task
from . import dynamics_claims, dynamics_coupling
from .base import Context, Figure, Plan, Study, Table
from .options import IMAGES_HELP, MAX_DENSE, MAX_IMAGES, MAX_K, MAX_SEED, option, options_class

#: The depth family of RA4 on digits: the shipped ResNets, trained alike at five depths
#: (9, 15, 21, 27 and 54 residual units).
DIGITS_FAMILY = ("digits-resnet20", "digits-resnet32", "digits-resnet44", "digits-resnet56",
                 "digits-resnet110")

# Thresholds of the claims, fixed before any run (never tuned to make a claim hold).


@dataclass(frozen=True)
@options_class
class DynamicsConfig:
    """What the dynamics study computes (each field's meaning: its ``help``);
    ``family_digests`` is filled by :func:`resolve` (the family's weights are part of the run).

    Example:
        >>> DynamicsConfig(images=2, family=())  # doctest: +ELLIPSIS
        DynamicsConfig(images=2, seed=0, k=5, dense_max=4096, family=(), family_images=2, ...)
        >>> DynamicsConfig().coupling_images
        2
        >>> DynamicsConfig(k=0)
        Traceback (most recent call last):
            ...
        ValueError: k must be at least 1; got 0
    """

    images: int = option(3, 1, MAX_IMAGES, short="-n", help=IMAGES_HELP)
    seed: int = option(0, 0, MAX_SEED, help="image choice")
    k: int = option(5, 1, MAX_K, flag="top-k", old=("--k",), help="the k largest: exponents per "
                    "depth, and singular triplets per residual branch")
    dense_max: int = option(4096, 0, MAX_DENSE, help="widest first unit whose composed Jacobians "
                            "stay dense (wider: the top k by ARPACK at each depth), and widest "
                            "unit whose J_R gets a full spectrum (RA3)")
    family: tuple[str, ...] | None = option(
        None, parse=lambda text: _family(text),
        help="RA4's networks trained alike at several depths (shipped names or .safetensors), "
        "comma-separated; auto: the digits ResNets on digits, none otherwise; none")
    family_images: int = option(2, 1, MAX_IMAGES, help="images per network of the family")
    family_digests: tuple[str, ...] = option((), cli=False)
    coupling_images: int = option(2, 0, MAX_IMAGES, help="images (sequences) whose block "
                                  "coupling (Aubry et al. 2025) is measured, the first N of "
                                  "those chosen (2: the fewest an interval needs); triplets "
                                  "dense up to --dense-max wide, matrix-free above; 0: none")


def _family(text: str) -> tuple[str, ...] | None:
    """--family: auto (None), none (()) or comma-separated names."""
    names = tuple(n.strip() for n in str(text).split(",") if n.strip())
    return None if names == ("auto",) else () if names == ("none",) else names


def _family_path(spec: str) -> Path:
    shipped = SHIPPED / f"{spec}.safetensors"
    if shipped.is_file():
        return shipped
    path = Path(spec).expanduser()
    takes = (f"the depth family (--family) takes resdyn checkpoints: shipped names such as "
             f"{', '.join(DIGITS_FAMILY)}, or .safetensors files written by `resdyn train`")
    if path.suffix != ".safetensors":
        raise ValueError(f"{takes}; got {spec!r}")
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ValueError(f"family checkpoint {str(path)!r} {what}; {takes}")
    return path.resolve()


def resolve(config: DynamicsConfig, model: nn.Module, data: Dataset) -> DynamicsConfig:
    """The family made explicit (the digits ResNets on digits by default) with the digests of
    its weights, each checked against the data; k checked against the narrowest unit."""
    from ..models import units

    narrowest = min(min(u.n_in, u.n_out) for u in units(model, data.input_shape))
    if config.k > narrowest:
        raise ValueError(f"k must be at most {narrowest} (the narrowest unit); got {config.k}")
    family = config.family
    if family is None:
        family = DIGITS_FAMILY if data.name == "digits" else ()
    digests = []
    for spec in family:
        member = load_model(str(_family_path(spec)))
        check_compatible(member, data)
        digests.append(model_digest(member))
    return replace(config, family=tuple(family), family_digests=tuple(digests))


def _plan(ctx: Context) -> Plan:
    cfg: DynamicsConfig = ctx.config
    images = [int(i) for i in ctx.dataset.choose(cfg.images, cfg.seed)]
    tasks = []
    for i in images:
        args = dict(model=ctx.ref, input_shape=ctx.dataset.input_shape, x=ctx.dataset.x[i].clone(),
                    image=i, label=int(ctx.dataset.y[i]), k=cfg.k, dense_max=cfg.dense_max)
        tasks.append(Task("lyapunov", f"img{i}", lyapunov_task, args))
        tasks.append(Task("alignment", f"img{i}", alignment_task, dict(args)))
    for i in images[:cfg.coupling_images]:
        tasks.append(Task("coupling", f"img{i}", coupling_task,
                          dict(model=ctx.ref, input_shape=ctx.dataset.input_shape,
                               x=ctx.dataset.x[i].clone(), image=i, label=int(ctx.dataset.y[i]),
                               dense_max=cfg.dense_max)))
    chosen = images[:cfg.family_images]
    for spec in cfg.family or ():
        name = Path(spec).stem if spec.endswith(".safetensors") else spec
        tasks.append(Task("depth", name, depth_task,
                          dict(model=ModelRef.checkpoint(_family_path(spec)),
                               input_shape=ctx.dataset.input_shape, x=ctx.dataset.x[chosen].clone(),
                               images=chosen, model_name=name)))
    return Plan(tasks, {"images": images, "classes": ctx.dataset.classes})


# ---------------------------------------------------------------- derived tables

INTEGER = ("image", "label", "stage", "position", "n_in", "n_out", "a_index", "b_index", "steps")


def _records(t: pd.DataFrame, record: str) -> pd.DataFrame:
    """The alignment rows of one record kind, with its own columns only (integers as such:
    the records share one table, where a column another record lacks turned float)."""
    part = t[t["record"] == record].dropna(axis=1, how="all").drop(columns="record",
                                                                     errors="ignore")
    return part.astype({c: int for c in INTEGER if c in part}).reset_index(drop=True)


def depth_law(depth: pd.DataFrame) -> pd.DataFrame:
    """Per network of the family: its depth L (residual units) and σ₁(J_R) over units and
    images (median, 10 and 90 % quantiles)."""
    if depth.empty:
        return pd.DataFrame(columns=["model", "units", "sigma1_median", "sigma1_q10",
                                     "sigma1_q90", "n"])
    g = depth.groupby(["model", "units"], sort=False)["sigma1"]
    return (pd.DataFrame({"sigma1_median": g.median(), "sigma1_q10": g.quantile(0.1),
                          "sigma1_q90": g.quantile(0.9), "n": g.size()})
            .reset_index().sort_values("units", ignore_index=True))


def qr_error(ly: pd.DataFrame) -> pd.DataFrame:
    """Per depth and i: the median over images of |λ_i(QR) − λ_i(exact)| (finite pairs)."""
    keys = ["image", "depth", "i"]
    both = ly[ly["path"] == "exact"].merge(ly[ly["path"] == "qr"], on=keys,
                                           suffixes=("_exact", "_qr"))
    both = both[np.isfinite(both["exponent_exact"]) & np.isfinite(both["exponent_qr"])]
    both = both.assign(error=(both["exponent_qr"] - both["exponent_exact"]).abs())
    return both.groupby(["depth", "i"])["error"].median().reset_index()


DYNAMICS = Study(
    name="dynamics", title="Dynamics study", config=DynamicsConfig, plan=_plan, resolve=resolve,
    revision=2,
    changes="the lyapunov table's resolution column (a σ is zero below its own depth's "
            "resolution), RA3's rank read off the triplets' own SVD, and the block coupling "
            "(tables coupling, coupling_blocks, line_shape; --coupling-images)",
    tables={
        "lyapunov": Table(order=lambda t, ctx: t.sort_values(["path", "image", "depth", "i"],
                                                             ignore_index=True)),
        "residual": Table(analysis="alignment", order=lambda t, ctx: _records(t, "unit")),
        "overlap": Table(analysis="alignment", order=lambda t, ctx: _records(t, "pair")),
        "trajectory": Table(analysis="alignment", order=lambda t, ctx: _records(t, "stage")),
        "depth": Table(),
        "depth_law": Table(derive=lambda t, ctx: depth_law(t["depth"])),
        "qr_error": Table(derive=lambda t, ctx: qr_error(t["lyapunov"])),
        **dynamics_coupling.TABLES,
    },
    figures={
        "exponents": Figure(lambda t, ctx, p: figs.exponents(t["lyapunov"], t["qr_error"], p,
                                                             ctx.model_name),
                            "finite-time Lyapunov exponents λ_i(l) = (1/l)·log σ_i(J_l ⋯ J_1) "
                            "against depth, exact (solid) and by QR (dashed), median over "
                            "images; right: |QR − exact| per depth"),
        "alignment": Figure(lambda t, ctx, p: figs.alignment(t["overlap"], t["residual"], p,
                                                             ctx.model_name),
                            "overlap of the top-k left singular subspaces of J_R between units "
                            "(first image; random subspaces: k/n), and |⟨u₁, v₁⟩| per unit"),
        "depth_law": Figure(lambda t, ctx, p: figs.depth_law(
            t["depth_law"], dynamics_claims.depth_fit(t["depth_law"]), p, ctx.model_name),
                            "σ₁(J_R) against depth L over the family (median, 10–90 %), with "
                            "the power-law fit"),
        **dynamics_coupling.FIGURES,
    },
    claims={**dynamics_claims.CLAIMS, **dynamics_coupling.CLAIMS},
    notes=lambda t, ctx: dynamics_claims.notes(t, ctx) + dynamics_coupling.notes(t, ctx),
    precisions=("float64",),
    precision_note="log σ of deep products needs float64 (float32 products reach its round-off "
                   "after a few units)")
