"""Worker plugins of a Dask run.

Models travel with the run, not through a file system: :class:`ModelCache` puts the run's models
into each worker's store of shipped models (:func:`resdyn.runs.modelref.ship`) when the worker
starts, or at once on the workers already running. :class:`SpreadGpus` gives each worker of a
local cluster its own GPU.
"""

from __future__ import annotations

from typing import Any

from distributed import WorkerPlugin

from ..operators import warm_up_jvp


class ModelCache(WorkerPlugin):
    """Holds ``models`` (cache key -> model) and ships them to every worker
    (:func:`resdyn.runs.modelref.ship`), so a task's :meth:`resdyn.runs.ModelRef.load` finds
    its model without reading the run folder, however many models the run has.

    Registering it again (a later wave's checkpoints) replaces the models; unregistering it
    (the run's end) lets a worker of a long-lived cluster free them.
    """

    def __init__(self, models: dict[str, Any]):
        from ..models.adapters import DECLARED

        self.models = models
        # the blocks declared with declare_unit that these models use go with them: a class
        # defined in a notebook (__main__) travels by value and its declaration would be
        # missing on a worker, where nothing ran the notebook's declare_unit
        used = {type(m) for model in models.values() for m in model.modules()}
        self.declared = {cls: parts for cls, parts in DECLARED.items()
                         if any(issubclass(u, cls) for u in used)}

    def setup(self, worker: Any) -> None:
        from ..models.adapters import DECLARED
        from .modelref import ship

        DECLARED.update(self.declared)
        ship(self.models)
        # torch scripts its forward-AD decompositions (ast.parse) on a process's first JVP;
        # done here, before any task, it cannot meet another thread's ast use (a traceback's
        # caret anchors on Python 3.11): CPython before 3.11.8 then raises "AST constructor
        # recursion depth mismatch" (gh-106905)
        warm_up_jvp()

    def teardown(self, worker: Any) -> None:
        from .modelref import ship

        ship({})


class SpreadGpus(WorkerPlugin):
    """Pins worker i of a local cluster to GPU i mod ``count`` (:func:`resdyn.runs.context.pin`),
    so a run on "cuda" uses all ``count`` GPUs, one worker process each."""

    def __init__(self, count: int):
        self.count = count

    def setup(self, worker: Any) -> None:
        from .context import pin, spread

        pin(spread(worker.name, self.count))  # tasks put every tensor on it explicitly
