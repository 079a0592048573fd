"""What every ``resdyn`` study command shares, declared once: the run options (``--out``,
``--fresh``, ``--config``, ``--executor``, ``--workers``, ``--scheduler``, ``--device``,
``--precision``), the model options of the studies of one model, one-line errors, progress,
Ctrl-C, and the run itself.

A study command declares only its own options and returns the study and its config; the
:func:`study_command` decorator adds the rest to its signature and runs it.
"""

from __future__ import annotations

import functools
import inspect
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .cli_config import load_options, write_options

# wide enough for unit tables when piped to a file (rich assumes 80 columns off a terminal);
# messages never wrap (soft_wrap): a path or a name stays whole, whatever the terminal's width;
# tables (soft_wrap=False) fit the terminal
console = Console(width=None if sys.stdout.isatty() else 140, soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="zoo name or checkpoint (see "
                                                             "`resdyn models`)")]
WeightsOpt = Annotated[Path | None, typer.Option("--weights", help="local state dict "
                                                                   "(.pth/.safetensors), or "
                                                                   "'random' (reproducible "
                                                                   "random init)")]
DataOpt = Annotated[str, typer.Option("--data", "-d",
                                      help="digits | cifar10 | mnist | PATH.npz | image folder")]
AnySizeOpt = Annotated[bool, typer.Option("--any-input-size", help="allow images of another "
                                          "size than the model was trained on")]
DeviceOpt = Annotated[str, typer.Option(help="cpu | cuda | cuda:N | auto (a GPU where there is "
                                        "one); rows record where they were computed")]


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's input errors into one red line and exit status 2, not a traceback."""
    try:
        yield
    except typer.Exit:
        raise  # an exit status already decided (e.g. 130 after Ctrl-C)
    except (ValueError, KeyError, RuntimeError, OSError) as e:
        msg = str(e.args[0] if isinstance(e, KeyError) and e.args else e)
        msg = " ".join(line.strip() for line in msg.splitlines() if line.strip())  # one line
        err.print(f"[bold red]error:[/] {escape(msg)}", highlight=False)
        raise typer.Exit(2) from None


# ---------------------------------------------------------------- progress

