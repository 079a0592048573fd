"""Are two runs' tables the same? Bit for bit, leaving out what depends on the run itself.

Timings (``seconds``, ``solve_seconds``) and the free-text ``reason``/``message`` columns (which
carry timings and the memory budget of the moment) differ between two runs of one
configuration; every other column must be equal exactly (floats bit for bit, NaN equal to NaN).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: Columns that depend on the run, not on the configuration.
RUN_DEPENDENT = ("seconds", "solve_seconds", "reason", "message")


def table_differences(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """What differs between two tables (empty: the same), run-dependent columns left out."""
    a = a.drop(columns=[c for c in RUN_DEPENDENT if c in a]).reset_index(drop=True)
    b = b.drop(columns=[c for c in RUN_DEPENDENT if c in b]).reset_index(drop=True)
    if list(a.columns) != list(b.columns):
        return [f"columns {list(a.columns)} != {list(b.columns)}"]
    if len(a) != len(b):
        return [f"{len(a)} rows != {len(b)} rows"]
    found = []
    for col in a.columns:
        if not _same_column(a[col], b[col]):
            found.append(f"column {col!r} differs")
    return found


def _same_column(x: pd.Series, y: pd.Series) -> bool:
    if x.dtype == object and len(x) and isinstance(x.iloc[0], np.ndarray | list):
        return all(np.array_equal(np.asarray(u), np.asarray(v), equal_nan=True)
                   for u, v in zip(x, y, strict=True))
    if x.dtype.kind in "fc":
        return bool(np.array_equal(x.to_numpy(), y.to_numpy(), equal_nan=True))
    return x.tolist() == y.tolist()


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
