"""A resumable task store: one Parquet file per finished task, written atomically.

A study is a list of independent tasks (image x unit x analysis). Each finished task leaves
``DIR/tasks/<analysis>/<key>.parquet``; an interrupted run loses at most the task in flight, and
running the study again skips every task whose file exists.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd


class TaskStore:
    """Finished task results under ``root`` (created on first write).

    Example:
        >>> import pandas as pd, tempfile
        >>> s = TaskStore(tempfile.mkdtemp())
        >>> s.save("spectra", "img0-unit3", pd.DataFrame({"a": [1]}))
        >>> s.done("spectra", "img0-unit3"), len(s.load("spectra"))
        (True, 1)
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _path(self, analysis: str, key: str) -> Path:
        if not re.fullmatch(r"[\w.=+-]+", key) or not re.fullmatch(r"\w+", analysis):
            raise ValueError(f"task names must be plain words; got {analysis!r}/{key!r}")
        return self.root / analysis / f"{key}.parquet"

    def done(self, analysis: str, key: str) -> bool:
        return self._path(analysis, key).is_file()

    def save(self, analysis: str, key: str, rows: pd.DataFrame) -> None:
        path = self._path(analysis, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(rows, path)

    def load(self, analysis: str) -> pd.DataFrame:
        """All finished rows of one analysis, in task-key order (empty frame if none)."""
        files = sorted((self.root / analysis).glob("*.parquet"))
        frames = [pd.read_parquet(f) for f in files]
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_parquet(rows: pd.DataFrame, path: str | Path) -> None:
    """Write ``rows`` to ``path`` atomically (temp file + rename): never a half-written table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        rows.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
