"""A run folder: holds the results of exactly one identity (study, config, model, data).

The identity is written to ``run.json`` when the folder is first used. The same identity resumes;
another one is refused with the fields that differ, unless the caller asks for a fresh start,
which removes what resdyn wrote there (and refuses, naming them, when other files are there).

One writer at a time: :func:`locked` holds an OS lock on ``run.lock`` for the whole run. The
lock dies with its process (a SIGKILL leaves no stale lock); a second writer is refused at once
with the process that holds the folder.
"""

from __future__ import annotations

import copy
import errno
import fcntl
import functools
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .identity import Difference, differences
from .store import atomic_write, writing

IDENTITY_FILE = "run.json"
LOCK_FILE = "run.lock"
#: What every run folder may hold besides its study's tables and figures (claims.json: what
#: versions before summary.json wrote).
RESDYN_FILES = frozenset({IDENTITY_FILE, LOCK_FILE, "config.json", "summary.md", "summary.json",
                          "claims.json", "report.html", "options.toml", "errors.parquet",
                          "tasks", "checkpoints", "model.pth", "model.pt"})

#: fn(identity found in a folder) -> the further names resdyn writes into such a folder; called
#: with None when the folder's identity is damaged: then every name resdyn's studies write.
Owned = Callable[[dict[str, Any] | None], Iterable[str]]


class RunFolderError(ValueError):
    """An output folder that cannot hold this run (a file, another run, foreign files, in use).

    A ValueError, raised before any work is done; its message names the way on.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> a_file = Path(tempfile.mkdtemp()) / "notes.txt"
        >>> _ = a_file.write_text("not a folder")
        >>> try:
        ...     check_out(a_file / "run")  # what run_study checks first
        ... except RunFolderError as e:
        ...     print(isinstance(e, ValueError), str(e).endswith("is a file. Pick another --out"))
        True True
    """


