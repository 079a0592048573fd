"""Stiffness study of paper 003: eigenvalues of every square block's Jacobian with respect to its
input, stiffness indices, and their correlation with per-image loss and correctness.

One task per image: it captures the image's activations once and, for each square block,
computes all eigenvalues (dense LAPACK geev of the block with the rows its output ReLU kills
deflated) when the block is at most ``dense_max`` wide, else the extreme real parts by Arnoldi
(ARPACK, ``k`` each side). Metrics follow DESIGN §1: share of Re λ < 0, the signed stiffness index
max Re λ / min Re λ, the classical ratio max |Re λ| / min |Re λ| over Re λ ≠ 0, and the spectral
radius. A metric that is NaN says why in ``nan_reason`` ("metric: why", joined by "; "): min Re λ
= 0 for the signed index, no non-zero real part for the ratio, and on the Arnoldi path the ones that
need every eigenvalue. Down-sampling blocks are not square: their rows say so and carry no metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..capture import capture
from ..data import Dataset
from ..metrics import EIG_ROUND_OFF_FACTOR, eigen_summary, eigenvalues_with_bounds
from ..models import units
from ..operators import unit_jacobian
from ..operators.base import LinearOperator
from ..plots import stiffness as figs
from ..runs import ModelRef, Task, current
from ..spectra import eigenvalues
from . import stiffness_stats as stats
from .base import Context, Figure, Plan, Study, Table

METRICS = ("share_negative", "stiffness_signed", "stiffness_ratio", "spectral_radius")
NEEDS_ALL = {"share_negative": "the share needs every eigenvalue",
             "stiffness_ratio": "min |Re λ| needs every eigenvalue",
             "spectral_radius": "the extremes path computes real parts, not the largest |λ|"}


@dataclass(frozen=True)
class StiffnessConfig:
    """What the stiffness study computes.

    Attributes:
        images: how many test images (the first ``images`` of a seeded permutation).
        seed: image choice and the Arnoldi start vectors.
        blocks: names of the blocks to analyse (square ones only); None: every square block.
        dense_max: widest block whose eigenvalues are all computed (dense); wider blocks get
            their extreme real parts by Arnoldi.
        k: eigenvalues per side on the Arnoldi path (largest and smallest real part).
        keep_values: for how many of the images the eigenvalues themselves are kept in the
            table (for the complex-plane figure); metrics are kept for all.
        metrics: the metrics correlated with loss and correctness.
    """

    images: int = 200
    seed: int = 0
    blocks: tuple[str, ...] | None = None
    dense_max: int = 4096
    k: int = 6
    keep_values: int = 5
    metrics: tuple[str, ...] = METRICS

    def __post_init__(self) -> None:
        if self.images < 2:
            raise ValueError(f"correlations across images need images >= 2; got {self.images}")
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise ValueError(f"unknown metric(s) {unknown or self.metrics!r}; valid: "
                             f"{', '.join(METRICS)}")
        if self.dense_max < 0 or self.k < 1 or self.keep_values < 0:
            raise ValueError(f"dense_max >= 0, k >= 1 and keep_values >= 0 needed; got "
                             f"{self.dense_max}, {self.k}, {self.keep_values}")


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


# ---------------------------------------------------------------- task

def stiffness_task(model: ModelRef, input_shape: tuple[int, ...], x: torch.Tensor, label: int,
                   image: int, blocks: tuple[str, ...], dense_max: int, k: int, seed: int,
                   keep_values: bool, error_bounds: bool = False) -> pd.DataFrame:
    """Eigenvalue metrics of every block of one image (down-sampling blocks noted, skipped).

    Rows: image, label, loss, correct, block, stage, position, index (forward order), kind, n,
    method, converged, note, max_real, min_real and the metrics, nan_reason, seconds, and the
    eigenvalues (values_re, values_im) when ``keep_values``.

    With ``error_bounds`` the dense path solves with left and right eigenvectors
    (:func:`~resdyn.metrics.eigenvalues_with_bounds`, a few times the time of eigenvalues
    alone) and the rows also hold each kept eigenvalue's error bound p·ε·‖J‖_F / |yᴴx|
    (``values_err``; 0 for the exact zeros of rows the output ReLU kills; empty on the Arnoldi
    path).
    """
    run = current()
    net, unit_list = model.load(), model.units(input_shape)
    acts = capture(net, run.put(x[None]), unit_list)
    logits = acts.logits.double()
    loss = float(F.cross_entropy(logits, run.put(torch.tensor([label]))))
    correct = bool(int(logits.argmax(1)) == label)
    rows = []
    for index, u in enumerate(unit_list):
        row = {"image": image, "label": label, "loss": loss, "correct": correct, "block": u.name,
               "stage": u.stage, "position": u.position, "index": index, "kind": u.kind,
               "n": u.n_in}
        if u.in_shape != u.out_shape:
            rows.append({**row, "method": "skipped", "converged": False, "note":
                         f"not square ({'x'.join(map(str, u.in_shape))} -> "
                         f"{'x'.join(map(str, u.out_shape))}): no eigenvalues",
                         **_nan_metrics({m: "the block is not square, it has no eigenvalues"
                                         for m in METRICS}), "seconds": 0.0,
                         "values_re": [], "values_im": [],
                         **({"values_err": []} if error_bounds else {})})
            continue
        if u.name not in blocks:
            continue
        op = unit_jacobian(u, acts.inputs[u.name][0], dtype=run.dtype)
        err = np.zeros(0)
        if u.n_in <= dense_max:
            if error_bounds:
                lam, err, extra = _dense_with_bounds(op)
            else:
                res = eigenvalues(op, method="dense")
                lam = np.asarray(res.values)
                extra = {"method": res.method, "converged": bool(res.converged),
                         "note": res.message, "seconds": res.seconds}
            m = eigen_summary(lam)
            metrics = {"max_real": float(lam.real.max()), "min_real": float(lam.real.min()),
                       "share_negative": m.share_negative, "stiffness_signed": m.stiffness_signed,
                       "stiffness_ratio": m.stiffness_ratio, "spectral_radius": m.spectral_radius,
                       "nan_reason": m.nan_reason}
            kept = lam if keep_values else np.zeros(0, complex)
            err = err if keep_values else np.zeros(0)
        else:
            top = eigenvalues(op, k=k, which="LR", method="arpack", seed=seed)
            bottom = eigenvalues(op, k=k, which="SR", method="arpack", seed=seed)
            hi, lo = float(top.values.real.max()), float(bottom.values.real.min())
            # the extremes fix min and max Re λ, so the signed index (and why it is NaN) too
            ends = eigen_summary(np.concatenate([top.values, bottom.values]))
            where = f"Arnoldi path, n = {u.n_in} > dense_max = {dense_max}"
            why = {**{name: f"{need} ({where})" for name, need in NEEDS_ALL.items()},
                   **{name: w for name, w in _split_reasons(ends.nan_reason).items()
                      if name == "stiffness_signed"}}
            metrics = {**_nan_metrics(why), "max_real": hi, "min_real": lo,
                       "stiffness_signed": ends.stiffness_signed}
            extra = {"method": "arpack", "converged": bool(top.converged and bottom.converged),
                     "note": f"largest real parts: {top.message}; smallest: {bottom.message}",
                     "seconds": top.seconds + bottom.seconds}
            kept = np.concatenate([top.values, bottom.values]) if keep_values else \
                np.zeros(0, complex)
        rows.append({**row, **extra, **metrics, "values_re": kept.real.tolist(),
                     "values_im": kept.imag.tolist(),
                     **({"values_err": err.tolist()} if error_bounds else {})})
    return pd.DataFrame(rows)


def _nan_metrics(why: dict[str, str]) -> dict:
    """Every metric NaN; ``nan_reason`` says why for each metric named in ``why``."""
    nan = float("nan")
    return {"max_real": nan, "min_real": nan, "share_negative": nan, "stiffness_signed": nan,
            "stiffness_ratio": nan, "spectral_radius": nan,
            "nan_reason": "; ".join(f"{m}: {w}" for m, w in why.items())}


def _split_reasons(text: str) -> dict[str, str]:
    """{metric: why} of a ``nan_reason`` ("metric: why; metric: why")."""
    return dict(part.split(": ", 1) for part in text.split("; ") if part)


def _dense_with_bounds(op: LinearOperator) -> tuple[np.ndarray, np.ndarray, dict]:
    """All eigenvalues of J with their error bounds, sorted as :func:`eigenvalues` sorts them
    (descending real part, then descending imaginary part).

    A zero row of J (known killed by the output ReLU, or found zero) makes J block-triangular
    after a permutation: those rows give exact zeros (bound 0) and the others are the
    eigenvalues of J without those rows and columns, as in the dense solver.
    """
    t0 = time.perf_counter()
    full = op.dense().to("cpu", torch.float64).numpy()
    n = full.shape[0]
    keep = (full != 0).any(axis=1)
    if op.zero_rows is not None:
        keep &= ~op.zero_rows.cpu().numpy()
    lam, err = eigenvalues_with_bounds(full[np.ix_(keep, keep)])
    zeros = n - int(keep.sum())
    lam = np.concatenate([lam, np.zeros(zeros, np.complex128)])
    err = np.concatenate([err, np.zeros(zeros)])
    order = np.lexsort((-lam.imag, -lam.real))
    return lam[order], err[order], {
        "method": "dense", "converged": True, "seconds": time.perf_counter() - t0,
        "note": f"geev with left and right eigenvectors of a {n - zeros}x{n - zeros} block, "
                f"{zeros} exact zeros; error bounds {EIG_ROUND_OFF_FACTOR:g}·ε·‖J‖_F / |yᴴx|"}


# ---------------------------------------------------------------- the study

def _plan(ctx: Context) -> Plan:
    cfg: StiffnessConfig = ctx.config
    data = ctx.data
    images = [int(i) for i in data.choose(cfg.images, cfg.seed)]
    tasks = [Task("stiffness", f"img{i}", stiffness_task,
                  dict(model=ctx.model_ref, input_shape=data.input_shape, x=data.x[i].clone(),
                       label=int(data.y[i]), image=i, blocks=cfg.blocks, dense_max=cfg.dense_max,
                       k=cfg.k, seed=cfg.seed, keep_values=j < cfg.keep_values))
             for j, i in enumerate(images)]
    return Plan(tasks, {"images": images})


STIFFNESS = Study(
    name="stiffness", title="Stiffness study", config=StiffnessConfig, plan=_plan,
    resolve=resolve,
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
    claims=stats.CLAIMS,
    notes=stats.notes,
)
