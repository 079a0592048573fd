"""How many CPU threads torch uses, per phase of a task, when a run sets none (the default).

The products of a Jacobian on a narrow block (a digits unit, up to a few thousand wide) are
small convolutions: a second thread only adds synchronisation, and beside another busy process
torch's default threads wait on each other (measured 5.6x slower beside one 2-thread job;
benchmarks/README.md, "Threads"). Wide blocks (CIFAR units, 4096 wide and more) and their dense
solves do gain from more threads, as long as the cores are free. So under the automatic policy:

- every phase runs on one thread, except
- the products and dense solves of a block at least :data:`PARALLEL_FROM` wide, which use the
  cores other processes left free during the previous task (measured from ``/proc/stat`` less
  this process's own CPU time; on a system without ``/proc/stat``, one thread).

This module imports nothing from resdyn; :func:`resdyn.runs.context.using` turns the policy on
around every task of a run without ``threads``, and :func:`threads_for` marks the wide phases.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

#: The cores this process may run on.
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
#: Blocks at least this wide (the Jacobian's wider side) get more than one thread.
PARALLEL_FROM = 4096
#: The shortest window over which the other processes' load is measured.
WINDOW = 0.05

_FREE: ContextVar[int | None] = ContextVar("resdyn_free_cores", default=None)  # noqa: B039


def _sample() -> tuple[float, float, float] | None:
    """(busy CPU seconds of the whole machine, of this process, wall time), or None where the
    machine's counters cannot be read."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait
    own = os.times()
    return busy, own.user + own.system, time.monotonic()


class _Meter:
    """Cores the other processes left free since the previous reading."""

    def __init__(self) -> None:
        self._last = _sample()
        self._free = 1  # until a window long enough has been measured

    def free(self) -> int:
        now = _sample()
        if self._last is None or now is None:
            return 1
        busy, own, wall = (b - a for a, b in zip(self._last, now, strict=True))
        if wall >= WINDOW:  # a shorter window keeps the last answer (and goes on growing)
            others = max(0.0, busy - own) / wall
            self._free = max(1, min(CORES, int(CORES - others + 0.5)))
            self._last = now
        return self._free


_METER = _Meter()


def free_cores() -> int:
    """The cores the other processes on this machine left free since the last call (at least
    one); one where that cannot be measured."""
    return _METER.free()


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextmanager
def automatic() -> Iterator[int]:
    """The automatic policy inside the ``with`` (one task): one thread, wide phases on the free
    cores (measured now); yields that number. The caller's threads are restored after."""
    free = free_cores()
    token = _FREE.set(free)
    try:
        with _threads(1):
            yield free
    finally:
        _FREE.reset(token)


@contextmanager
def threads_for(width: int) -> Iterator[None]:
    """A phase on a block ``width`` wide: under :func:`automatic`, the free cores for a block at
    least :data:`PARALLEL_FROM` wide and one thread otherwise; elsewhere torch's setting."""
    free = _FREE.get()
    if free is None:
        yield
        return
    with _threads(free if width >= PARALLEL_FROM else 1):
        yield
