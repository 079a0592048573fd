"""A resumable task store: one Parquet file per finished task, written atomically.

A study is a list of independent tasks (image x unit x analysis). Each finished task leaves
``DIR/tasks/<analysis>/<key>.parquet``; a task that raised leaves ``<key>.error.json`` instead
(its error, for the ``errors`` table). An interrupted run loses at most the tasks in flight, and
running the study again skips every task whose Parquet file proves it is that task of this run,
retrying the failed ones.

A task's file proves where it came from: its Parquet metadata records the run (a digest of the
run's identity, see :func:`run_digest`), the task (``analysis/key``) and the SHA-256 of every
file the task wrote beside its rows (a trained checkpoint). A file that does not prove it (copied
from another run, from an older resdyn that recorded nothing, truncated, empty, or whose
checkpoint changed) is never read: :meth:`TaskStore.sweep` names and removes it, and the task is
computed again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ERROR_COLUMNS = ["analysis", "key", "error", "message", "traceback"]
#: The Parquet metadata key of a task file's provenance: {"run", "task", "files"}.
PROVENANCE = b"resdyn.task"


def run_digest(identity: Mapping[str, Any]) -> str:
    """SHA-256 of a run's identity (``run.json``'s content): what a task file records.

    Example:
        >>> run_digest({"study": "spectra"}) == run_digest({"study": "spectra"})
        True
        >>> run_digest({"study": "spectra"}) == run_digest({"study": "identity"})
        False
    """
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


class TaskStore:
    """Finished task results under ``root`` (created on first write) of the run ``run``.

    Args:
        root: the folder (a run folder's ``tasks/``).
        run: the run's digest (:func:`run_digest`); a stored file of another run is not done.

    Example:
        >>> import pandas as pd, tempfile
        >>> root = tempfile.mkdtemp()
        >>> s = TaskStore(root, run="a")
        >>> s.save("spectra", "img0-unit3", pd.DataFrame({"a": [1]}))
        >>> s.done("spectra", "img0-unit3"), len(s.load("spectra"))
        (True, 1)

        The same file seen by another run is not its result, and is never read:

        >>> other = TaskStore(root, run="b")
        >>> other.done("spectra", "img0-unit3"), len(other.load("spectra"))
        (False, 0)
        >>> other.sweep(["spectra/img0-unit3"])
        ['spectra/img0-unit3.parquet: written by another run']
        >>> s.done("spectra", "img0-unit3")  # removed: the task is computed again
        False
    """

    def __init__(self, root: str | Path, run: str = ""):
        self.root = Path(root)
        self.run = run

    def _path(self, analysis: str, key: str, suffix: str = ".parquet") -> Path:
        if not re.fullmatch(r"[\w.=+-]+", key) or not re.fullmatch(r"\w+", analysis):
            raise ValueError(f"task names must be plain words; got {analysis!r}/{key!r}")
        return self.root / analysis / f"{key}{suffix}"

    def done(self, analysis: str, key: str) -> bool:
        """Whether the task's stored file proves it is this task of this run (see the module)."""
        return self._flaw(analysis, key) is None

    def _flaw(self, analysis: str, key: str, table: pa.Table | None = None) -> str | None:
        """Why the task's stored file cannot be used ("missing" when there is none), or None.
        ``table``: the file's contents when already read (its schema holds the record)."""
        path = self._path(analysis, key)
        if table is None and not path.is_file():
            return "missing"
        if table is None and path.stat().st_size == 0:
            return "empty (a write cut short)"
        try:
            schema = table.schema if table is not None else pq.read_schema(path)
            record = json.loads((schema.metadata or {})[PROVENANCE])
        except KeyError:
            return "records no run (written by an older resdyn version, or not by resdyn)"
        except (OSError, ValueError, pa.ArrowException) as e:
            return f"damaged ({str(e).split(chr(10))[0]})"
        if not isinstance(record, dict) or record.get("run") != self.run:
            return "written by another run"
        if record.get("task") != f"{analysis}/{key}":
            return f"holds the rows of another task ({record.get('task')})"
        for name, digest in dict(record.get("files") or {}).items():
            file = self._file(name)
            if not file.is_file():
                return f"its file {name} is missing"
            if _digest(file.read_bytes()) != digest:
                return f"its file {name} changed after the task wrote it"
        return None

    def sweep(self, ids: Iterable[str]) -> list[str]:
        """Remove the stored files of the tasks ``ids`` (``"analysis/key"``) that do not prove
        they are that task of this run, so that they are computed again.

        Returns:
            ``"analysis/key.parquet: why"`` for each file removed.
        """
        removed = []
        for task_id in ids:
            analysis, key = task_id.split("/", 1)
            flaw = self._flaw(analysis, key)
            if flaw is not None and flaw != "missing":
                self._path(analysis, key).unlink()
                removed.append(f"{task_id}.parquet: {flaw}")
        return removed

    def save(self, analysis: str, key: str, rows: pd.DataFrame,
             files: Mapping[str, bytes] | None = None) -> None:
        """Store a finished task: first the files it made (a path -> its bytes, written
        atomically), then its rows, which record the run, the task and those files' digests;
        forget an error an earlier run recorded for it."""
        for name, data in (files or {}).items():
            atomic_write_bytes(name, data)
        record = {"run": self.run, "task": f"{analysis}/{key}",
                  "files": {self._name(n): _digest(d) for n, d in (files or {}).items()}}
        write_parquet(rows, self._path(analysis, key), {PROVENANCE: json.dumps(record).encode()})
        self._path(analysis, key, ".error.json").unlink(missing_ok=True)

    def _name(self, path: str | Path) -> str:
        """How a task's file is recorded: relative to the run folder when inside it."""
        path = Path(path).resolve()
        base = self.root.resolve().parent
        return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)

    def _file(self, name: str) -> Path:
        return self.root.parent / name

    def fail(self, analysis: str, key: str, error: str, message: str, traceback: str) -> None:
        """Record that a task raised (``error``: the exception's type name)."""
        text = json.dumps({"analysis": analysis, "key": key, "error": error, "message": message,
                           "traceback": traceback, "run": self.run})
        atomic_write(self._path(analysis, key, ".error.json"), lambda tmp: tmp.write_text(text))

    def load(self, analysis: str, keys: Iterable[str] | None = None) -> pd.DataFrame:
        """The finished rows of one analysis, in task-key order (empty frame if none).

        Args:
            keys: only these tasks' rows (a run's plan); None: every stored task's.
        """
        if keys is None:
            keys = [p.name.removesuffix(".parquet")
                    for p in (self.root / analysis).glob("*.parquet")]
        frames = []
        for key in sorted(set(keys), key=lambda k: self._path(analysis, k)):
            table = self._read(analysis, key)  # each file read once: its record, then its rows
            if table is not None and table.num_rows and self._flaw(analysis, key, table) is None:
                frames.append(table.to_pandas())
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def _read(self, analysis: str, key: str) -> pa.Table | None:
        """A task's stored file, or None where there is no readable one."""
        path = self._path(analysis, key)
        try:
            return pq.read_table(path) if path.stat().st_size else None
        except (OSError, pa.ArrowException):
            return None

    def errors(self, ids: Iterable[str] | None = None) -> pd.DataFrame:
        """The recorded errors of tasks that have not since succeeded, one row per task.

        Args:
            ids: only these tasks' errors (``"analysis/key"``); None: every recorded one.
        """
        paths = sorted(self.root.glob("*/*.error.json"))
        if ids is not None:
            wanted = set(ids)
            paths = [p for p in paths if _task_id(p) in wanted]
        rows = [_error(p) for p in paths]
        return pd.DataFrame([r for r in rows if r.get("run") == self.run], columns=ERROR_COLUMNS)

    def strays(self, ids: Iterable[str]) -> list[str]:
        """Files under the store that belong to none of the tasks ``ids`` (``"analysis/key"``):
        copied in from elsewhere, or left by a plan of another version. Never read."""
        wanted = set(ids)
        return [str(p.relative_to(self.root)) for p in sorted(self.root.glob("*/*"))
                if not p.name.startswith(".") and _task_id(p) not in wanted]


def _error(path: Path) -> dict[str, Any]:
    """A recorded error (an unreadable record is of no run: a retried task rewrites it)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
        reason = e.strerror or type(e).__name__
        kind = type(e) if isinstance(e, FileNotFoundError | IsADirectoryError
                                      | NotADirectoryError) else OSError
        raise kind(f"cannot write {path}: {reason}; check that the folder is writable (a "
                   "system folder such as /proc is not) and its disk has space, or choose "
                   "another --out") from None


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


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, functools.partial(_write_bytes, data=data))


def _write_bytes(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def write_parquet(rows: pd.DataFrame, path: str | Path,
                  metadata: Mapping[bytes, bytes] | None = None) -> None:
    """Write ``rows`` to ``path`` atomically (temp file + rename): never a half-written table.

    ``metadata``: more key-value pairs for the file's schema (beside pandas' own).

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
    table = pa.Table.from_pandas(rows, preserve_index=False)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))
