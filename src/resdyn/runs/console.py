"""Progress of long work on a console: a live bar on a terminal, a plain line every few
seconds off one (a log file, a batch job), and what a run says about its failed tasks.

The ``resdyn`` commands show progress with these; a script or a notebook can too:

    >>> from resdyn.runs.console import console_progress
    >>> with console_progress("spectra") as show:  # doctest: +SKIP
    ...     run_study(SPECTRA, model, data, config, "out/spectra", progress=show)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .progress import RunProgress, TimeLeft

#: Where progress and warnings go: standard error; a message never wraps (a path stays whole).
err = Console(stderr=True, soft_wrap=True)


@contextmanager
def progress_bar(description: str, every: float = 10.0, eta: bool = True,
                 ) -> Iterator[Callable[[int, int, str], None]]:
    """A progress bar fed by a callback(done, total, label).

    Off a terminal a live bar shows nothing until the end, so there the callback prints a plain
    line at most every ``every`` seconds, and at the last step. ``eta``: estimate the time left
    from done/total (off when the label carries its own).
    """
    if not err.is_terminal:
        start, last = time.monotonic(), -every

        def line(done: int, total: int, label: str = "") -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= every or done == total:
                last = now
                left = (f", ~{(now - start) / done * (total - done):.0f} s left"
                        if done and eta else "")
                err.print(f"{description} {done}/{total} {label} — {now - start:.0f} s elapsed"
                          f"{left}", highlight=False)

        yield line
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[label]}")]
    if eta:
        columns.append(TimeRemainingColumn(elapsed_when_finished=True))
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(description, total=None, label="")

        def update(done: int, total: int, label: str = "") -> None:
            bar.update(task, completed=done, total=total, label=label)

        yield update


class _Shown:
    """The progress callback of a study run; ``last``: the latest progress (what Ctrl-C keeps)."""

    def __init__(self, description: str, update: Callable[[int, int, str], None]):
        self.description, self.update, self.clock = description, update, TimeLeft()
        self.last: RunProgress | None = None

    def __call__(self, p: RunProgress) -> None:
        self.last = p
        self.clock.update(p)
        if p.label in ("resuming", "starting"):
            what = (f"resuming: {p.resumed} of {p.total} tasks already done, {p.left} to run"
                    if p.resumed else f"{p.total} tasks to run")
            err.print(f"{self.description}: {what}", highlight=False)
            return
        label = p.label + (f" · {p.failed} failed" if p.failed else "")
        if p.left:
            seconds, untimed = self.clock.left(p)
            label += f" · {p.left} left, ~{_duration(seconds)}" + (
                f" + {untimed} not yet timed" if untimed else "")
        self.update(p.done + p.failed, p.total, label)

    def kept(self, out: object) -> str:
        """What an interrupted run keeps, in words."""
        p = self.last
        return (f"{p.done} of {p.total} tasks are kept in {out}" if p is not None
                else f"nothing was computed yet in {out}")


@contextmanager
def console_progress(description: str) -> Iterator[_Shown]:
    """The ``progress`` of :func:`~resdyn.studies.run_study` on a console: says what it resumes,
    then done, failed, left and the time left (estimated per analysis by
    :class:`~resdyn.runs.TimeLeft`)."""
    with progress_bar(description, eta=False) as update:
        yield _Shown(description, update)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def one_error(errors: pd.DataFrame) -> str | None:
    """"Type: message" when every recorded error is the same (more than one), else None."""
    kinds = set(zip(errors["error"], errors["message"], strict=True)) if len(errors) else set()
    if len(errors) < 2 or len(kinds) != 1:
        return None
    error, message = kinds.pop()
    return f"{error}: {message}"


def failure_message(failed: int, total: int, errors: pd.DataFrame, where: str) -> str:
    """How many tasks failed, with their error once when it is the same for every one (rich
    markup; the error's own words escaped)."""
    same = one_error(errors)
    if same is not None:
        return (f"[bold red]{failed} of {total} tasks failed[/], every one with {escape(same)}; "
                "fix its cause and run the command again")
    return (f"[bold red]{failed} of {total} tasks failed[/] (see {escape(where)}); rerun the "
            "same command to retry them")
