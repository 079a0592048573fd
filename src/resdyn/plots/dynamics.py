"""Figures of the dynamics study: exponents against depth, alignment of residual Jacobians, and
σ₁(J_R) against depth over a family of networks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .common import common_prefix, log_y, plt, save

TOP = 3  # exponents drawn (the table holds k)


def exponents(ly: pd.DataFrame, err: pd.DataFrame, path: Path, model: str) -> Path:
    """λ_1..λ_TOP against depth, exact solid and QR dashed (median over images; −∞ left out,
    counted in the table's n_zero), and |QR − exact| per depth on a log axis."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    med = (ly[np.isfinite(ly["exponent"])].groupby(["path", "i", "depth"])["exponent"].median()
           .reset_index())
    for i in range(1, TOP + 1):
        for p, style in (("exact", "-"), ("qr", "--")):
            d = med[(med["path"] == p) & (med["i"] == i)]
            left.plot(d["depth"], d["exponent"], style, color=colours[i - 1], marker=".",
                      label=f"λ{i} {'exact' if p == 'exact' else 'QR'}")
    left.axhline(0, color="k", lw=0.8)
    _stage_lines(left, ly)
    left.set_xlabel("depth l (units composed; dotted: stage boundaries)")
    left.set_ylabel("λ_i(l) = log σ_i / l")
    left.legend(fontsize=7, ncols=2)
    for i in range(1, TOP + 1):
        d = err[(err["i"] == i) & (err["error"] > 0)]
        right.plot(d["depth"], d["error"], color=colours[i - 1], marker=".", label=f"λ{i}")
    if (err["error"] > 0).any():
        log_y(right)
    right.set_xlabel("depth l")
    right.set_ylabel("|λ_i(QR) − λ_i(exact)| (median over images)")
    right.legend(fontsize=8)
    fig.suptitle(f"{model}: finite-time Lyapunov exponents across depth")
    fig.tight_layout()
    return save(fig, path)


def _stage_lines(ax, ly: pd.DataFrame) -> None:
    d = ly.drop_duplicates("depth").sort_values("depth")
    for depth in d["depth"].to_numpy()[np.flatnonzero(np.diff(d["stage"].to_numpy())) + 1]:
        ax.axvline(depth - 0.5, color="grey", ls=":", lw=0.8)


def alignment(pairs: pd.DataFrame, res: pd.DataFrame, path: Path, model: str) -> Path:
    """Left: the depth × depth overlap matrix of top-k left subspaces of the first image (blank
    where widths differ, 1 on the diagonal); right: |⟨u₁, v₁⟩| per unit, median over images."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), width_ratios=(1, 1.3))
    names = list(dict.fromkeys(res["unit"]))
    m = np.full((len(names), len(names)), np.nan)
    np.fill_diagonal(m, 1.0)
    if len(pairs):
        first = pairs[pairs["image"] == pairs["image"].iloc[0]]
        for r in first.itertuples():
            m[r.a_index, r.b_index] = r.left
        baseline = float(first["random"].median())
    else:
        baseline = float("nan")
    off = m[~np.eye(len(names), dtype=bool)]
    top = float(np.nanmax(off)) if np.isfinite(off).any() else 1.0
    im = left.imshow(m, vmin=0, vmax=top, cmap="viridis")  # the diagonal (1) saturates
    fig.colorbar(im, ax=left, fraction=0.046,
                 label="overlap ‖UₐᵀU_b‖²_F / k (diagonal 1, clipped)")
    left.set_xlabel("unit b (forward order)")
    left.set_ylabel("unit a")
    left.set_title(f"top-k left subspaces of J_R (random: {baseline:.3g})", fontsize=9)
    med = res.groupby("unit", sort=False)["align1"].median().reindex(names)
    prefix = common_prefix(names)
    right.bar(range(len(names)), med.to_numpy(), color="#2e86c1")
    right.set_xticks(range(len(names)), [n[len(prefix):] for n in names], rotation=90,
                     fontsize=6 if len(names) > 12 else 8)
    right.set_ylim(0, 1)
    right.set_ylabel("|⟨u₁, v₁⟩| (median over images)")
    right.set_xlabel("residual unit" + (f" (names after {prefix})" if prefix else ""))
    fig.suptitle(f"{model}: alignment of residual Jacobians' singular vectors")
    fig.tight_layout()
    return save(fig, path)


def depth_law(law: pd.DataFrame, fit, path: Path, model: str) -> Path:
    """σ₁(J_R) against depth L on log-log axes with the fit σ₁ ≈ c·L^(−p) (``fit``, a
    :class:`~resdyn.metrics.PowerLaw`) and L^(−1) for scale."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if fit is not None:
        x = law["units"].to_numpy(float)
        ax.errorbar(x, law["sigma1_median"], yerr=[law["sigma1_median"] - law["sigma1_q10"],
                                                   law["sigma1_q90"] - law["sigma1_median"]],
                    fmt="o", capsize=3, label="median, 10–90 % over units and images")
        grid = np.geomspace(x.min(), x.max(), 50)
        ax.plot(grid, fit.c * grid ** (-fit.p), "-", label=f"fit: p = {fit.p:.2f}")
        ax.plot(grid, law["sigma1_median"].iloc[0] * (grid / x[0]) ** -1.0, ":", color="grey",
                label="∝ 1/L")
        ax.set_xscale("log")
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        log_y(ax)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no depth family (fewer than two networks)", ha="center",
                va="center", transform=ax.transAxes)
    ax.set_xlabel("depth L (residual units)")
    ax.set_ylabel("σ₁(J_R)")
    ax.set_title(f"{model}: RA4, top σ of residual Jacobians against depth", fontsize=10)
    fig.tight_layout()
    return save(fig, path)
