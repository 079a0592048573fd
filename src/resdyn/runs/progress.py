"""Progress of a run: where it stands after every task (:class:`RunProgress`), the callback
that receives it (:data:`Progress`), and the time it has left (:class:`TimeLeft`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RunProgress:
    """Where a run stands: ``resumed`` were done before it started, ``done`` counts them too.

    ``analysis``: of the task just finished (empty at the start); ``pending``: tasks still to
    run per analysis (for time-left estimates that know a training task from a quick one).

    Example:
        >>> p = RunProgress(total=5, resumed=1, done=3, failed=1, label="squares x2",
        ...                 analysis="squares", pending={"squares": 1})
        >>> p.left
        1
        >>> f"{p.done}/{p.total} done ({p.resumed} resumed), {p.failed} failed, {p.left} left"
        '3/5 done (1 resumed), 1 failed, 1 left'
    """

    total: int
    resumed: int
    done: int
    failed: int
    label: str = ""
    analysis: str = ""
    pending: Mapping[str, int] = field(default_factory=dict)

    @property
    def left(self) -> int:
        return self.total - self.done - self.failed


Progress = Callable[[RunProgress], None]


class TimeLeft:
    """The time a run has left, estimated per analysis from this run's own tasks.

    Feed it every :class:`RunProgress` (:meth:`update`); the time between two finished tasks
    counts for the second's analysis, so a study whose training tasks take minutes and whose
    analyses take a second is not misjudged. Tasks of an analysis not yet timed are counted,
    not guessed.

    Example:
        >>> clock = TimeLeft()
        >>> clock.update(RunProgress(3, 0, 0, 0, "starting", "", {"a": 3}))
        >>> clock.left(RunProgress(3, 0, 0, 0, "starting", "", {"a": 3}))
        (0, 3)
    """

    def __init__(self) -> None:
        self._last = time.monotonic()
        self._spent: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def update(self, p: RunProgress) -> None:
        now = time.monotonic()
        if p.analysis:
            self._spent[p.analysis] = self._spent.get(p.analysis, 0.0) + now - self._last
            self._count[p.analysis] = self._count.get(p.analysis, 0) + 1
        self._last = now

    def left(self, p: RunProgress) -> tuple[float, int]:
        """(seconds the timed analyses have left, tasks of analyses not yet timed)."""
        timed = sum(n * self._spent[a] / self._count[a] for a, n in p.pending.items()
                    if a in self._count)
        return timed, sum(n for a, n in p.pending.items() if a not in self._count)
