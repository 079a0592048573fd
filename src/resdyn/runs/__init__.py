"""Task store (tidy Parquet, atomic, resumable) and executors."""

from .executor import EXECUTORS, Task, run_tasks
from .store import TaskStore, write_parquet

__all__ = ["EXECUTORS", "Task", "TaskStore", "run_tasks", "write_parquet"]
