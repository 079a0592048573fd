"""What every ``resdyn`` study command shares: its options as click options (made from the
option classes, :class:`~resdyn.studies.option_file.OptionSet`), one-line errors, Ctrl-C, and
the run with its progress."""

from __future__ import annotations

import sys
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, Field
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from rich.console import Console
from rich.markup import escape

from .runs.console import console_progress, err, failure_message
from .studies.command_options import DataOptions, ModelOptions, RunOptions
from .studies.option_file import OptionSet, write_options
from .studies.options import flag, hint, item_type, required_type

# wide enough for unit tables when piped to a file (rich assumes 80 columns off a terminal);
# messages never wrap (soft_wrap): a path or a name stays whole, whatever the terminal's width;
# tables (soft_wrap=False) fit the terminal
console = Console(width=None if sys.stdout.isatty() else 140, soft_wrap=True)


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
    err.print(failure_message(failed, total, errors, where), highlight=False)
    raise click.exceptions.Exit(1)


def threads(ctx: click.Context) -> int | None:
    """``resdyn --threads N``, or None: the automatic policy (see :mod:`resdyn._threads`)."""
    return (ctx.find_root().obj or {}).get("threads")


def params(opts: OptionSet, config_file: bool = True) -> list[click.Parameter]:
    """A command's options as click options, then ``--config`` (``config_file``)."""
    config = click.Option(["--config"], type=click.Path(dir_okay=False, path_type=Path),
                          help="TOML file of this command's options (flags given too win); "
                               "every run writes its resolved options to DIR/options.toml")
    options: list[click.Parameter] = [_click(p, c, f, opts.defaults.get(f.name, f.default))
                                      for p, c, f in opts.fields]
    return options + [config] * config_file


def _click(prefix: str, cls: type, f: Field, default: Any) -> click.Option:
    meta, name = f.metadata, flag(f)
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
                        metavar=metavar, help=help_ + (f"  [default: {shown}]" if shown else ""))


def values(opts: OptionSet, ctx: click.Context, raw: dict[str, Any]) -> tuple[dict, dict]:
    """The command's values from its command line, ``--config`` and defaults (see
    :meth:`OptionSet.resolve`); a bad one is a usage error."""
    path = raw.pop("config", None)
    given = {k: v for k, v in raw.items()
             if ctx.get_parameter_source(k) is not ParameterSource.DEFAULT}
    try:
        return opts.resolve(given, path)
    except (ValueError, TypeError) as e:
        raise click.UsageError(str(e), ctx) from None


def study_command(name: str, study, help: str, *, model: bool = True,
                  data: bool = False) -> click.Command:
    """The command of ``study``: its config's options, the model options (``model``) or the
    data option (``data``, which implies no model), the run options with the folder
    defaulting to ``out/<study name>``
    (``--precision`` where the study offers a choice), ``--config``; it loads model and data,
    runs the study with progress into --out, prints the summary and exits 1 if tasks failed,
    2 for bad input, 130 on Ctrl-C."""
    model = model and not data
    groups = [("c_", study.config)] + ([("m_", ModelOptions)] if model else
                                       [("d_", DataOptions)] if data else []) + [("r_", RunOptions)]
    # --precision where the study offers a choice (run_study refuses one it does not compute in)
    opts = OptionSet(groups, defaults={"out": f"out/{study.name}"},
                     leave_out=() if len(study.precisions) > 1 else ("precision",))

    def callback(**raw: Any) -> None:
        ctx = click.get_current_context()
        given, record = values(opts, ctx, raw)
        if model and given["m_"].get("model") is None:
            raise click.UsageError("Missing option '--model' (a zoo name or checkpoint, see "
                                   "`resdyn models`; or model in --config)", ctx)
        with user_errors():
            config = study.config(**given["c_"])
            run = RunOptions(**given["r_"])
            loading = (ModelOptions(**given["m_"]) if model else
                       DataOptions(**given["d_"]) if data else None)
        run_command(ctx, study, config, run, record, loading)

    return click.Command(name, params=params(opts), callback=callback, help=help)


def run_command(ctx: click.Context, study, config, run: RunOptions, record: dict,
                loading: ModelOptions | DataOptions | None) -> None:
    """Load, run one study with progress, print where and its summary; exit 1 if tasks failed."""
    from .runs.folder import check_out
    from .studies import run_study

    out = Path(run.out)
    with user_errors():
        check_out(out)
        ex = run.executor_spec()
        if isinstance(loading, ModelOptions):
            (m, ds), name = loading.load(), loading.model
        else:  # a study that trains its own networks, or of no data at all
            m, ds, name = None, loading.load() if loading else None, None
        with console_progress(study.name) as show, interrupted(lambda: show.kept(out)):
            result = run_study(study, m, ds, config, out, model_name=name, executor=ex,
                               progress=show, fresh=run.fresh, device=run.device,
                               precision=run.precision, threads=threads(ctx))
    write_options(result.out / "options.toml", record)
    console.print(f"{result.tasks_run} tasks run, {result.stats.resumed} resumed; tables, figures "
                  f"and summary in {result.out}/")
    console.print(result.summary.read_text(), markup=False, highlight=False)
    for warning in result.warnings():
        err.print(f"[yellow]{escape(warning)}[/]", highlight=False)
    if result.failed:
        report_failures(result.failed, result.stats.total, result.errors,
                        f"{result.out}/errors.parquet")


