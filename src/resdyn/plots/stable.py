"""Figures of the stable-architectures study (paper 004), drawn from its tidy tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .common import plt, save

START_COLOURS = ["#2e86c1", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085"]


def trajectories(traj: pd.DataFrame, eig: pd.DataFrame, path: Path, activation: str) -> Path:
    """Fig. 1: one panel per (system, K): Euler (dashed, dots) and reference (solid) paths."""
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
    return save(fig, path)
