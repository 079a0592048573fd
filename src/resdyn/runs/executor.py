"""Run study tasks: each a plain function of picklable arguments, so a cluster can run them too."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .store import TaskStore

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Task:
    """One unit of work: ``fn(**kwargs)`` returns the rows of ``analysis`` for ``key``."""

    analysis: str
    key: str
    fn: Callable[..., pd.DataFrame]
    kwargs: dict[str, Any] = field(default_factory=dict)


def run_serial(tasks: Sequence[Task], store: TaskStore, progress: Progress | None = None) -> int:
    """Run the tasks not yet in ``store`` one after another in this process.

    Returns:
        how many tasks ran (the others were already stored by an earlier run).
    """
    todo = [t for t in tasks if not store.done(t.analysis, t.key)]
    skipped = len(tasks) - len(todo)
    for i, task in enumerate(todo):
        if progress:
            progress(skipped + i, len(tasks), f"{task.analysis} {task.key}")
        store.save(task.analysis, task.key, task.fn(**task.kwargs))
    if progress:
        progress(len(tasks), len(tasks), "done")
    return len(todo)


EXECUTORS: dict[str, Callable[[Sequence[Task], TaskStore, Progress | None], int]] = {
    "serial": run_serial,
}


def run_tasks(tasks: Sequence[Task], store: TaskStore, executor: str = "serial",
              progress: Progress | None = None) -> int:
    """Run ``tasks`` with the named executor; unknown names list the valid ones."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; valid: {sorted(EXECUTORS)}")
    return EXECUTORS[executor](tasks, store, progress)
