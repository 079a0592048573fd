"""A run folder: holds the results of exactly one identity (study, config, model, data).

The identity is written to ``run.json`` when the folder is first used. The same identity resumes;
another one is refused with the fields that differ, unless the caller asks for a fresh start,
which empties the folder (only a folder resdyn wrote: one with ``run.json``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .identity import differences
from .store import atomic_write

IDENTITY_FILE = "run.json"


class RunFolderError(ValueError):
    """An output folder that cannot hold this run (a file, another run, foreign files)."""


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


def claim(out: Path, identity: dict[str, Any], *, fresh: bool = False) -> bool:
    """Make ``out`` the folder of ``identity``; returns True when it resumes an earlier run.

    Raises:
        RunFolderError: the folder holds another identity (the message names the fields that
            differ and the two ways on), or files resdyn did not write.
    """
    out = check_out(out)
    path = out / IDENTITY_FILE
    if fresh and (path.is_file() or _older_run(out)):
        _empty(out)
    if path.is_file():
        old = json.loads(path.read_text())
        diff = differences(old, identity)
        if diff:
            raise RunFolderError(
                f"{out} holds results of another configuration ({'; '.join(diff)}). "
                "Use --fresh to discard them and start over (Python: fresh=True), or choose "
                "another --out")
        return True
    if _older_run(out):
        raise RunFolderError(f"{out} holds a run of an earlier resdyn version that recorded no "
                             f"identity ({IDENTITY_FILE}): use --fresh to discard it, or choose "
                             "another --out")
    if out.is_dir() and any(out.iterdir()):
        raise RunFolderError(f"{out} is not empty and holds no resdyn run ({IDENTITY_FILE} is "
                             "missing): choose an empty or new --out")
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(identity, indent=2)))
    return False


def release(out: Path) -> None:
    """Empty a run folder this process just claimed (its run could not start)."""
    if (out / IDENTITY_FILE).is_file():
        _empty(out)


def _older_run(out: Path) -> bool:
    return (out / "config.json").is_file() and (out / "tasks").is_dir()


def _empty(out: Path) -> None:
    for child in out.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