@contextmanager
def progress_bar(description: str, every: float = 10.0, eta: bool = True,
                 ) -> Iterator[Callable[[int, int, str], None]]:
    """A rich progress bar fed by a callback(done, total, label).

    Off a terminal (a log file, a batch job) a live bar shows nothing until the end, so there
    the callback prints a plain line at most every ``every`` seconds, and at the last step.
    ``eta``: estimate the time left from done/total (off when the label carries its own).
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


@contextmanager
def study_progress(description: str) -> Iterator[Callable]:
    """Progress of a study run: says what it resumes, then done, failed, left and time left
    (estimated per analysis by :class:`resdyn.runs.TimeLeft`)."""
    from .runs import TimeLeft

    clock = TimeLeft()
    with progress_bar(description, eta=False) as update:
        def show(p) -> None:
            show.last = p  # type: ignore[attr-defined]  # what an interrupt reports as kept
            clock.update(p)
            if p.label in ("resuming", "starting"):
                what = (f"resuming: {p.resumed} of {p.total} tasks already done, {p.left} to run"
                        if p.resumed else f"{p.total} tasks to run")
                err.print(f"{description}: {what}", highlight=False)
                return
            label = f"{p.label}" + (f" · {p.failed} failed" if p.failed else "")
            if p.left:
                seconds, untimed = clock.left(p)
                label += f" · {p.left} left, ~{_duration(seconds)}" + (
                    f" + {untimed} not yet timed" if untimed else "")
            update(p.done + p.failed, p.total, label)

        yield show


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


@contextmanager
def interrupted(kept: Callable[[], str]) -> Iterator[None]:
    """Ctrl-C: say what is kept and that the same command resumes; exit status 130."""
    try:
        yield
    except KeyboardInterrupt:
        err.print(f"interrupted: {kept()}; the same command resumes from there",
                  highlight=False)
        raise typer.Exit(130) from None


def report_failures(failed: int, total: int, errors, where: str) -> None:
    """Say how many tasks failed, and their error once when it is the same for every one."""
    from .studies.runner import one_error

    same = one_error(errors) if len(errors) else None
    if same is not None:
        err.print(f"[bold red]{failed} of {total} tasks failed[/], every one with {same}; fix "
                  "its cause and run the command again", highlight=False)
        return
    err.print(f"[bold red]{failed} of {total} tasks failed[/] (see {where}); rerun the same "
              "command to retry them", highlight=False)


# ---------------------------------------------------------------- the run options, once

#: ``resdyn --threads N`` (set by the command line's callback before any command runs).
THREADS: list[int | None] = [None]


@dataclass(frozen=True)
class RunOptions:
    """The options every study command takes (see :func:`run_parameters`)."""

    out: Path
    fresh: bool = False
    executor: str = "serial"
    workers: int | None = None
    scheduler: str | None = None
    device: str = "cpu"
    precision: str = "float64"

    @property
    def threads(self) -> int | None:
        """``resdyn --threads N``, or None: the automatic policy (see :mod:`resdyn._threads`)."""
        return THREADS[0]

    def executor_spec(self):
        """The executor: Dask when --workers or --scheduler is given."""
        from .runs import Executor

        name = ("dask" if self.executor == "serial" and (self.workers is not None
                                                          or self.scheduler) else self.executor)
        return Executor(name, workers=self.workers, scheduler=self.scheduler)


def _option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)


def run_parameters(out: str, precision: bool = True) -> list[inspect.Parameter]:
    """The run options as parameters of a command whose folder defaults to ``out``."""
    params = [
        _option("out", Annotated[Path, typer.Option(
            help="run folder (resumable; refuses another configuration; one writer at a "
                 "time)")], Path(out)),
        _option("fresh", Annotated[bool, typer.Option(
            "--fresh", help="remove what resdyn wrote in --out and start over")], False),
        _option("config", Annotated[Path | None, typer.Option(
            "--config", callback=load_options, is_eager=True, dir_okay=False,
            help="TOML file of this command's options (flags given too win); every run writes "
                 "its resolved options to DIR/options.toml")], None),
        _option("executor", Annotated[str, typer.Option(
            help="serial | dask (implied by --workers/--scheduler)")], "serial"),
        _option("workers", Annotated[int | None, typer.Option(
            help="run tasks on a local Dask cluster of N worker processes")], None),
        _option("scheduler", Annotated[str | None, typer.Option(
            help="run tasks on a running Dask scheduler, e.g. tcp://host:8786")], None),
        _option("device", DeviceOpt, "cpu"),
    ]
    if precision:
        params.append(_option("precision", Annotated[str, typer.Option(
            help="Jacobian products in float64 | float32 (the Gram matrix and eigensolves stay "
                 "float64; float32 products move σ by < 1e-7·σ_max)")], "float64"))
    return params


def _own_parameters(fn: Callable) -> list[inspect.Parameter]:
    """``fn``'s parameters with their annotations evaluated (a module with postponed
    annotations gives strings, which typer would not read once the signature is replaced)."""
    hints = get_type_hints(fn, include_extras=True)
    return [p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(fn).parameters.values()]


def with_run_options(out: str) -> Callable:
    """The run options for a command that runs studies itself (the demo): its ``**run_kwargs``
    become them, with the folder defaulting to ``out``."""
    def decorate(command: Callable) -> Callable:
        own = [p for p in _own_parameters(command) if p.kind is not p.VAR_KEYWORD]
        setattr(command, "__signature__", inspect.Signature(own + run_parameters(out)))  # noqa: B010
        return command

    return decorate


MODEL_PARAMETERS = [
    _option("model", ModelOpt, ...),
    _option("data", DataOpt, "digits"),
    _option("weights", WeightsOpt, None),
    _option("any_input_size", AnySizeOpt, False),
]


def study_command(out: str, *, model: bool = True, data: bool = False,
                  precision: bool = True) -> Callable:
    """Make a function that declares a study's own options into a full study command.

    The decorated function takes its own options and returns ``(study, config)``; the
    command also takes the run options (and with ``model`` the model options --model, --data,
    --weights, --any-input-size; with ``data`` only --data), loads model and data, runs the
    study with progress into --out, prints the summary and exits 1 if tasks failed, 2 for bad
    input, 130 on Ctrl-C.
    """
    def decorate(declare: Callable) -> Callable:
        own = _own_parameters(declare)
        extra = (MODEL_PARAMETERS if model else [_option("data", DataOpt, "digits")] if data
                 else []) + run_parameters(out, precision)
        names = {p.name for p in extra}

        @functools.wraps(declare)
        def command(ctx: typer.Context, **kwargs: Any) -> None:
            common = {n: kwargs.pop(n) for n in names if n in kwargs}
            common.pop("config", None)
            loading = {n: common.pop(n) for n in ("model", "data", "weights", "any_input_size")
                       if n in common}
            with user_errors():
                study, config = declare(**kwargs)
            run_command(ctx, study, config, RunOptions(**common), **loading)

        params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    annotation=typer.Context)]
        params += [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + extra
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {}  # the signature carries every annotation
        del command.__wrapped__  # typer reads the signature above, not the declaring function
        return command

    return decorate


def load_model_and_data(model: str, weights: Path | None, data: str,
                        any_input_size: bool = False):
    """The model and the test split of the data, checked against each other."""
    from .data import check_compatible, load_for
    from .models import load_model

    m = load_model(model, weights)
    ds = load_for(m, data, split="test")
    check_compatible(m, ds, any_input_size=any_input_size)
    return m, ds


def run_command(ctx: typer.Context, study, config, run: RunOptions, *, model: str | None = None,
                data: str | None = None, weights: Path | None = None,
                any_input_size: bool = False) -> None:
    """Load, run one study with progress, print where and its summary; exit 1 if tasks failed."""
    from .runs.folder import check_out
    from .studies import run_study

    with user_errors():
        check_out(run.out)
        ex = run.executor_spec()
        if model is None:  # a study that trains its own networks, or of no data at all
            from .data import load_images

            m, ds = None, load_images(data, split="test") if data is not None else None
        else:
            if data is None:
                raise ValueError(f"{study.name} analyses a model on a data set; give --data")
            m, ds = load_model_and_data(model, weights, data, any_input_size)
        with study_progress(study.name) as show, interrupted(lambda: _kept(show, run.out)):
            result = run_study(study, m, ds, config, run.out, model_name=model, executor=ex,
                               progress=show, fresh=run.fresh, device=run.device,
                               precision=run.precision, threads=run.threads)
    write_options(result.out / "options.toml", ctx)
    console.print(f"{result.tasks_run} tasks run, {result.stats.resumed} resumed; tables, figures "
                  f"and summary in {result.out}/")
    console.print(result.summary.read_text(), markup=False, highlight=False)
    if result.recomputed:
        err.print(f"[yellow]{len(result.recomputed)} stored task file(s) in {result.out}/tasks "
                  "did not prove they are this run's results and were computed again[/] (listed "
                  "in summary.md)", highlight=False)
    if result.strays:
        err.print(f"[yellow]{len(result.strays)} file(s) in {result.out}/tasks belong to no task "
                  "of this run and were left out of the tables[/] (listed in summary.md)",
                  highlight=False)
    if result.failed:
        report_failures(result.failed, result.stats.total, result.errors,
                        f"{result.out}/errors.parquet")
        raise typer.Exit(1)


def _kept(show: Callable, out: Path) -> str:
    p = getattr(show, "last", None)
    return (f"{p.done} of {p.total} tasks are kept in {out}" if p is not None
            else f"nothing was computed yet in {out}")
