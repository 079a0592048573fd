"""Are two runs' tables the same? Bit for bit, leaving out what depends on the run itself.

Timings (``seconds``, ``solve_seconds``) and the free-text ``reason``/``message`` columns (which
carry timings and the memory budget of the moment) differ between two runs of one
configuration; every other column must be equal exactly (floats bit for bit, NaN equal to NaN).

Bit for bit holds on one machine (resume, executors, thread count fixed). Across machines BLAS
kernels differ in the last bits, so there columns are compared within ``tolerances`` that follow
each column's precision (float32 forward passes, a Gram matrix's √ε resolution).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

#: Columns that depend on the run, not on the configuration.
RUN_DEPENDENT = ("seconds", "solve_seconds", "reason", "message")


def table_differences(a: pd.DataFrame, b: pd.DataFrame,
                      tolerances: Mapping[str, float] | None = None) -> list[str]:
    """What differs between two tables (empty: the same), run-dependent columns left out.

    Args:
        tolerances: column -> t: numbers there may differ by t·s, where s is the largest
            magnitude in that cell's list (e.g. σ_max of a row's singular values) or, for a
            column of numbers, in the column. Other columns must be equal bit for bit.
    """
    tolerances = tolerances or {}
    a = a.drop(columns=[c for c in RUN_DEPENDENT if c in a]).reset_index(drop=True)
    b = b.drop(columns=[c for c in RUN_DEPENDENT if c in b]).reset_index(drop=True)
    if list(a.columns) != list(b.columns):
        return [f"columns {list(a.columns)} != {list(b.columns)}"]
    if len(a) != len(b):
        return [f"{len(a)} rows != {len(b)} rows"]
    found = []
    for col in a.columns:
        if not _same_column(a[col], b[col], tolerances.get(col, 0.0)):
            found.append(f"column {col!r} differs" + (f" by more than {tolerances[col]:g} of its "
                                                       "scale" if col in tolerances else ""))
    return found


def _same_column(x: pd.Series, y: pd.Series, tol: float = 0.0) -> bool:
    if x.dtype == object and len(x) and isinstance(x.iloc[0], np.ndarray | list):
        return all(_close(np.asarray(u), np.asarray(v), tol) for u, v in zip(x, y, strict=True))
    if x.dtype.kind in "fc":
        return _close(x.to_numpy(), y.to_numpy(), tol)
    return x.tolist() == y.tolist()


def _close(u: np.ndarray, v: np.ndarray, tol: float) -> bool:
    """Equal (NaN to NaN) within tol times the largest finite magnitude in either."""
    if u.shape != v.shape:
        return False
    if not u.size:
        return True
    if tol == 0.0 or u.dtype.kind not in "fc":
        return bool(np.array_equal(u, v, equal_nan=u.dtype.kind in "fc"))
    both = np.isfinite(u) & np.isfinite(v)
    if not np.array_equal(u[~both], v[~both], equal_nan=True):
        return False
    scale = max(np.abs(u[both]).max(initial=0.0), np.abs(v[both]).max(initial=0.0))
    return bool(np.all(np.abs(u[both] - v[both]) <= tol * scale))


def folder_differences(a: str | Path, b: str | Path) -> dict[str, list[str]]:
    """Table by table (every ``*.parquet`` of either folder), what differs; empty: the same."""
    a, b = Path(a), Path(b)
    names = sorted({p.name for p in a.glob("*.parquet")} | {p.name for p in b.glob("*.parquet")})
    found = {}
    for name in names:
        if not (a / name).is_file() or not (b / name).is_file():
            found[name] = [f"only in {a if (a / name).is_file() else b}"]
            continue
        diff = table_differences(pd.read_parquet(a / name), pd.read_parquet(b / name))
        if diff:
            found[name] = diff
    return found
