"""Models travel with a Dask run, not through a file system: a worker plugin that puts the
run's models into each worker's model cache (:mod:`resdyn.runs.modelref`) when the worker
starts, or at once on the workers already running."""

from __future__ import annotations

from typing import Any

from distributed import WorkerPlugin


class ModelCache(WorkerPlugin):
    """Holds ``models`` (cache key -> model) and installs them on every worker's cache, so a
    task's :meth:`resdyn.runs.ModelRef.load` finds its model without reading the run folder."""

    def __init__(self, models: dict[str, Any]):
        self.models = models

    def setup(self, worker: Any) -> None:
        from .modelref import remember

        for key, model in self.models.items():
            remember(key, model)
