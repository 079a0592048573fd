"""Correlations of stiffness with loss and correctness (Pearson, Benjamini–Hochberg adjusted): the
stiffness study's correlations table. Its claims are in :mod:`.stiffness_claims`."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05  # significance level after the Benjamini–Hochberg adjustment


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (NaN stays NaN and is not counted as a test).

    Example:
        >>> benjamini_hochberg(np.array([0.01, 0.04, 0.03, np.nan]))
        array([0.03, 0.04, 0.04,  nan])
    """
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = stats.false_discovery_control(p[ok], method="bh")
    return out


def _pearson(x: np.ndarray, y: np.ndarray) -> tuple[float, float, str]:
    """(r, p, note); NaN with the reason where r is undefined (too few points, a constant)."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3:
        return np.nan, np.nan, f"{x.size} finite pairs (need 3)"
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan, np.nan, "constant " + ("metric" if np.ptp(x) == 0 else "target")
    r = stats.pearsonr(x, y)
    return float(r.statistic), float(r.pvalue), ""


def correlations(table: pd.DataFrame, metrics) -> pd.DataFrame:
    """Pearson r and p per block and metric: against per-image loss and correctness (across
    images), and of per-label means against per-label mean loss and accuracy; Benjamini–Hochberg
    adjusted p-values over all tests of the table.

    Columns: block, index, metric, level ("image" or "label"), target ("loss" or
    "correct" / "accuracy"), n, r, p, p_adjusted, significant, note.
    """
    rows = []
    square = table[table["method"] != "skipped"]
    for (index, block), g in square.groupby(["index", "block"], sort=True):
        per_label = g.groupby("label").agg(loss=("loss", "mean"), accuracy=("correct", "mean"),
                                           **{m: (m, "mean") for m in metrics})
        for m in metrics:
            for level, frame, targets in (("image", g, (("loss", "loss"), ("correct", "correct"))),
                                          ("label", per_label, (("loss", "loss"),
                                                                ("accuracy", "accuracy")))):
                for target, col in targets:
                    r, p, note = _pearson(frame[m].to_numpy(float), frame[col].to_numpy(float))
                    rows.append({"block": block, "index": int(index), "metric": m,
                                 "level": level, "target": target, "n": len(frame), "r": r,
                                 "p": p, "note": note})
    out = pd.DataFrame(rows, columns=["block", "index", "metric", "level", "target", "n", "r",
                                      "p", "note"])
    out["p_adjusted"] = benjamini_hochberg(out["p"].to_numpy(float))
    out["significant"] = out["p_adjusted"] <= ALPHA
    return out


# ---------------------------------------------------------------- claims
