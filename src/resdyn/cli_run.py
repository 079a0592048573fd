"""What every ``resdyn`` study command shares, declared once: the model and run options (as
option classes, like the studies' configs), one-line errors, progress, Ctrl-C, and the run.

:func:`study_command` makes a study's command from its config's fields
(:mod:`resdyn.studies.options`), the model options (of a study of one model) and the run
options; the option file (``--config``) and ``options.toml`` take the same options by the same
names.
"""

from __future__ import annotations

import sys
import time
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, Field, asdict, dataclass
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ._torch import PRECISIONS
from .cli_config import read_options, write_options
from .runs.executor import MAX_WORKERS
from .studies.options import (
    check_value,
    cli_fields,
    flag,
    from_file,
    from_text,
    hint,
    item_type,
    option,
    options_class,
    required_type,
    to_file,
)

# wide enough for unit tables when piped to a file (rich assumes 80 columns off a terminal);
# messages never wrap (soft_wrap): a path or a name stays whole, whatever the terminal's width;
# tables (soft_wrap=False) fit the terminal
console = Console(width=None if sys.stdout.isatty() else 140, soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's input errors into one red line and exit status 2, not a traceback."""
    try:
        yield
    except click.exceptions.Exit:
        raise  # an exit status already decided (e.g. 130 after Ctrl-C)
    except (ValueError, KeyError, RuntimeError, OSError) as e:
        msg = str(e.args[0] if isinstance(e, KeyError) and e.args else e)
        msg = " ".join(line.strip() for line in msg.splitlines() if line.strip())  # one line
        err.print(f"[bold red]error:[/] {escape(msg)}", highlight=False)
        raise click.exceptions.Exit(2) from None


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
        raise click.exceptions.Exit(130) from None


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


# ---------------------------------------------------------------- the model and run options, once

@dataclass(frozen=True)
@options_class
class ModelOptions:
    """The options of a study of one model (and of ``evaluate``)."""

    model: str | None = option(None, short="-m", help="zoo name or checkpoint (see `resdyn "
                               "models`); required")
    data: str = option("digits", short="-d", help="digits | induction | cifar10 | mnist | "
                       "PATH.npz | image folder | text file")
    weights: str | None = option(None, help="local state dict (.pth/.safetensors), or "
                                 "'random' (reproducible random init)")
    any_input_size: bool = option(False, help="allow images of another size than the model "
                                  "was trained on")


@dataclass(frozen=True)
@options_class
class DataOptions:
    """The data option of a study that trains its own networks."""

    data: str = option("digits", short="-d", help="digits | cifar10 | mnist | PATH.npz | "
                       "image folder")


@dataclass(frozen=True)
@options_class
class RunOptions:
    """The options of every study command: where and how it runs."""

    out: str = option("out", help="run folder (resumable; refuses another configuration; one "
                      "writer at a time)")
    fresh: bool = option(False, help="remove what resdyn wrote in --out and start over")
    executor: str = option("serial", choices=("serial", "dask"), help="serial | dask (implied "
                           "by --workers/--scheduler)")
    workers: int | None = option(None, 1, MAX_WORKERS, help="run tasks on a local Dask cluster of N "
                                 "worker processes")
    scheduler: str | None = option(None, help="run tasks on a running Dask scheduler, e.g. "
                                   "tcp://host:8786")
    device: str = option("cpu", help="cpu | cuda | cuda:N | auto (a GPU where there is one); "
                         "rows record where they were computed")
    precision: str = option("float64", choices=tuple(PRECISIONS), help="Jacobian products in float64 | "
                            "float32 (the Gram matrix and eigensolves stay float64; float32 "
                            "products move σ by < 1e-7·σ_max)")

    def executor_spec(self):
        """The executor: Dask when --workers or --scheduler is given."""
        from .runs import Executor

        name = ("dask" if self.executor == "serial" and (self.workers is not None
                                                          or self.scheduler) else self.executor)
        return Executor(name, workers=self.workers, scheduler=self.scheduler)


#: Options that say how to run, not what: never read from a file nor written to one.
NOT_IN_FILES = ("fresh",)


def threads(ctx: click.Context) -> int | None:
    """``resdyn --threads N``, or None: the automatic policy (see :mod:`resdyn._threads`)."""
    return (ctx.find_root().obj or {}).get("threads")


class Options:
    """A command's option classes as click options, and their values from the command line,
    an option file and the defaults (in that order)."""

    def __init__(self, groups: list[tuple[str, type]], *, defaults: dict[str, Any] | None = None,
                 leave_out: tuple[str, ...] = ()):
        self.groups, self.defaults = groups, defaults or {}
        self.fields = [(prefix, cls, f) for prefix, cls in groups for f in cli_fields(cls)
                       if f.name not in leave_out]

    def params(self) -> list[click.Parameter]:
        """The click options, then ``--config``."""
        params: list[click.Parameter] = [self._click(p, c, f) for p, c, f in self.fields]
        return params + [click.Option(
            ["--config"], type=click.Path(dir_okay=False, path_type=Path),
            help="TOML file of this command's options (flags given too win); every run writes "
                 "its resolved options to DIR/options.toml")]

    def _click(self, prefix: str, cls: type, f: Field) -> click.Option:
        meta, name = f.metadata, flag(f)
        default = self.defaults.get(f.name, f.default)
        extra = [meta["short"]] if meta.get("short") else []
        if hint(cls, f) is bool:
            return click.Option([f"--{name}/--no-{name}", *extra, prefix + f.name],
                                default=default, show_default=True, help=meta["help"])
        shown = (meta["none"] if default is None and meta.get("none") else
                 ",".join(map(str, default)) if isinstance(default, tuple) and not meta["parse"]
                 else None if default in (None, MISSING) or meta["multiple"] else str(default))
        choices = meta.get("choices")
        help_ = meta["help"] + (f" [{' | '.join(choices)}]" if choices and " | " not in
                                meta["help"] else "")
        t = required_type(hint(cls, f))
        metavar = {int: "INTEGER", float: "NUMBER"}.get(item_type(t), "TEXT")
        if typing.get_origin(t) is tuple and not meta["parse"]:
            metavar = f"{metavar},..."
        return click.Option([f"--{name}", *meta["old"], *extra, prefix + f.name],
                            multiple=meta["multiple"], default=() if meta["multiple"] else None,
                            metavar=metavar, help=help_ + (f"  [default: {shown}]" if shown
                                                           else ""))

    def values(self, ctx: click.Context, raw: dict[str, Any]) -> tuple[dict, dict]:
        """Per option class, the values given (``{prefix: {field: value}}``), and the options
        as ``options.toml`` records them (by flag).

        Raises:
            click.UsageError: a bad value or file (names the flag or the file's key), an
                unknown key.
        """
        try:
            return self._values(ctx, raw)
        except (ValueError, TypeError) as e:
            raise click.UsageError(str(e), ctx) from None

    def _values(self, ctx: click.Context, raw: dict[str, Any]) -> tuple[dict, dict]:
        path = raw.pop("config", None)
        filed = read_options(path) if path is not None else {}
        by_key = {k: (p, c, f) for p, c, f in self.fields
                  for k in (flag(f), f.name, *(o.lstrip("-") for o in f.metadata["old"]))}
        for key in filed:
            if key not in by_key or key in NOT_IN_FILES:
                valid = ", ".join(flag(f) for _, _, f in self.fields
                                  if f.name not in NOT_IN_FILES)
                raise ValueError(f"--config {path}: unknown option {key!r}; this command takes "
                                 f"{valid}")
        filed = {by_key[k][2].name: (k, v) for k, v in filed.items()}
        out: dict[str, dict] = {prefix: {} for prefix, _ in self.groups}
        record: dict[str, Any] = {}
        for prefix, cls, f in self.fields:
            name, given = f"--{flag(f)}", raw[prefix + f.name]
            if ctx.get_parameter_source(prefix + f.name) is not ParameterSource.DEFAULT:
                value = self._from_command_line(cls, f, given, name)
                kept = given if f.metadata["parse"] else to_file(f, value)
            elif f.name in filed:
                key, v = filed[f.name]
                value, kept = from_file(cls, f, v, f"--config {path}: key {key!r}"), v
            elif f.name in self.defaults:
                value = self.defaults[f.name]
                kept = to_file(f, value)
            else:
                continue
            out[prefix][f.name] = value
            if f.name not in NOT_IN_FILES:
                record[flag(f)] = list(kept) if isinstance(kept, tuple) else kept
        return out, record

    @staticmethod
    def _from_command_line(cls: type, f: Field, given: Any, name: str) -> Any:
        if isinstance(given, bool):
            check_value(name, given, bool, f.metadata)
            return given
        return from_text(cls, f, list(given) if f.metadata["multiple"] else given, name)


def study_command(name: str, study, out: str, help: str, *, model: bool = True,
                  data: bool = False) -> click.Command:
    """The command of ``study``: its config's options, the model options (``model``) or the
    data option (``data``), the run options with the folder defaulting to ``out``
    (``--precision`` where the study offers a choice), ``--config``; it loads model and data,
    runs the study with progress into --out, prints the summary and exits 1 if tasks failed,
    2 for bad input, 130 on Ctrl-C."""
    groups = [("c_", study.config)] + ([("m_", ModelOptions)] if model else
                                       [("d_", DataOptions)] if data else []) + [("r_", RunOptions)]
    # --precision where the study offers a choice (run_study refuses one it does not compute in)
    opts = Options(groups, defaults={"out": out},
                   leave_out=() if len(study.precisions) > 1 else ("precision",))

    def callback(**raw: Any) -> None:
        ctx = click.get_current_context()
        values, record = opts.values(ctx, raw)
        loading = (asdict(ModelOptions(**values["m_"])) if model else
                   asdict(DataOptions(**values["d_"])) if data else {})
        if model and loading.get("model") is None:
            raise click.UsageError("Missing option '--model' (a zoo name or checkpoint, see "
                                   "`resdyn models`; or model in --config)", ctx)
        with user_errors():
            config = study.config(**values["c_"])
            run = RunOptions(**values["r_"])
        run_command(ctx, study, config, run, record, **loading)

    return click.Command(name, params=opts.params(), callback=callback, help=help)


def load_model_and_data(model: str, weights: str | Path | None, data: str,
                        any_input_size: bool = False):
    """The model and the test split of the data, checked against each other."""
    from .data import check_compatible, load_for
    from .models import load_model

    m = load_model(model, weights)
    ds = load_for(m, data, split="test")
    check_compatible(m, ds, any_input_size=any_input_size)
    return m, ds


def run_command(ctx: click.Context, study, config, run: RunOptions, record: dict, *,
                model: str | None = None, data: str | None = None,
                weights: str | None = None, any_input_size: bool = False) -> None:
    """Load, run one study with progress, print where and its summary; exit 1 if tasks failed."""
    from .runs.folder import check_out
    from .studies import run_study

    out = Path(run.out)
    with user_errors():
        check_out(out)
        ex = run.executor_spec()
        if model is None:  # a study that trains its own networks, or of no data at all
            from .data import load_images

            m, ds = None, load_images(data, split="test") if data is not None else None
        else:
            m, ds = load_model_and_data(model, weights, data or "digits", any_input_size)
        with study_progress(study.name) as show, interrupted(lambda: _kept(show, out)):
            result = run_study(study, m, ds, config, out, model_name=model, executor=ex,
                               progress=show, fresh=run.fresh, device=run.device,
                               precision=run.precision, threads=threads(ctx))
    write_options(result.out / "options.toml", record)
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
        raise click.exceptions.Exit(1)


def _kept(show: Callable, out: Path) -> str:
    p = getattr(show, "last", None)
    return (f"{p.done} of {p.total} tasks are kept in {out}" if p is not None
            else f"nothing was computed yet in {out}")
