"""Figures of the stable-architectures study (paper 004), drawn from its tidy tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .common import plt, save

START_COLOURS = ["#2e86c1", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085"]


def trajectories(traj: pd.DataFrame, eig: pd.DataFrame, path: Path, activation: str) -> Path:
    """Fig. 1 saved to ``path`` (see :func:`trajectories_figure`)."""
    return save(trajectories_figure(traj, eig, activation), path)


def trajectories_figure(traj: pd.DataFrame, eig: pd.DataFrame, activation: str):
    """Fig. 1: one panel per (system, K): Euler (dashed, dots) and reference (solid) paths.

    Rows: the linear then the nonlinear system; columns: the K in table order. In each panel,
    per start (in start order): the reference path, the Euler path, the start marker.
    Returns the matplotlib Figure (not saved).
    """
    names = list(dict.fromkeys(traj["K"]))
    systems = (("linear", "ẏ = K y"), ("nonlinear", f"ẏ = {activation}(K y + b)"))
    fig, axes = plt.subplots(2, len(names), figsize=(3.8 * len(names), 7.4), squeeze=False)
    for i, (system, label) in enumerate(systems):
        for j, name in enumerate(names):
            ax = axes[i][j]
            rows = traj[(traj["K"] == name) & (traj["system"] == system)]
            for s, g in rows.groupby("start"):
                colour = START_COLOURS[int(s) % len(START_COLOURS)]
                ref = g[g["integrator"] == "reference"]
                eul = g[g["integrator"] == "euler"]
                ax.plot(ref["y0"], ref["y1"], color=colour, lw=1.4)
                ax.plot(eul["y0"], eul["y1"], color=colour, lw=0.9, ls="--", marker=".",
                        ms=3)
                ax.plot(ref["y0"].iloc[:1], ref["y1"].iloc[:1], "o", color=colour, ms=5)
            lam = eig[eig["K"] == name]
            lams = ", ".join(f"{r.re:+.3g}{r.im:+.3g}i" for r in lam.itertuples())
            ax.set_title(f"{name} ({label}); λ: {lams}", fontsize=8)
            ax.set_xlabel("y₁")
            ax.set_ylabel("y₂")
            ax.set_aspect("equal", adjustable="datalim")
            ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color="k", lw=1.4, label="reference integrator"),
               plt.Line2D([], [], color="k", lw=0.9, ls="--", marker=".", label="forward Euler"),
               plt.Line2D([], [], color="k", marker="o", ls="", label="start")]
    fig.legend(handles=handles, loc="upper right", fontsize=8)
    fig.suptitle("Trajectories from nearby starts (paper 004, Fig. 1)")
    fig.tight_layout(rect=(0, 0, 0.9, 0.96))
    return fig


FAMILY_COLOURS = {"euler": "#c0392b", "antisymmetric": "#2e86c1", "hamiltonian": "#27ae60"}
#: (column of the comparison table, panel title, reference line) per panel of the figure
COMPARISON_PANELS = (("test_accuracy", "test accuracy", 0.0),
                     ("branch_max_re", "median max Re λ of the residual branch", 0.0),
                     ("growth_fgsm", "FGSM growth, first input → last output", 1.0),
                     ("growth_random_fgsm", "random (same ℓ2) growth", 1.0))


def comparison(table: pd.DataFrame, path: Path) -> Path:
    """The comparison figure saved to ``path`` (see :func:`comparison_figure`)."""
    return save(comparison_figure(table), path)


def comparison_figure(table: pd.DataFrame):
    """Bars per data set and network: accuracy, max Re λ of the branch, perturbation growth.

    One panel per column of :data:`COMPARISON_PANELS`; in each, one bar container per network
    (in table order), one bar per data set. Returns the matplotlib Figure (not saved).
    """
    datasets = list(dict.fromkeys(table["data"]))
    families = list(dict.fromkeys(table["family"]))
    panels = COMPARISON_PANELS
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8))
    x = np.arange(len(datasets))
    width = 0.8 / max(1, len(families))
    for ax, (col, label, ref) in zip(axes, panels, strict=True):
        for j, fam in enumerate(families):
            rows = table[table["family"] == fam].set_index("data").reindex(datasets)
            ax.bar(x + (j - (len(families) - 1) / 2) * width, rows[col], width,
                   color=FAMILY_COLOURS.get(fam, "grey"), label=fam)
        ax.set_xticks(x, datasets)
        ax.set_title(label, fontsize=9)
        ax.axhline(ref, color="k", lw=0.6)
        if ref:  # growth: bars from 1 would hide the difference; show the range around 1
            values = table[col].to_numpy(float)
            span = max(abs(values - ref).max(), 0.05) * 1.2
            ax.set_ylim(max(0.0, ref - span), ref + span)
        ax.grid(alpha=0.3, axis="y")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=8)
    fig.suptitle("Standard (Euler), antisymmetric and Hamiltonian networks of matched depth, "
                 "width and budget")
    fig.tight_layout(rect=(0, 0, 0.92, 0.95))
    return fig


def boundaries(table: pd.DataFrame, path: Path, order=()) -> Path:
    """Decision regions of each network on each 2-D data set (in ``order``), test points on top."""
    if table.empty:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.text(0.5, 0.5, "no 2-D data set in this comparison", ha="center", va="center")
        ax.axis("off")
        return save(fig, path)
    datasets = [d for d in order if d in set(table["data"])] or list(dict.fromkeys(table["data"]))
    present = set(table["family"])
    families = [f for f in FAMILY_COLOURS if f in present] + sorted(present - set(FAMILY_COLOURS))
    fig, axes = plt.subplots(len(datasets), len(families), squeeze=False,
                             figsize=(3.6 * len(families), 3.5 * len(datasets)))
    for i, data in enumerate(datasets):
        for j, fam in enumerate(families):
            ax = axes[i][j]
            rows = table[(table["data"] == data) & (table["family"] == fam)]
            grid, pts = rows[rows["kind"] == "grid"], rows[rows["kind"] == "point"]
            n = int(round(len(grid) ** 0.5))
            classes = int(max(grid["cls"].max(), pts["cls"].max())) + 1
            ax.contourf(grid["x"].to_numpy().reshape(n, n), grid["y"].to_numpy().reshape(n, n),
                        grid["cls"].to_numpy().reshape(n, n), levels=np.arange(classes + 1) - 0.5,
                        cmap="tab10", vmin=0, vmax=9, alpha=0.35)
            ax.scatter(pts["x"], pts["y"], c=pts["cls"], cmap="tab10", vmin=0, vmax=9, s=4)
            ax.set_title(f"{data}: {fam}", fontsize=9)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("Decision regions (test points on top)")
    fig.tight_layout()
    return save(fig, path)
