"""Figures of the stability study (paper 000, Figs. 1, 3-5), drawn from the study's tidy tables.

Every function takes DataFrames and a path, draws, saves a PNG and returns the path: no
computation beyond grouping and averaging happens here. Fig. 2 (bin shares) is shared with the
spectra study: :func:`resdyn.plots.common.bin_shares`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .common import plt, save


def _scree(ax, rows: pd.DataFrame, title: str) -> None:
    for _, r in rows.iterrows():
        v = np.asarray(r["values"], dtype=float)
        ax.plot(np.arange(1, v.size + 1), v, lw=1, alpha=0.75, label=f"image {r['image']}")
    ax.axhline(1.0, color="k", lw=0.6, ls="--")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("index", fontsize=8)
    ax.tick_params(labelsize=7)


def scree_grid(spectra: pd.DataFrame, picks: list[list[str]], row_titles: list[str],
               path: Path, model: str) -> Path:
    """Fig. 1: scree plots of chosen units/stages, one line per image, overlaid."""
    n_rows, n_cols = len(picks), max(len(p) for p in picks)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.4 * n_cols, 2.6 * n_rows), squeeze=False)
    for i, names in enumerate(picks):
        for j in range(n_cols):
            ax = axes[i][j]
            if j >= len(names):
                ax.axis("off")
                continue
            rows = spectra[spectra["name"] == names[j]]
            _scree(ax, rows, f"{row_titles[i]}: {names[j]}")
            ax.set_ylabel("σ", fontsize=8)
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"{model}: singular values of unit and stage Jacobians, images overlaid")
    fig.tight_layout()
    return save(fig, path)


def propagation(prop: pd.DataFrame, path: Path, model: str) -> Path:
    """Fig. 3: normalised magnitude of the propagated perturbation per unit, per image."""
    kinds = [("random-fgsm", "random (ℓ2 of FGSM)"), ("fgsm", "adversarial, FGSM"),
             ("random-pgd", "random (ℓ2 of PGD)"), ("pgd", "adversarial, PGD")]
    fig, axes = plt.subplots(2, 2, figsize=(11, 6), sharex=True)
    for ax, (kind, title) in zip(axes.ravel(), kinds, strict=True):
        rows = prop[prop["perturbation"] == kind]
        for image, r in rows.groupby("image"):
            flipped = bool(r["flipped"].iloc[0])
            ax.plot(r["index"], r["out_norm"], marker=".", lw=1,
                    label=f"image {image}{' (flipped)' if flipped else ''}")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("‖δx_k‖ / √size", fontsize=8)
        _stage_lines(ax, rows)
        ax.legend(fontsize=6)
    for ax in axes[1]:
        ax.set_xlabel("residual unit")
    fig.suptitle(f"{model}: propagated perturbations")
    fig.tight_layout()
    return save(fig, path)


def _stage_lines(ax, rows: pd.DataFrame) -> None:
    first = rows.drop_duplicates("unit")
    for k in np.flatnonzero(np.diff(first["stage"].to_numpy())) + 0.5:
        ax.axvline(first["index"].iloc[0] + k, color="grey", lw=0.6, ls=":")


def growth_and_projections(prop: pd.DataFrame, proj: pd.DataFrame, path: Path, model: str) -> Path:
    """Fig. 4: predicted vs actual growth per unit; projections α_i against σ_i."""
    units_ = list(dict.fromkeys(proj["unit"]))
    fig = plt.figure(figsize=(3.2 * max(4, len(units_)), 7))
    grid = fig.add_gridspec(2, max(1, len(units_)))
    ax = fig.add_subplot(grid[0, :])
    for kind, colour in (("fgsm", "#c0392b"), ("random-fgsm", "#2e86c1")):
        rows = prop[prop["perturbation"] == kind]
        agg = rows.groupby("index")[["growth", "predicted_growth"]].mean()
        ax.plot(agg.index, agg["growth"], color=colour, marker="o", lw=1.2, label=f"{kind}: actual")
        ax.plot(agg.index, agg["predicted_growth"], color=colour, marker="x", ls="--", lw=1,
                label=f"{kind}: predicted by J_k")
    _stage_lines(ax, prop[prop["perturbation"] == "fgsm"])
    ax.axhline(1.0, color="k", lw=0.5)
    ax.set_xlabel("residual unit")
    ax.set_ylabel("‖δx_out‖ / ‖δx_in‖ (mean over images)")
    ax.legend(fontsize=7)
    image = proj["image"].min()
    for j, name in enumerate(units_):
        r = proj[(proj["unit"] == name) & (proj["image"] == image)]
        a = fig.add_subplot(grid[1, j])
        a.bar(r["index"], np.abs(r["alpha"]), width=1.0, color="#7f8c8d")
        a.set_title(f"{name} (image {image})", fontsize=8)
        a.set_xlabel("i (σ descending)", fontsize=8)
        a.set_ylabel("|α_i|", fontsize=8)
        b = a.twinx()
        b.plot(r["index"], r["sigma"], color="#c0392b", lw=1)
        b.set_ylabel("σ_i", color="#c0392b", fontsize=8)
    fig.suptitle(f"{model}: linear prediction of growth; FGSM perturbation on right singular vectors")
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
