"""Where and how a run computes: one :class:`RunContext` (device, precision, threads) per run.

The runner declares it once; the executor makes it current around every task, in this process
or on a worker, so a task reads it (:func:`current`) instead of taking it as a parameter, and a
new study gets it for free. :meth:`resdyn.runs.ModelRef.load` gives the model on the context's
device; :meth:`RunContext.put` moves a task's inputs there; Jacobian operators are built in
:attr:`RunContext.dtype`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace

import torch

from .._threads import automatic
from .._torch import precision_dtype, resolve_device

#: The most torch threads a run asks for per process (more than any machine's cores).
MAX_THREADS = 1024


@dataclass(frozen=True)
class RunContext:
    """Where and how tasks compute.

    Attributes:
        device: a torch device name as :func:`resdyn._torch.resolve_device` gives it ("cpu",
            "cuda:0"); :meth:`on` checks and resolves one ("auto" included).
        precision: of the Jacobian products, "float64" or "float32" (part of a run's identity:
            results depend on it; the device is recorded per row instead, see the README).
        threads: torch threads per process; None (the default): the automatic policy of
            :mod:`resdyn._threads`, one thread except for the wide blocks' products and dense
            solves, which get the cores other processes leave free.

    Example:
        >>> import torch
        >>> run = RunContext.on("cpu", precision="float32")
        >>> run
        RunContext(device='cpu', precision='float32', threads=None)
        >>> run.dtype, run.put(torch.ones(2)).device
        (torch.float32, device(type='cpu'))
        >>> RunContext(threads=0)
        Traceback (most recent call last):
            ...
        ValueError: threads must be between 1 and 1024; got 0
    """

    device: str = "cpu"
    precision: str = "float64"
    threads: int | None = None

    def __post_init__(self) -> None:
        precision_dtype(self.precision)  # raises for an unknown one, naming the valid
        if self.threads is not None and not 1 <= self.threads <= MAX_THREADS:
            raise ValueError(f"threads must be between 1 and {MAX_THREADS}; got {self.threads}")

    @classmethod
    def on(cls, device: str = "cpu", precision: str = "float64", threads: int | None = None,
           ) -> RunContext:
        """A context on ``device`` checked against this machine ("auto": a GPU where there is
        one, else the CPU).

        Raises:
            ValueError: an unknown or absent device, an unknown precision.
        """
        return cls(str(resolve_device(device)), precision, threads)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the Jacobian products."""
        return precision_dtype(self.precision)

    def put(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` on this context's device (no copy when it is there already)."""
        return t.to(self.device)


#: The context outside any run: the CPU, float64 products (torch's threads: the automatic
#: policy applies only inside :func:`using`).
DEFAULT = RunContext()
_CURRENT: ContextVar[RunContext] = ContextVar("resdyn_run_context", default=DEFAULT)  # noqa: B039 - frozen


#: This process's GPU when a local cluster spreads its workers over the GPUs (see :func:`pin`).
_PINNED: str | None = None


def pin(device: str | None) -> None:
    """Make ``device`` this process's GPU: a run context on "cuda:0" (what "cuda" and "auto"
    resolve to) computes there instead; other devices are kept. None undoes it. A local Dask
    cluster pins worker i to GPU i mod G (:func:`spread`), so ``--workers N --device cuda`` uses
    every GPU the run can see."""
    global _PINNED
    _PINNED = device


def spread(worker: object, count: int) -> str:
    """The GPU of a local cluster's worker: its number (LocalCluster names workers 0, 1, ...)
    modulo the ``count`` GPUs.

    Example:
        >>> [spread(i, 2) for i in range(3)]
        ['cuda:0', 'cuda:1', 'cuda:0']
    """
    try:
        index = int(str(worker))
    except ValueError:
        raise ValueError(f"worker {worker!r} has no number to pick a GPU by") from None
    return f"cuda:{index % count}"


def current() -> RunContext:
    """The context of the task being run (CPU, float64 outside any run).

    Example:
        >>> current()
        RunContext(device='cpu', precision='float64', threads=None)
        >>> with using(RunContext(precision="float32", threads=1)):  # what the executor does
        ...     current().dtype
        torch.float32
    """
    return _CURRENT.get()


@contextmanager
def using(context: RunContext) -> Iterator[RunContext]:
    """Make ``context`` current while the block runs, on this process's GPU where one is
    pinned (:func:`pin`), with its threads, or without them under the automatic policy of
    :mod:`resdyn._threads` (one thread, the free cores for wide blocks); the caller's thread
    count is restored after."""
    if _PINNED is not None and context.device == "cuda:0":
        context = replace(context, device=_PINNED)
    before = torch.get_num_threads()
    token = _CURRENT.set(context)
    try:
        if context.threads is None:
            with automatic():
                yield context
        else:
            torch.set_num_threads(context.threads)
            yield context
    finally:
        _CURRENT.reset(token)
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