def check_out(out: str | Path) -> Path:
    """``out`` as a Path that can be a run folder; raise before any work if it cannot.

    Raises:
        RunFolderError: ``out`` is an existing file, or lies under one.
    """
    out = Path(out).expanduser()
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            raise RunFolderError(f"output folder {out} cannot be created: {p} is a file. "
                                 "Pick another --out")
    return out


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold ``out``'s write lock (creating the folder) while the block runs.

    When the block ends with no run in the folder (refused, or it could not start), the lock
    file this call created is removed again, and so is the folder if this call created it.

    Raises:
        RunFolderError: another process holds the lock (the message names it).
    """
    out = check_out(out)
    created = not out.exists()
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    new_lock = not path.exists()
    while True:
        with writing(path):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise RunFolderError(f"{out} is in use by another resdyn run ({_holder(path)}): wait "
                                 "for it to finish, or choose another --out") from None
        if _same_file(fd, path):
            break  # else the holder removed the file between our open and lock: take the new one
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                                 "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
                                 if sys.argv and sys.argv[0] else "python"}).encode())
        yield
    finally:
        if new_lock and not (out / IDENTITY_FILE).exists():
            path.unlink(missing_ok=True)
            if created and not any(out.iterdir()):
                out.rmdir()
        os.close(fd)  # releases the lock


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), path.stat()
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _holder(path: Path) -> str:
    try:
        h = json.loads(path.read_text())
        return f"process {h['pid']} on {h['host']} since {h['since']}: {h['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that is starting"


def claim(out: Path, identity: dict[str, Any], *, fresh: bool = False,
          owned: Owned | None = None, upgrade_safe: Iterable[str] = (),
          moved: Mapping[str, str] | None = None, changes: str = "") -> bool:
    """Make ``out`` the folder of ``identity``; returns True when it resumes an earlier run.

    The caller holds the folder's lock (:func:`locked`). A folder of another identity that
    holds no finished task (every task failed, or none ran) is taken over: nothing is lost.

    Args:
        owned: what resdyn writes into a folder of a given identity beyond
            :data:`RESDYN_FILES` (its tables and figures), for ``fresh``.
        upgrade_safe: identity fields (``run.precision``) that an older ``run.json`` may
            lack: their default reproduces what the older version computed.
        moved: identity fields an older ``run.json`` kept under another path (old path -> new
            path, e.g. ``config.precision`` -> ``run.precision``): read there, recorded here.
        changes: what the study computes differently since its previous ``revision``, for
            the refusal of a folder of an older one.

    Raises:
        RunFolderError: the folder holds another identity (the message names the fields that
            differ and the two ways on), an unreadable identity, or files resdyn did not write.
    """
    out = check_out(out)
    path = out / IDENTITY_FILE
    if fresh and (path.exists() or _older_run(out)):
        clear(out, owned)
    if path.exists():
        try:
            stored = read_identity(out)
            old = _moved(stored, moved or {})
        except RunFolderError:
            if has_results(out):
                raise
            clear(out, owned)  # a damaged identity over no result: nothing to lose
            _write_identity(path, identity)
            return False
        diff = [d for d in differences(old, identity)
                if not (d.old == "<absent>" and d.path in upgrade_safe)]
        if diff and not has_results(out):
            clear(out, owned)
        elif diff:
            raise RunFolderError(_refusal(out, diff, changes))
        else:
            if stored != identity:  # written by an older version: record the whole identity now
                _write_identity(path, identity)
            return True
    if _older_run(out):
        raise RunFolderError(f"{out} holds a run of an earlier resdyn version that recorded no "
                             f"identity ({IDENTITY_FILE}): use --fresh to discard it, or choose "
                             "another --out")
    others = sorted(p.name for p in out.iterdir() if p.name != LOCK_FILE) if out.is_dir() else []
    if others:
        raise RunFolderError(f"{out} is not empty and holds no resdyn run ({IDENTITY_FILE} is "
                             f"missing; it holds {_names(others)}): choose an empty or new --out")
    _write_identity(path, identity)
    return False


def _moved(identity: dict[str, Any], moved: Mapping[str, str]) -> dict[str, Any]:
    """``identity`` with each field at an old path moved to its new one (where that is free)."""
    out = copy.deepcopy(identity)
    for old, new in moved.items():
        *head, key = old.split(".")
        parent = functools.reduce(lambda d, k: d.get(k, {}) if isinstance(d, dict) else {},
                                  head, out)
        if not isinstance(parent, dict) or key not in parent:
            continue
        value = parent.pop(key)
        *head, key = new.split(".")
        target = out
        for k in head:
            target = target.setdefault(k, {})
        target.setdefault(key, value)
    return out


@contextmanager
def claimed(out: Path, identity: dict[str, Any], *, fresh: bool = False,
            owned: Owned | None = None, upgrade_safe: Iterable[str] = (),
            moved: Mapping[str, str] | None = None, changes: str = "") -> Iterator[bool]:
    """:func:`claim` ``out`` for the block, which sees whether it resumes an earlier run.

    A new run that ends in an exception having stored nothing (its executor did not start, it
    was interrupted at once) leaves no claim on the folder: nothing is lost, and any command
    may use it.
    """
    resumed = claim(out, identity, fresh=fresh, owned=owned, upgrade_safe=upgrade_safe,
                    moved=moved, changes=changes)
    try:
        yield resumed
    except BaseException:
        if not resumed and not has_results(out):
            release(out, owned)
        raise


def _refusal(out: Path, diff: list[Difference], changes: str = "") -> str:
    absent = [d for d in diff if d.old == "<absent>" and d.path.startswith(("config.", "run."))]
    older = (f" The folder was written by an older resdyn version that did not record "
             f"{', '.join(d.path for d in absent)}; the new default computes something else."
             if absent else "")
    if any(d.path == "revision" for d in diff):
        older += (" The folder was written by an older resdyn version of this study"
                  + (f"; since then: {changes}." if changes else "."))
    return (f"{out} holds results of another configuration ({'; '.join(map(str, diff))}).{older} "
            "Use --fresh to discard them and start over (Python: fresh=True), or choose "
            "another --out")


def read_identity(out: Path) -> dict[str, Any]:
    """The identity ``out/run.json`` records.

    Raises:
        RunFolderError: the file is unreadable or not an identity (names it and the way on).
    """
    path = out / IDENTITY_FILE
    reason: str | None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        reason = f"unreadable ({type(e).__name__}: {e})"
    else:
        reason = _identity_flaw(value)
        if reason is None:
            return value
    raise RunFolderError(f"{path} is damaged: {reason}, so the folder's results cannot be "
                         "matched to this run. Use --fresh to discard them (Python: fresh=True), "
                         "or choose another --out")


def _identity_flaw(value: Any) -> str | None:
    """What makes ``value`` no run identity (None: it is one)."""
    if not isinstance(value, dict) or not value:
        return (f"it holds {'an empty' if value == {} else 'a'} {type(value).__name__}, not a "
                "run identity")
    if "study" not in value:  # a folder of runs (the demo's) records what its parts depend on
        bad = [k for k, v in value.items() if not isinstance(v, dict)]
        return f"its field {bad[0]!r} holds a {type(value[bad[0]]).__name__}" if bad else None
    kinds = {"study": str, "config": dict, "model": dict | None, "data": dict | None}
    for name, kind in kinds.items():
        if name in value and not isinstance(value[name], kind):
            return f"its field {name!r} holds a {type(value[name]).__name__}"
    return None


def _write_identity(path: Path, identity: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(identity, indent=2)))


def release(out: Path, owned: Owned | None = None) -> None:
    """Remove the claim this process just made on ``out`` (its run could not start)."""
    if (out / IDENTITY_FILE).is_file():
        clear(out, owned)


def has_results(out: Path) -> bool:
    """Whether ``out`` (or a run folder nested in it, a demo's part) holds a finished task."""
    if any((out / "tasks").glob("*/*.parquet")) or any((out / "checkpoints").glob("*")):
        return True
    return any(has_results(p) for p in out.iterdir() if (p / IDENTITY_FILE).is_file())


def _older_run(out: Path) -> bool:
    return (out / "config.json").is_file() and (out / "tasks").is_dir()


def foreign(out: Path, owned: Owned | None = None) -> list[Path]:
    """Files in the run folder ``out`` that resdyn did not write (nested run folders too)."""
    names = set(RESDYN_FILES)
    if (out / IDENTITY_FILE).exists() and owned is not None:
        try:
            identity: dict[str, Any] | None = read_identity(out)
        except RunFolderError:
            identity = None  # damaged: whatever resdyn's studies write is resdyn's
        names |= set(owned(identity))
    found = []
    for p in sorted(out.iterdir()):
        if p.name.startswith(".") and p.name.endswith(".tmp"):
            continue  # a write a killed run left half done
        if p.name not in names:
            found.append(p)
        elif p.is_dir() and (p / IDENTITY_FILE).is_file():
            found += foreign(p, owned)
    return found


def clear(out: Path, owned: Owned | None = None) -> None:
    """Remove what resdyn wrote in ``out`` (never the lock the caller holds).

    Raises:
        RunFolderError: other files are there (named); nothing is removed then.
    """
    others = foreign(out, owned)
    if others:
        raise RunFolderError(f"--fresh removes only what resdyn wrote, and {out} also holds "
                             f"{_names([str(p.relative_to(out)) for p in others])}: move them "
                             "out first, or choose another --out")
    _remove(out)


def _remove(out: Path) -> None:
    for child in out.iterdir():
        if child.name == LOCK_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            if (child / IDENTITY_FILE).is_file():  # a nested run (a demo's part)
                _remove(child)
                (child / LOCK_FILE).unlink(missing_ok=True)
                child.rmdir()
            else:
                shutil.rmtree(child)
        else:
            child.unlink()


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")
