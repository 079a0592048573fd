"""Runs: the resumable task store, run folders keyed by identity, model references, executors,
progress."""

from .context import RunContext, current
from .executor import EXECUTORS, Executor, RunStats, Task, local_cluster, run_tasks
from .folder import RunFolderError
from .modelref import ModelRef, local_ref, save_model
from .progress import Progress, RunProgress, TimeLeft
from .store import TaskStore, write_parquet

__all__ = ["EXECUTORS", "Executor", "ModelRef", "local_cluster", "Progress", "RunContext", "RunFolderError",
           "RunProgress", "RunStats", "Task", "TaskStore", "TimeLeft", "current", "local_ref", "run_tasks",
           "save_model", "write_parquet"]
