"""Figures of the stability study (paper 000, Figs. 1, 3-5), drawn from the study's tidy tables.

Every function takes DataFrames and a path, draws, saves a PNG and returns the path: no
computation beyond grouping and averaging happens here. Fig. 2 (bin shares) is shared with the
spectra study: :func:`resdyn.plots.common.bin_shares`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .common import log_y, plt, save


def _scree(ax, rows: pd.DataFrame, title: str) -> None:
    for _, r in rows.iterrows():
        v = np.asarray(r["values"], dtype=float)
        ax.plot(np.arange(1, v.size + 1), v, lw=1, alpha=0.75, label=f"image {r['image']}")
    ax.axhline(1.0, color="k", lw=0.6, ls="--", label="σ = 1")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("index (σ descending)", fontsize=9)
    ax.tick_params(labelsize=8)


def scree_grid(spectra: pd.DataFrame, picks: list[list[str]], row_titles: list[str],
               path: Path, model: str) -> Path:
    """Fig. 1: scree plots of chosen units/stages, one line per image, overlaid.

    One legend for the whole figure (the images are the same in every panel).
    """
    n_rows, n_cols = len(picks), max(len(p) for p in picks)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.6 * n_cols, 2.8 * n_rows + 0.6),
                             squeeze=False)
    for i, names in enumerate(picks):
        for j in range(n_cols):
            ax = axes[i][j]
            if j >= len(names):
                ax.axis("off")
                continue
            rows = spectra[spectra["name"] == names[j]]
            _scree(ax, rows, f"{row_titles[i]}: {names[j]}")
            ax.set_ylabel("σ", fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.suptitle(f"{model}: singular values of unit and stage Jacobians, images overlaid")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 8), fontsize=9,
               frameon=False)
    return save(fig, path)


def propagation(prop: pd.DataFrame, path: Path, model: str) -> Path:
    """Fig. 3: normalised magnitude of the propagated perturbation per unit, per image.

    One colour per image throughout; an image whose prediction the perturbation flipped is
    drawn dashed in that panel. One legend for the figure.
    """
    kinds = [("random-fgsm", "random (ℓ2 of FGSM)"), ("fgsm", "adversarial, FGSM"),
             ("random-pgd", "random (ℓ2 of PGD)"), ("pgd", "adversarial, PGD")]
    images = sorted(prop["image"].unique())
    colour = {im: plt.cm.tab10(i % 10) for i, im in enumerate(images)}
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.6), sharex=True, sharey=True)
    any_flipped = False
    for ax, (kind, title) in zip(axes.ravel(), kinds, strict=True):
        rows = prop[prop["perturbation"] == kind]
        for image, r in rows.groupby("image"):
            flipped = bool(r["flipped"].iloc[0])
            any_flipped |= flipped
            ax.plot(r["index"], r["out_norm"], marker=".", ms=3, lw=1, color=colour[image],
                    ls="--" if flipped else "-")
        log_y(ax)
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=8)
        _stage_lines(ax, rows)
    for ax in axes[:, 0]:
        ax.set_ylabel("‖δx_k‖ / √size", fontsize=9)
    for ax in axes[1]:
        ax.set_xlabel("residual unit (dotted: stage boundaries)", fontsize=9)
    handles = [plt.Line2D([], [], color=colour[im], lw=1.5, label=f"image {im}") for im in images]
    if any_flipped:
        handles.append(plt.Line2D([], [], color="grey", ls="--", label="dashed: prediction flipped"))
    fig.suptitle(f"{model}: propagated perturbations")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), fontsize=9,
               frameon=False)
    return save(fig, path)


def _stage_lines(ax, rows: pd.DataFrame) -> None:
    first = rows.drop_duplicates("unit")
    for k in np.flatnonzero(np.diff(first["stage"].to_numpy())) + 0.5:
        ax.axvline(first["index"].iloc[0] + k, color="grey", lw=0.6, ls=":")


def growth_and_projections(prop: pd.DataFrame, proj: pd.DataFrame, path: Path, model: str) -> Path:
    """Fig. 4: predicted vs actual growth per unit; projections α_i against σ_i.

    The projection panels wrap at three per row, so their labels stay readable.
    """
    units_ = list(dict.fromkeys(proj["unit"]))
    per_row = 2 if len(units_) == 4 else min(3, max(1, len(units_)))
    below = -(-len(units_) // per_row)
    fig = plt.figure(figsize=(12, 3.6 * (1 + below)))
    grid = fig.add_gridspec(1 + below, per_row)
    ax = fig.add_subplot(grid[0, :])
    for kind, colour in (("fgsm", "#c0392b"), ("random-fgsm", "#2e86c1")):
        rows = prop[prop["perturbation"] == kind]
        agg = rows.groupby("index")[["growth", "predicted_growth"]].mean()
        ax.plot(agg.index, agg["growth"], color=colour, marker="o", lw=1.2, label=f"{kind}: actual")
        ax.plot(agg.index, agg["predicted_growth"], color=colour, marker="x", ls="--", lw=1,
                label=f"{kind}: predicted by J_k")
    _stage_lines(ax, prop[prop["perturbation"] == "fgsm"])
    ax.axhline(1.0, color="k", lw=0.5)
    ax.set_xlabel("residual unit (dotted: stage boundaries)", fontsize=10)
    ax.set_ylabel("‖δx_out‖ / ‖δx_in‖\n(mean over images)", fontsize=10)
    ax.tick_params(labelsize=9)
    ax.legend(fontsize=9)
    image = proj["image"].min()
    for j, name in enumerate(units_):
        r = proj[(proj["unit"] == name) & (proj["image"] == image)].sort_values("index")
        a = fig.add_subplot(grid[1 + j // per_row, j % per_row])
        i = r["index"].to_numpy(dtype=float)  # one bar per i, drawn as one outline (thousands
        edges = np.r_[i - 0.5, i[-1] + 0.5]    # of bar patches took seconds per figure)
        a.stairs(np.abs(r["alpha"].to_numpy()), edges, fill=True, color="#7f8c8d")
        a.set_title(f"{name} (image {image})", fontsize=10)
        a.set_xlabel("i (σ descending)", fontsize=9)
        a.set_ylabel("|α_i| (grey bars)", fontsize=9)
        a.tick_params(labelsize=8)
        b = a.twinx()
        b.plot(r["index"], r["sigma"], color="#c0392b", lw=1.2)
        b.set_ylabel("σ_i", color="#c0392b", fontsize=9)
        b.tick_params(labelsize=8, colors="#c0392b")
    fig.suptitle(f"{model}: linear prediction of growth (top); FGSM perturbation on right "
                 f"singular vectors (below)")
    fig.tight_layout()
    return save(fig, path)


def interventions(skip: pd.DataFrame, interp: pd.DataFrame, path: Path, model: str) -> Path:
    """Fig. 5: scree plots for scaled skips (left); histograms of σ per interpolation t (right)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for _, r in skip.sort_values("alpha").iterrows():
        v = np.asarray(r["values"], dtype=float)
        left.plot(np.arange(1, v.size + 1), v, lw=1.2, label=f"α = {r['alpha']:g}")
    left.set_title(f"skip scaling: {skip['unit'].iloc[0]}", fontsize=9)
    left.set_xlabel("index")
    left.set_ylabel("σ")
    left.legend(fontsize=7)
    top = max(float(np.max(v)) for v in interp["values"])
    edges = np.linspace(0, top, 60)
    for _, r in interp.sort_values("t").iterrows():
        v = np.asarray(r["values"], dtype=float)
        right.hist(v[v > 1e-6 * max(1.0, v.max())], bins=edges, histtype="step", lw=1.2,
                   label=f"t = {r['t']:g}")
    right.set_title(f"weight interpolation θ̂(t) = tθ + (1−t)η: {interp['unit'].iloc[0]}", fontsize=9)
    right.set_xlabel("σ (zeros of the output ReLU left out)")
    right.set_ylabel("count")
    right.legend(fontsize=7)
    fig.suptitle(f"{model}: effect of unit architecture and weights on the spectrum")
    fig.tight_layout()
    return save(fig, path)
