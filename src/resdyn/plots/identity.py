"""Figures of the identity study and its depth sweep (paper 002, Figs. 1-7), from tidy tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .common import log_y, plt, save

SECTION_COLOURS = ["#2e86c1", "#e67e22", "#27ae60", "#8e44ad", "#c0392b"]


def blocks(per_block: pd.DataFrame, path: Path, title: str) -> Path:
    """Figs. 2 and 5 saved to ``path`` (see :func:`blocks_figure`)."""
    return save(blocks_figure(per_block, title), path)


def blocks_figure(per_block: pd.DataFrame, title: str):
    """Figs. 2 and 5: absolute and scaled perturbation per block along each section.

    One network: the mean over images with its 10-90 % band. A sweep (a ``blocks`` column):
    one line per depth L, coloured from shallow to deep. Rows: absolute, scaled; columns: the
    sections in ``section_index`` order. Returns the matplotlib Figure (not saved).
    """
    sections = list(dict.fromkeys(per_block.sort_values("section_index")["section"]))
    fig, axes = plt.subplots(2, len(sections), figsize=(3.6 * len(sections), 6), squeeze=False,
                             sharex=True)
    sweep = "blocks" in per_block.columns
    depths = sorted(per_block["blocks"].unique()) if sweep else [None]
    cmap = plt.get_cmap("viridis")
    for j, section in enumerate(sections):
        sec = per_block[per_block["section"] == section]
        for i, (col, label) in enumerate((("abs", "‖x_(l+1) − x_l‖"),
                                          ("scaled", "‖x_(l+1) − x_l‖ / ‖x_l‖"))):
            ax = axes[i][j]
            for k, depth in enumerate(depths):
                rows = sec[sec["blocks"] == depth] if sweep else sec
                rows = rows.sort_values("position")
                colour = cmap(k / max(1, len(depths) - 1)) if sweep else SECTION_COLOURS[0]
                ax.plot(rows["pos_scaled"], rows[f"{col}_mean"], marker="." if len(rows) < 40
                        else None, lw=1.2, color=colour, label=f"L = {depth}" if sweep else "mean")
                if not sweep:
                    ax.fill_between(rows["pos_scaled"], rows[f"{col}_q10"], rows[f"{col}_q90"],
                                    color=colour, alpha=0.2, lw=0, label="10–90 % of images")
                    down = rows[rows["shortcut"] == "projection"]
                    ax.scatter(down["pos_scaled"], down[f"{col}_mean"], s=60, marker="s",
                               facecolors="none", edgecolors="#c0392b",
                               label="down-sampling block (against its projection)")
            ax.set_title(f"{section}", fontsize=10)
            if j == 0:
                ax.set_ylabel(label)
            if i == 1:
                ax.set_xlabel("position in section (scaled to [0, 1])")
            ax.set_ylim(bottom=0)
    handles, labels = axes[0][0].get_legend_handles_labels()
    one = len(sections) == 1  # a narrow figure: the legend stacks below the panels
    fig.legend(handles, labels, loc="lower center", fontsize=8, ncols=1 if one else 3)
    fig.suptitle(f"{title}: perturbation from identity per block")
    fig.tight_layout(rect=(0, 0.13 if one else 0.05, 1, 0.95))
    return fig


def test_error(training: pd.DataFrame, path: Path, title: str) -> Path:
    """Fig. 1: test error against blocks per section."""
    t = training.sort_values("blocks")
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(t["blocks"], 100 * (1 - t["test_accuracy"]), marker="o", color="#c0392b")
    ax.set_xscale("log", base=2)
    ax.set_xticks(t["blocks"], [str(v) for v in t["blocks"]])
    ax.set_xlabel("blocks per section L")
    ax.set_ylabel("test error (%)")
    ax.set_title(f"{title}: test error per depth", fontsize=10)
    ax.grid(alpha=0.3)
    return save(fig, path)


def _sections(dist: pd.DataFrame) -> list[str]:
    names = list(dict.fromkeys(dist[dist["section"] != "total"]
                               .sort_values("section_index")["section"]))
    return names + ["total"]


def distances(dist: pd.DataFrame, path: Path, title: str, scaled: bool,
              fits: pd.DataFrame | None = None, eps: float | None = None) -> Path:
    """Figs. 3-4 (``scaled`` False) or 6-7: distance and mean perturbation against depth L.

    With ``scaled``, the mean panel is log-log with the fitted c·L^(−p) per section and ε.
    """
    d_col, m_col = ("d_scaled", "mean_scaled") if scaled else ("d", "mean")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for k, section in enumerate(_sections(dist)):
        rows = dist[dist["section"] == section].sort_values("blocks")
        colour = "k" if section == "total" else SECTION_COLOURS[k % len(SECTION_COLOURS)]
        left.plot(rows["blocks"], rows[d_col], marker="o", color=colour, label=section)
        right.plot(rows["blocks"], rows[m_col], marker="o", color=colour, label=section)
        if fits is not None and section in set(fits["section"]):
            f = fits[fits["section"] == section].iloc[0]
            grid = np.geomspace(rows["blocks"].min(), rows["blocks"].max(), 50)
            right.plot(grid, f["c"] * grid ** (-f["p"]), ls=":", color=colour, lw=1,
                       label=f"fit p = {f['p']:.2f}")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ticks = sorted(dist["blocks"].unique())
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("blocks per section L")
        ax.grid(alpha=0.3)
    what = "scaled " if scaled else ""
    left.set_ylabel(f"{what}computational distance")
    right.set_ylabel(f"mean {what}perturbation (distance / L)")
    if scaled:
        log_y(right)
        if eps is not None:
            right.axhline(eps, color="grey", ls="--", lw=1, label=f"ε = {eps:g}")
    left.legend(fontsize=8)
    right.legend(fontsize=7, ncols=2)
    fig.suptitle(f"{title}: {what}computational distance and mean {what}perturbation per depth")
    fig.tight_layout()
    return save(fig, path)
