"""Run study tasks: each a plain function of picklable arguments, so a cluster can run them too.

Executors, picked by name: ``serial`` (this process, the default) and ``dask`` (a local Dask
cluster of ``workers`` processes, an existing scheduler at ``scheduler``, or a
``dask.distributed.Client`` you made, used as is and left open: :meth:`Executor.of`). Either way the
results come back to this process, which alone writes the run folder (rows, and the files a task
returns, such as a trained checkpoint), and the models travel to the workers with the run, so the
tables are the same whichever ran them and workers never need the run folder.
"""

from __future__ import annotations

import dataclasses
import re
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from .context import DEFAULT, RunContext, using
from .modelref import ModelRef
from .progress import Progress, RunProgress
from .store import TaskStore


@dataclass(frozen=True)
class Task:
    """One unit of work: ``fn(**kwargs)`` returns the rows of ``analysis`` for ``key``.

    ``after``: ids (``"analysis/key"``) of tasks whose results (e.g. a trained checkpoint in the
    run folder, see :class:`Output`) this one needs; it runs in a later wave than all of them.
    ``tags``: constant columns put in front of the rows (which network, which data set), so one
    task function serves several networks of a study.

    Example:
        >>> import pandas as pd
        >>> def square(x):
        ...     return pd.DataFrame({"x": [x], "y": [x * x]})
        >>> t = Task("squares", "x3", square, {"x": 3}, tags={"net": "toy"})
        >>> t.id
        'squares/x3'
        >>> t.fn(**t.kwargs)
           x  y
        0  3  9
    """

    analysis: str
    key: str
    fn: Callable[..., pd.DataFrame]
    kwargs: dict[str, Any] = field(default_factory=dict)
    after: tuple[str, ...] = ()
    tags: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.analysis}/{self.key}"


@dataclass(frozen=True)
class Output:
    """What a task returns when it also makes files: its rows, and ``files`` (a path in the run
    folder -> the file's bytes). The process that writes the run folder writes the files
    (atomically) before it stores the rows, so a stored task always has its files and a worker
    never writes into the run folder (it need not even see it)."""

    rows: pd.DataFrame
    files: dict[str, bytes] = field(default_factory=dict)


#: The most worker processes of a local Dask cluster (a cluster of more machines: --scheduler).
MAX_WORKERS = 256


