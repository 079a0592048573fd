"""A resumable task store: one Parquet file per finished task, written atomically.

A study is a list of independent tasks (image x unit x analysis). Each finished task leaves
``DIR/tasks/<analysis>/<key>.parquet``; a task that raised leaves ``<key>.error.json`` instead
(its error, for the ``errors`` table). An interrupted run loses at most the tasks in flight, and
running the study again skips every task whose Parquet file exists, retrying the failed ones.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

ERROR_COLUMNS = ["analysis", "key", "error", "message", "traceback"]


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

    def _path(self, analysis: str, key: str, suffix: str = ".parquet") -> Path:
        if not re.fullmatch(r"[\w.=+-]+", key) or not re.fullmatch(r"\w+", analysis):
            raise ValueError(f"task names must be plain words; got {analysis!r}/{key!r}")
        return self.root / analysis / f"{key}{suffix}"

    def done(self, analysis: str, key: str) -> bool:
        return self._path(analysis, key).is_file()

    def save(self, analysis: str, key: str, rows: pd.DataFrame) -> None:
        """Store a finished task's rows; forget an error an earlier run recorded for it."""
        write_parquet(rows, self._path(analysis, key))
        self._path(analysis, key, ".error.json").unlink(missing_ok=True)

    def fail(self, analysis: str, key: str, error: str, message: str, traceback: str) -> None:
        """Record that a task raised (``error``: the exception's type name)."""
        text = json.dumps({"analysis": analysis, "key": key, "error": error, "message": message,
                           "traceback": traceback})
        atomic_write(self._path(analysis, key, ".error.json"), lambda tmp: tmp.write_text(text))

    def load(self, analysis: str) -> pd.DataFrame:
        """All finished rows of one analysis, in task-key order (empty frame if none)."""
        files = sorted((self.root / analysis).glob("*.parquet"))
        frames = [pd.read_parquet(f) for f in files]
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def errors(self) -> pd.DataFrame:
        """The recorded errors of tasks that have not since succeeded, one row per task."""
        rows = [json.loads(p.read_text()) for p in sorted(self.root.glob("*/*.error.json"))]
        return pd.DataFrame(rows, columns=ERROR_COLUMNS)


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``:
    readers see the old file or the whole new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_parquet(rows: pd.DataFrame, path: str | Path) -> None:
    """Write ``rows`` to ``path`` atomically (temp file + rename): never a half-written table."""
    atomic_write(path, lambda tmp: rows.to_parquet(tmp, index=False))
