"""How many CPU threads torch uses, per phase of a task, when a run sets none (the default).

The products of a Jacobian on a narrow block (a digits unit, up to a few thousand wide) are
small convolutions: a second thread only adds synchronisation, and beside another busy process
torch's default threads wait on each other (measured 5.6x slower beside one 2-thread job;
benchmarks/README.md, "Threads"). Wide blocks (CIFAR units, 4096 wide and more) and their dense
solves do gain from more threads, as long as the cores are free. So under the automatic policy:

- every phase runs on one thread, except
- the products and dense solves of a block at least :data:`PARALLEL_FROM` wide, which use the
  cores other processes left free over the last second (measured from ``/proc/stat`` less this
  process's own CPU time, read at the start of each such phase; on a system without
  ``/proc/stat``, one thread).

This module imports nothing from resdyn; :func:`resdyn.runs.context.using` turns the policy on
around every task of a run without ``threads``, and :func:`threads_for` marks the wide phases.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

#: The cores this process may run on.
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
#: Blocks at least this wide (the Jacobian's wider side) get more than one thread.
PARALLEL_FROM = 4096
#: The shortest window over which the other processes' load is measured, seconds.
WINDOW = 0.05
#: The load is that of the last RECENT seconds, read every EVERY seconds.
RECENT = 1.0
EVERY = 0.1

_AUTO: ContextVar[bool] = ContextVar("resdyn_automatic_threads", default=False)


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


def _running_now() -> int:
    """Free cores by the threads the kernel has running at this instant, less the one asking
    (``/proc/loadavg``); one where it cannot be read."""
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return 1
    return max(1, min(CORES, CORES - (running - 1)))


class _Meter:
    """Cores the other processes left free over the last :data:`RECENT` seconds.

    A daemon thread reads the counters every :data:`EVERY` seconds (a few microseconds each), so
    a competing job that starts or stops is seen within about a second, not one task later.
    """

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float, float]] = deque(maxlen=int(RECENT / EVERY) + 2)
        self._lock = threading.Lock()
        self._owner = -1  # the process whose thread samples (a forked child starts its own)

    def _run(self) -> None:
        while True:
            now = _sample()
            if now is None:
                return
            with self._lock:
                self._samples.append(now)
            time.sleep(EVERY)

    def start(self) -> None:
        """Start sampling in this process (once)."""
        if self._owner != os.getpid():
            self._owner = os.getpid()
            self._samples.clear()
            first = _sample()
            if first is None:
                return
            self._samples.append(first)
            threading.Thread(target=self._run, name="resdyn-core-meter", daemon=True).start()

    def free(self) -> int:
        self.start()
        now = _sample()
        with self._lock:
            old = next((s for s in self._samples if now is not None and now[2] - s[2] <= RECENT),
                       None)
        if now is None or old is None:
            return 1
        if now[2] - old[2] < WINDOW:  # just started: the threads running elsewhere right now
            return _running_now()
        busy, own, wall = (b - a for a, b in zip(old, now, strict=True))
        others = max(0.0, busy - own) / wall
        return max(1, min(CORES, int(CORES - others + 0.5)))


_METER = _Meter()


def free_cores() -> int:
    """The cores the other processes on this machine left free over the last second or so (at
    least one); one where that cannot be measured (yet)."""
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
def automatic() -> Iterator[None]:
    """The automatic policy inside the ``with`` (one task): one thread, and the free cores for
    the wide phases (:func:`threads_for`). The caller's threads are restored after."""
    _METER.start()
    token = _AUTO.set(True)
    try:
        with _threads(1):
            yield
    finally:
        _AUTO.reset(token)


@contextmanager
def threads_for(width: int) -> Iterator[None]:
    """A phase on a block ``width`` wide: under :func:`automatic`, the cores free now
    (:func:`free_cores`) for a block at least :data:`PARALLEL_FROM` wide and one thread
    otherwise; elsewhere torch's setting."""
    if not _AUTO.get():
        yield
        return
    with _threads(free_cores() if width >= PARALLEL_FROM else 1):
        yield