@dataclass(frozen=True)
class Executor:
    """How to run tasks.

    Attributes:
        name: "serial" or "dask".
        workers: dask only: start a local cluster of this many worker processes (one task at a
            time each) on loopback; default 2. On "cuda" (or "auto" on a GPU machine), worker i
            computes on GPU i mod G of the G GPUs the run sees (CUDA_VISIBLE_DEVICES selects
            them); an explicit "cuda:N" keeps every worker on GPU N.
        scheduler: dask only: address of a running scheduler ("tcp://host:8786") instead.
        timeout: seconds to wait for the scheduler to answer.
        threads: torch threads per worker process where the run context sets none (None,
            the default: the automatic policy of :mod:`resdyn._threads`, under which workers
            that share the cores take one thread each).
        client: dask only: a ``dask.distributed.Client`` of yours (a notebook's, a cluster's
            that outlives the run): the run uses it as is, starts no cluster and does not close
            it, so a second run on it starts at once; the models it sent its workers are let
            go when the run ends. See :meth:`of`.

    Example:
        >>> Executor()
        Executor(name='serial', workers=None, scheduler=None, timeout=20.0, threads=None)
        >>> Executor("dask", workers=4).workers
        4
        >>> Executor("serial", workers=2)
        Traceback (most recent call last):
            ...
        ValueError: workers and scheduler need the dask executor
        >>> Executor("spark")
        Traceback (most recent call last):
            ...
        ValueError: unknown executor 'spark'; valid: ['dask', 'serial']
    """

    name: str = "serial"
    workers: int | None = None
    scheduler: str | None = None
    timeout: float = 20.0
    threads: int | None = None
    client: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.name not in EXECUTORS:
            raise ValueError(f"unknown executor {self.name!r}; valid: {sorted(EXECUTORS)}")
        if self.client is not None:
            if self.name != "dask" or self.workers is not None or self.scheduler:
                raise ValueError("a client is a dask executor of its own: give no workers or "
                                 "scheduler with it")
            if not _is_client(self.client):
                raise TypeError(f"client must be a dask.distributed.Client; got a "
                                f"{type(self.client).__name__}")
        if self.workers is not None and not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"workers must be between 1 and {MAX_WORKERS} (each a process on "
                             f"this machine); got {self.workers}")
        if self.name == "serial" and (self.workers is not None or self.scheduler):
            raise ValueError("workers and scheduler need the dask executor")
        if self.workers is not None and self.scheduler:
            raise ValueError("give either workers (a local cluster) or a scheduler address, "
                             "not both")

    @classmethod
    def of(cls, executor: Executor | str | Any) -> Executor:
        """The executor ``executor`` names: an Executor as is, a name ("serial", "dask"), or a
        ``dask.distributed.Client`` (used as is, never closed by resdyn).

        Raises:
            ValueError: an unknown name. TypeError: anything else.

        Example:
            >>> Executor.of("dask")
            Executor(name='dask', workers=None, scheduler=None, timeout=20.0, threads=None)
            >>> Executor.of(2)  # doctest: +ELLIPSIS
            Traceback (most recent call last):
                ...
            TypeError: executor must be "serial", "dask", ... dask.distributed.Client; got a int
        """
        if isinstance(executor, Executor):
            return executor
        if isinstance(executor, str):
            return cls(executor)
        if _is_client(executor):
            return cls("dask", client=executor)
        raise TypeError(f'executor must be "serial", "dask", a resdyn.runs.Executor or a '
                        f"dask.distributed.Client; got a {type(executor).__name__}")

    def describe(self) -> dict[str, Any]:
        """What config.json records of this executor (a client: its scheduler's address)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name != "client"}
        if self.client is not None:
            fields["client"] = getattr(self.client.scheduler, "address", str(self.client))
        return fields

    def check_reachable(self) -> None:
        """Raise unless the scheduler (if any) accepts a connection: what a run checks before
        it claims its folder (a TCP connect, not a Dask client; a given client: that it is
        running).

        Raises:
            ConnectionError: nothing answers at the address, or the client is closed (the
                message names the fix).
        """
        if self.client is not None:
            if self.client.status != "running":
                raise ConnectionError(f"the Dask client given as executor is {self.client.status}"
                                      ", not running: pass an open client (or executor='dask')")
            return
        if self.scheduler is None:
            return
        import socket
        from urllib.parse import urlsplit

        where = urlsplit(self.scheduler if "://" in self.scheduler else f"tcp://{self.scheduler}")
        try:
            with socket.create_connection((where.hostname or "", where.port or 8786),
                                          timeout=self.timeout):
                pass
        except (OSError, ValueError) as e:
            raise self.unreachable(e) from None

    def unreachable(self, e: BaseException) -> ConnectionError:
        """The error of a scheduler that did not answer (``e``: what the attempt raised)."""
        return ConnectionError(
            f"no Dask scheduler answered at {self.scheduler} within {self.timeout:g} s "
            f"({type(e).__name__}): check that `dask scheduler` runs there, that the address "
            "and port are right and reachable from this machine")


def _is_client(value: Any) -> bool:
    """Whether ``value`` is a dask.distributed.Client (without importing distributed when no
    one has)."""
    import sys

    distributed = sys.modules.get("distributed")
    return distributed is not None and isinstance(value, distributed.Client)


@dataclass(frozen=True)
class RunStats:
    """What a run did: ``ran`` tasks finished now, ``failed`` raised, ``resumed`` were stored.

    Example:
        >>> import pandas as pd, tempfile
        >>> from resdyn.runs import TaskStore
        >>> def half(x):
        ...     if x % 2:
        ...         raise ValueError(f"{x} is odd")
        ...     return pd.DataFrame({"half": [x // 2]})
        >>> tasks = [Task("halves", f"x{x}", half, {"x": x}) for x in range(3)]
        >>> store = TaskStore(tempfile.mkdtemp())
        >>> run_tasks(tasks, store)
        RunStats(total=3, resumed=0, ran=2, failed=1)
        >>> stats = run_tasks(tasks, store)  # the stored ones are skipped, the failed retried
        >>> stats.resumed, stats.ran, stats.failed
        (2, 0, 1)
        >>> store.errors()[["key", "error", "message"]]
          key       error   message
        0  x1  ValueError  1 is odd
    """

    total: int
    resumed: int
    ran: int
    failed: int


Outcome = tuple[str, Any]  # ("ok", Output) or ("error", (type, message, traceback))


def execute(task: Task, context: RunContext = DEFAULT) -> Outcome:
    """Run one task in ``context``, turning an exception into an error record (worker side).

    The rows get the column ``device``: where they were computed (a run may be resumed on
    another device; the last bits may differ between devices).
    """
    try:
        with using(context) as run:
            out = task.fn(**task.kwargs)
        if not isinstance(out, Output):
            out = Output(out)
        for i, (name, value) in enumerate(task.tags.items()):
            out.rows.insert(i, name, value)
        out.rows["device"] = run.device
        return "ok", out
    except Exception as e:  # a failing task is recorded; the others go on
        return "error", (type(e).__name__, str(e), traceback.format_exc())


#: model cache key -> the model: what tasks' ModelRefs load; the serial executor's process has
#: them already, a Dask cluster gets them once per worker (no shared file system needed).
Models = Mapping[str, Any]

#: Runs a wave of tasks, given the models (cache key -> model) that wave's tasks load.
Runner = Callable[[Sequence[Task], Models], Iterable[tuple[Task, Outcome]]]


@contextmanager
def _serial(executor: Executor, context: RunContext, models: Models) -> Iterator[Runner]:
    yield lambda tasks, more: ((task, execute(task, context)) for task in tasks)


def local_cluster(workers: int = 2) -> Any:
    """A local Dask cluster as resdyn starts one: ``workers`` processes of one thread each, on
    127.0.0.1, no dashboard, and glibc's own threshold for returning freed memory to the system.

    Dask's workers otherwise set ``MALLOC_TRIM_THRESHOLD_=65536``, which returns memory at
    nearly every free of torch's mid-sized tensors: 24 stiffness tasks on digits-resnet56 took
    42-46 s of compute per worker with it and 37-40 s without it (benchmarks/README.md, "Dask
    with a reused client").
    Pass it to ``dask.distributed.Client`` for a cluster of your own that resdyn runs on:
    ``run_study(..., executor=Client(local_cluster(2)))``.
    """
    import dask
    from dask.distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            host="127.0.0.1", dashboard_address=None)


@contextmanager
def _dask(executor: Executor, context: RunContext, models: Models) -> Iterator[Runner]:
    from dask.distributed import Client, as_completed

    cluster = None
    if executor.client is not None:
        client = executor.client  # the caller's: used as is, left open
    elif executor.scheduler:
        try:
            client = Client(executor.scheduler, timeout=executor.timeout)
        except (OSError, TimeoutError) as e:
            raise executor.unreachable(e) from None
    else:
        cluster = local_cluster(executor.workers or 2)
        client = Client(cluster)
        gpus = _gpus(context)
        if gpus > 1:
            from .dask_models import SpreadGpus

            client.register_plugin(SpreadGpus(gpus), name="resdyn-gpus")

    sent = dict(models)
    if sent:  # every worker, also one that joins later, holds the models before any task
        _send(client, sent)

    def run(tasks: Sequence[Task], more: Models) -> Iterator[tuple[Task, Outcome]]:
        new = {k: m for k, m in more.items() if k not in sent}
        if new:  # checkpoints trained by an earlier wave: the plugin is replaced, all models
            sent.update(new)
            _send(client, dict(sent))
        on_worker = context if executor.threads is None else replace(
            context, threads=context.threads or executor.threads)

        def submit(t: Task) -> Any:
            return client.submit(execute, t, on_worker, pure=False,
                                 key=f"{t.analysis}-{t.key}-{time.monotonic_ns()}")

        futures = {submit(t): t for t in tasks}
        killed = []
        for future in as_completed(futures):
            if _killed(future):
                killed.append(futures[future])
            else:
                yield futures[future], future.result()
        # A worker's death counts against every task it held, so a task that only shared a
        # worker with one that crashes it fails too: each runs again alone, and only one that
        # kills its worker by itself is recorded as failed.
        for task in killed:
            yield task, _outcome(submit(task), task)

    try:
        yield run
    finally:
        if sent and cluster is None:  # a long-lived cluster's workers let the models go
            with suppress(Exception):
                client.unregister_worker_plugin("resdyn-models")
        if executor.client is None:
            client.close()
        if cluster is not None:
            cluster.close()


def _send(client: Any, models: dict[str, Any]) -> None:
    """Register the run's models (and the declared blocks they use) on every worker.

    Raises:
        ModuleNotFoundError: a worker cannot import the module of a class in a model (one
            not installed there); the message names it and the two fixes.
    """
    from .dask_models import ModelCache

    try:
        client.register_plugin(ModelCache(models), name="resdyn-models")
    except Exception as e:  # a worker could not unpickle a class of the model
        # the scheduler hands a worker's error back as an Exception naming the original
        found = re.search(r"No module named '([^']+)'", str(e))
        if found is None:
            raise
        missing = found.group(1)
        raise ModuleNotFoundError(
            f"the Dask workers cannot import module {missing!r}, which defines a part of the "
            f"model ({e}): install it on the workers, or send it with the model by value: "
            f"import cloudpickle, {missing.split('.')[0]}; "
            f"cloudpickle.register_pickle_by_value({missing.split('.')[0]}) before the run "
            "(classes defined in a notebook or script, __main__, go by value already)",
            name=missing) from None


def _killed(future: Any) -> bool:
    """Whether Dask gave up on ``future``'s task because the workers running it died."""
    from distributed import KilledWorker

    return future.status == "error" and isinstance(future.exception(), KilledWorker)


def _outcome(future: Any, task: Task) -> Outcome:
    """The outcome of ``task``'s ``future``; Dask's KilledWorker (the task's worker died more
    often than ``distributed.scheduler.allowed-failures`` allows) becomes the task's error, so
    the run goes on and says which task it was."""
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker as e:
        n = e.allowed_failures + 1
        return "error", (
            "KilledWorker",
            f"task {task.id} was not finished: the Dask worker running it died {n} times "
            f"(distributed.scheduler.allowed-failures is {e.allowed_failures}). It may crash "
            "its process (a segfault, running out of memory): run it with the serial executor "
            "to see its error, or give the workers more memory.", str(e))


EXECUTORS: dict[str, Callable[[Executor, RunContext, Models],
                               AbstractContextManager[Runner]]] = {
    "serial": _serial,
    "dask": _dask,
}


def _gpus(context: RunContext) -> int:
    """GPUs a local cluster spreads its workers over: all visible ones for a run on "cuda:0"
    (what "cuda" and "auto" resolve to), none for the CPU or an explicitly numbered GPU."""
    if context.device != "cuda:0":
        return 0
    import torch

    return torch.cuda.device_count()


def waves(tasks: Sequence[Task]) -> list[list[Task]]:
    """Tasks grouped so that each runs after every task it names in ``after``.

    Raises:
        ValueError: a dependency on an unknown task, or a cycle.
    """
    ids = {t.id for t in tasks}
    unknown = sorted({a for t in tasks for a in t.after} - ids)
    if unknown:
        raise ValueError(f"tasks depend on unknown tasks {unknown}")
    level: dict[str, int] = {}
    left = list(tasks)
    while left:
        ready = [t for t in left if all(a in level for a in t.after)]
        if not ready:
            raise ValueError(f"tasks depend on each other in a circle: {[t.id for t in left]}")
        for t in ready:
            level[t.id] = 1 + max((level[a] for a in t.after), default=-1)
        left = [t for t in left if t.id not in level]
    out: list[list[Task]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for t in tasks:
        out[level[t.id]].append(t)
    return out


def run_tasks(tasks: Sequence[Task], store: TaskStore, executor: Executor | str = "serial",
              progress: Progress | None = None, context: RunContext = DEFAULT,
              models: Models | None = None) -> RunStats:
    """Run the tasks not yet in ``store`` in ``context`` and store each result (or its error)
    as it arrives.

    ``models``: the models the tasks' references name (cache key -> model), sent once to every
    Dask worker, so that workers need not see the run folder.

    Tasks run in waves (see :func:`waves`); a task whose dependency failed is recorded as
    failed without running.

    Returns:
        :class:`RunStats`; tasks that raised are recorded in the store's errors and retried by
        the next run.

    Example:
        >>> import pandas as pd, tempfile
        >>> from resdyn.runs import TaskStore
        >>> def square(x):
        ...     return pd.DataFrame({"x": [x], "y": [x * x]})
        >>> tasks = [Task("squares", f"x{x}", square, {"x": x}) for x in range(3)]
        >>> store = TaskStore(tempfile.mkdtemp())
        >>> run_tasks(tasks, store, progress=lambda p: print(p.label, p.left))
        starting 3
        squares x0 2
        squares x1 1
        squares x2 0
        RunStats(total=3, resumed=0, ran=3, failed=0)
        >>> store.load("squares")  # the executor adds where each row was computed
           x  y device
        0  0  0    cpu
        1  1  1    cpu
        2  2  4    cpu
        >>> run_tasks(tasks, store)  # a second run resumes: nothing left to do
        RunStats(total=3, resumed=3, ran=0, failed=0)
    """
    executor = Executor.of(executor)
    groups = waves(tasks)
    stored = {t.id for t in tasks if store.done(t.analysis, t.key)}
    resumed = len(stored)
    ran = failed = 0
    broken: set[str] = set()

    pending = Counter(t.analysis for t in tasks if t.id not in stored)

    def report(label: str, analysis: str = "") -> None:
        if progress is not None:
            progress(RunProgress(len(tasks), resumed, resumed + ran, failed, label, analysis,
                                 {a: n for a, n in pending.items() if n}))

    def record(task: Task, status: str, payload: Any) -> None:
        nonlocal ran, failed
        pending[task.analysis] -= 1
        if status == "ok":
            store.save(task.analysis, task.key, payload.rows, payload.files)
            ran += 1
        else:
            store.fail(task.analysis, task.key, *payload)
            broken.add(task.id)
            failed += 1
        report(f"{task.analysis} {task.key}", task.analysis)

    report("resuming" if resumed else "starting")
    with ExitStack() as stack:
        run = None  # the executor starts (a cluster, maybe) only when there is work
        for group in groups:
            group = [t for t in group if t.id not in stored]
            blocked = [t for t in group if broken.intersection(t.after)]
            for task in blocked:
                need = sorted(broken.intersection(task.after))
                record(task, "error", ("NotRun", f"needs {', '.join(need)}, which failed", ""))
            runnable = [t for t in group if t not in blocked]
            if runnable:
                run = run or stack.enter_context(
                    EXECUTORS[executor.name](executor, context, models or {}))
                runnable, trained = _with_checkpoints(runnable)
                for task, (status, payload) in run(runnable, trained):
                    record(task, status, payload)
    return RunStats(len(tasks), resumed, ran, failed)


def _with_checkpoints(tasks: Sequence[Task]) -> tuple[list[Task], dict[str, Any]]:
    """The tasks with every reference to a checkpoint of this run (:meth:`ModelRef.checkpoint`,
    written by an earlier wave) replaced by one that names the model by its digest, and those
    models (digest -> model): loaded here, where the run folder is, and sent to the workers."""
    models: dict[str, Any] = {}
    refs: dict[str, ModelRef] = {}

    def fixed(value: Any) -> Any:
        if isinstance(value, ModelRef) and value.is_checkpoint:
            if value.path not in refs:
                refs[value.path], model = value.pinned()
                models[refs[value.path].key] = model
            return refs[value.path]
        return value

    out = [replace(t, kwargs={k: fixed(v) for k, v in t.kwargs.items()}) for t in tasks]
    return out, models

