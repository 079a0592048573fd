"""What every study's figures share: figures without pyplot, saving, the singular-value bin
colours.

Figures are plain :class:`matplotlib.figure.Figure` objects saved to PNG and never shown, made
without pyplot's global state: importing resdyn never changes the user's backend, so a notebook
keeps its inline figures and a script with a display opens no window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import cm, colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter


class _Figures:
    """The few pyplot names the plot modules use, as stateless functions on Figure objects."""

    Line2D = Line2D
    NullFormatter = NullFormatter
    cm = cm
    rcParams = matplotlib.rcParams

    @staticmethod
    def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None,
                 **kwargs: Any) -> tuple[Figure, Any]:
        fig = Figure(figsize=figsize)
        return fig, fig.subplots(nrows, ncols, **kwargs)

    @staticmethod
    def figure(figsize: tuple[float, float] | None = None) -> Figure:
        return Figure(figsize=figsize)

    @staticmethod
    def get_cmap(name: str):
        return colormaps[name]


plt = _Figures()

BIN_COLOURS = {"n_above": ("σ > 1.01", "#c0392b"), "n_plateau": ("0.99 ≤ σ ≤ 1.01", "#2e86c1"),
               "n_below": ("0 < σ < 0.99", "#e67e22"), "n_zero": ("σ = 0", "#27ae60")}


def log_y(ax) -> None:
    """A log y axis in plain numbers without crowded minor labels (such as 2.6×10⁰): labelled at
    1, 2 and 5 times powers of ten over up to three decades, at powers of ten beyond.

    Call it after plotting, so the data's range is known.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    decades = np.log10(hi / lo) if lo > 0 and hi > lo else 0.0
    subs = (1.0, 2.0, 5.0) if decades <= 3 else (1.0,)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def common_prefix(names: list[str]) -> str:
    """The dotted module path all ``names`` start with ("encoder.layers."), "" if none or one."""
    if len(names) < 2:
        return ""
    parts = [n.split(".") for n in names]
    keep = 0
    while all(len(p) > keep + 1 and p[keep] == parts[0][keep] for p in parts):
        keep += 1
    return ".".join(parts[0][:keep]) + "." if keep else ""


def bin_shares(spectra: pd.DataFrame, path: Path, model: str) -> Path:
    """Fig. 2: per unit, mean share of σ above / on the plateau / below / at zero.

    Units only; stages where the table holds no unit. Bars are labelled with the names.
    """
    u = spectra[spectra["kind"] != "stage"]
    if u.empty:
        u = spectra
    order = list(dict.fromkeys(u["name"]))
    counts = u.groupby("name", sort=False)[list(BIN_COLOURS)].sum()
    shares = counts.div(counts.sum(axis=1), axis=0).loc[order]
    fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(order) + 2), 3.6))
    bottom = np.zeros(len(order))
    for col, (label, colour) in BIN_COLOURS.items():
        ax.bar(range(len(order)), shares[col], bottom=bottom, color=colour, label=label, width=0.85)
        bottom += shares[col].to_numpy()
    stages = u.drop_duplicates("name").set_index("name").loc[order, "stage"].to_numpy()
    for k in np.flatnonzero(np.diff(stages)) + 0.5:
        ax.axvline(k, color="k", lw=0.8)
    prefix = common_prefix(order)
    ax.set_xticks(range(len(order)), [n[len(prefix):] for n in order], rotation=90,
                  fontsize=6 if len(order) > 12 else 8)
    ax.set_xlabel("residual unit (forward order; lines separate stages)"
                  + (f"; names after {prefix}" if prefix else ""))
    ax.set_ylabel("share of singular values")
    ax.set_xlim(-0.5, len(order) - 0.5)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"{model}: distribution of singular values per unit (mean over images)")
    return save(fig, path)
