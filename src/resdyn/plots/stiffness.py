"""Figures of the stiffness study (paper 003), drawn from its tidy tables."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from .common import log_y, plt, save

PANELS = (("share_negative", "share of Re λ < 0", "linear"),
          ("stiffness_signed", "signed SI = max Re λ / min Re λ", "symlog"),
          ("stiffness_ratio", "max |Re λ| / min |Re λ|", "log"),
          ("spectral_radius", "spectral radius", "linear"))


def nan_reasons(reasons, metric: str) -> set[str]:
    """The distinct reasons given for ``metric`` in ``nan_reason`` entries ("metric: why; ...")."""
    out = set()
    for text in reasons:
        for part in str(text or "").split("; "):
            name, _, why = part.partition(": ")
            if name == metric and why:
                out.add(why)
    return out


def _square(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["method"] != "skipped"]


def eigenvalue_planes(table: pd.DataFrame, path: Path, model: str) -> Path:
    """Eigenvalues of the first, middle and last analysed block, images overlaid."""
    sq = _square(table)
    kept = sq[sq["values_re"].map(len) > 0]
    blocks = list(dict.fromkeys(kept.sort_values("index")["block"]))
    picks = [blocks[0], blocks[len(blocks) // 2], blocks[-1]] if len(blocks) >= 3 else blocks
    picks = list(dict.fromkeys(picks))
    fig, axes = plt.subplots(1, max(1, len(picks)), figsize=(4.4 * max(1, len(picks)), 4.4),
                             squeeze=False)
    circle = np.exp(1j * np.linspace(0, 2 * np.pi, 400))
    for ax, block in zip(axes[0], picks, strict=False):
        rows = kept[kept["block"] == block]
        for r in rows.itertuples():
            ax.scatter(r.values_re, r.values_im, s=5, alpha=0.5, label=f"image {r.image}")
        ax.plot(circle.real, circle.imag, color="grey", lw=0.8)
        ax.axvline(0, color="k", lw=0.8)
        ax.axhline(0, color="k", lw=0.3)
        method = rows["method"].iloc[0]
        ax.set_title(f"{block} ({method}{', extremes only' if method == 'arpack' else ''})",
                     fontsize=9)
        ax.set_xlabel("Re λ")
        ax.set_aspect("equal", adjustable="datalim")
    axes[0][0].set_ylabel("Im λ")
    axes[0][-1].legend(fontsize=7, markerscale=2, loc="upper right")
    fig.suptitle(f"{model}: eigenvalues of block Jacobians (unit circle and Re λ = 0 drawn; "
                 "rows an output ReLU kills give exact zeros)")
    fig.tight_layout()
    return save(fig, path)


def metrics_along_depth(table: pd.DataFrame, path: Path, model: str) -> Path:
    """Median and 10-90 % band over images of each metric, per block in forward order."""
    sq = _square(table)
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5), sharex=True)
    for ax, (metric, label, scale) in zip(axes.ravel(), PANELS, strict=True):
        g = sq.groupby("index")[metric]
        med, lo, hi = g.median(), g.quantile(0.1), g.quantile(0.9)
        if med.isna().all():
            # one line per kind of reason: the same reason with other numbers is said once
            kinds = sorted({re.sub(r"-?\d+\.\d+(e[+-]?\d+)?", "x", r)
                            for r in nan_reasons(sq["nan_reason"], metric)})
            ax.text(0.5, 0.5, "undefined for every block:\n" + "\n".join(
                        textwrap.fill(r, 60) for r in kinds[:2]), ha="center",
                    va="center", transform=ax.transAxes, fontsize=8, color="#555")
            ax.set_title(label, fontsize=10)
            ax.set_yticks([])
            continue
        ax.fill_between(med.index, lo, hi, alpha=0.25, color="#2e86c1", lw=0)
        ax.plot(med.index, med, marker=".", color="#2e86c1")
        if scale == "log":
            log_y(ax)
        else:
            ax.set_yscale(scale)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
        first = sq.drop_duplicates("index").sort_values("index")
        for k in first["index"].to_numpy()[np.flatnonzero(np.diff(first["stage"].to_numpy())) + 1]:
            ax.axvline(k - 0.5, color="grey", lw=0.8, ls=":")
    for ax in axes[1]:
        ax.set_xlabel("block (forward order; dotted lines separate stages)")
    fig.suptitle(f"{model}: stiffness along the depth (median over images, 10–90 % band)")
    fig.tight_layout()
    return save(fig, path)


def last_block_scatter(table: pd.DataFrame, corr: pd.DataFrame, path: Path, model: str) -> Path:
    """Stiffness metrics of the last analysed block against per-image loss, with r and p.

    Shows the signed index and the share of Re λ < 0 (the paper's), or, where those are
    undefined or constant on this model, the next metrics that vary.
    """
    sq = _square(table)
    last = sq[sq["index"] == sq["index"].max()]
    # the paper's two metrics first; where one is undefined or constant here, the next ones
    usable = [m for m, *_ in PANELS
              if np.isfinite(last[m]).sum() >= 3 and np.ptp(last[m][np.isfinite(last[m])]) > 0]
    metrics = usable[:2] or ["stiffness_signed"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        ok = last[np.isfinite(last[metric])]
        colours = np.where(ok["correct"], "#2e86c1", "#c0392b")
        ax.scatter(ok[metric], ok["loss"], s=10, c=colours)
        row = corr[(corr["index"] == last["index"].iloc[0]) & (corr["metric"] == metric)
                   & (corr["level"] == "image") & (corr["target"] == "loss")]
        r = row.iloc[0] if len(row) else None
        stat = (f"r = {r['r']:+.2f}, p = {r['p']:.2g} (adjusted {r['p_adjusted']:.2g})"
                if r is not None and np.isfinite(r["r"]) else "r undefined")
        ax.set_title(f"{metric}: {stat}", fontsize=9)
        ax.set_xlabel(metric)
        log_y(ax)
        ax.set_ylabel("per-image loss (red: misclassified)")
    fig.suptitle(f"{model}: last block {last['block'].iloc[0]}, stiffness vs loss")
    fig.tight_layout()
    return save(fig, path)
