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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
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

    def load(self, analysis: str, keys: Iterable[str] | None = None) -> pd.DataFrame:
        """The finished rows of one analysis, in task-key order (empty frame if none).

        Args:
            keys: only these tasks' rows (a run's plan); None: every stored task's.
        """
        if keys is None:
            files = sorted((self.root / analysis).glob("*.parquet"))
        else:
            files = [p for p in sorted(self._path(analysis, k) for k in set(keys)) if p.is_file()]
        frames = [pd.read_parquet(f) for f in files]
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def errors(self, ids: Iterable[str] | None = None) -> pd.DataFrame:
        """The recorded errors of tasks that have not since succeeded, one row per task.

        Args:
            ids: only these tasks' errors (``"analysis/key"``); None: every recorded one.
        """
        paths = sorted(self.root.glob("*/*.error.json"))
        if ids is not None:
            wanted = set(ids)
            paths = [p for p in paths if _task_id(p) in wanted]
        rows = [json.loads(p.read_text()) for p in paths]
        return pd.DataFrame(rows, columns=ERROR_COLUMNS)

    def strays(self, ids: Iterable[str]) -> list[str]:
        """Files under the store that belong to none of the tasks ``ids`` (``"analysis/key"``):
        copied in from elsewhere, or left by a plan of another version. Never read."""
        wanted = set(ids)
        return [str(p.relative_to(self.root)) for p in sorted(self.root.glob("*/*"))
                if not p.name.startswith(".") and _task_id(p) not in wanted]


def _task_id(path: Path) -> str:
    """"analysis/key" of a stored task's file (``key.parquet`` or ``key.error.json``)."""
    name = path.name.removesuffix(".parquet").removesuffix(".error.json")
    return f"{path.parent.name}/{name}"


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn an OS error while writing ``path`` into one that names it and the way on (a
    read-only folder or a full disk otherwise names a temporary file and no fix)."""
    try:
        yield
    except OSError as e:
        if isinstance(e, FileNotFoundError | IsADirectoryError | NotADirectoryError):
            raise
        reason = e.strerror or type(e).__name__
        raise OSError(f"cannot write {path}: {reason}; check that the folder is "
                      "writable and its disk has space, or choose another --out") from None


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``:
    readers see the old file or the whole new one, never half of it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            write(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def write_parquet(rows: pd.DataFrame, path: str | Path) -> None:
    """Write ``rows`` to ``path`` atomically (temp file + rename): never a half-written table.

    Example:
        >>> import os, tempfile
        >>> rows = pd.DataFrame({"name": ["unit1", "unit2"], "sigma_max": [1.5, 2.0]})
        >>> folder = tempfile.mkdtemp()
        >>> write_parquet(rows, os.path.join(folder, "tables", "spectra.parquet"))
        >>> os.listdir(os.path.join(folder, "tables"))  # the folder is made; no temporary file left
        ['spectra.parquet']
        >>> pd.read_parquet(os.path.join(folder, "tables", "spectra.parquet")).equals(rows)
        True
    """
    atomic_write(path, lambda tmp: rows.to_parquet(tmp, index=False))
