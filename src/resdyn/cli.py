"""The ``resdyn`` command line: parses arguments and calls the library, nothing more. Every
command's options are option classes (:mod:`resdyn.studies.command_options`, the studies'
configs), made into click options by :mod:`resdyn.cli_run`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import pandas as pd
from rich.markup import escape
from rich.table import Table

from .cli_run import (
    console,
    err,
    interrupted,
    params,
    report_failures,
    study_command,
    threads,
    user_errors,
    values,
)
from .runs.console import console_progress, progress_bar
from .studies import COMPARE, DYNAMICS, IDENTITY, ODE, SPECTRA, STABILITY, STIFFNESS, SWEEP
from .studies.command_options import DEVICE_HELP, ModelOptions, ProbeOptions, RunOptions, TrainOptions
from .studies.option_file import OptionSet, write_options


class OneLineErrors(click.Group):
    """The ``resdyn`` group: every refusal of the command line (a bad value, an unknown option,
    a missing one) is one line ``error: ...`` with exit status 2, as resdyn's own refusals
    (:func:`~resdyn.cli_run.user_errors`), instead of click's usage box; Ctrl-C anywhere in a
    command is one line and exit status 130. ``--help`` and no arguments still show the help."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as e:  # the help, as asked
            click.echo(e.format_message())
            sys.exit(e.exit_code)
        except click.ClickException as e:
            given = list(sys.argv[1:] if args is None else args)
            err.print(f"[bold red]error:[/] {escape(_one_line(e, given))}", highlight=False)
            sys.exit(e.exit_code)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.Abort:  # end of input at a prompt (resdyn has none; Ctrl-C: _ctrl_c)
            err.print("aborted", highlight=False)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _ctrl_c():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with _ctrl_c():
            return super().invoke(ctx)


@contextmanager
def _ctrl_c() -> Iterator[None]:
    """Ctrl-C outside a study's own handling (:func:`~resdyn.cli_run.interrupted`): one line."""
    try:
        yield
    except KeyboardInterrupt:
        err.print("interrupted", highlight=False)
        raise click.exceptions.Exit(130) from None


def _one_line(e: click.ClickException, args: list[str]) -> str:
    """A command-line error's message on one line, with the value given where the message does
    not say it, and where to look for valid ones."""
    msg = " ".join(e.format_message().split()).rstrip(".")
    opts = getattr(getattr(e, "param", None), "opts", None) or ()
    pairs = zip(args, [*args[1:], None], strict=True)  # each word and the one after it
    given = [a.split("=", 1)[1] if "=" in a else b for a, b in pairs if a.split("=", 1)[0] in opts]
    if given and given[-1] is not None and repr(given[-1]) not in msg:
        msg += f"; got {given[-1]!r}"
    ctx = getattr(e, "ctx", None)
    return msg + (f"; see '{ctx.command_path} --help'" if ctx is not None else "")


@click.group(cls=OneLineErrors, no_args_is_help=True,
             context_settings={"help_option_names": ["--help"], "max_content_width": 100})
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for torch in every "
              "phase (default: one thread, and the cores other processes leave free for the "
              "products and dense solves of blocks 4096 wide or more)")
@click.pass_context
def app(ctx: click.Context, threads: int | None) -> None:
    """Residual networks as nonlinear dynamical systems."""
    ctx.obj = {"threads": threads}
    if threads is not None:  # for the commands outside a run (train, evaluate, check)
        import torch

        torch.set_num_threads(threads)


def show(frame: pd.DataFrame, title: str, marks: dict[str, str] | None = None) -> None:
    """A table on the console; ``marks``: the style of cells of these words (PASS, FAIL)."""
    table = Table(*map(str, frame.columns), title=title)
    for row in frame.itertuples(index=False):
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in row]
        table.add_row(*[f"[{marks[c]}]{c}[/]" if marks and c in marks else escape(c)
                        for c in cells])
    console.print(table, soft_wrap=False)


# ---------------------------------------------------------------- models, units, checks

@app.command()
def models() -> None:
    """List the model zoo."""
    from .models import zoo_names

    show(pd.DataFrame(zoo_names(), columns=["spec", "what it is"]), "resdyn model zoo")


UNITS = OptionSet([("p_", ProbeOptions)], leave_out=("seed",))


@app.command("units", params=params(UNITS, config_file=False))
@click.pass_context
def units_cmd(ctx: click.Context, **raw: Any) -> None:
    """Print the residual units of a model: stage, position, kind and shapes."""
    from .models import units_frame

    with user_errors():
        probe = ProbeOptions(**values(UNITS, ctx, raw)[0]["p_"])
        _, shape, us = probe.load()
    show(units_frame(us).rename_axis("#").reset_index(),
         f"{probe.model}: {len(us)} residual units, input {shape}")


CHECK = OptionSet([("p_", ProbeOptions)])


@app.command(params=params(CHECK, config_file=False))
@click.pass_context
def check(ctx: click.Context, **raw: Any) -> None:
    """Taylor and adjoint tests of every unit and stage Jacobian operator (PASS/FAIL table)."""
    from .check import EXACT, LEGEND, check_model

    with user_errors():
        probe = ProbeOptions(**values(CHECK, ctx, raw)[0]["p_"])
        m, shape, us = probe.load()
        table = check_model(m, shape, unit_list=us, seed=probe.seed)
    exact = table["remainder"] == "round-off"  # no slope to fit: F exactly linear along v
    shown = table.drop(columns=["remainder", "passed"]).astype({"order_quadratic": object})
    shown.loc[exact, "order_quadratic"] = "exact*"
    shown["result"] = table["passed"].map({True: "PASS", False: "FAIL"})
    show(shown, f"{probe.model}: Jacobian checks at a random input",
         {"PASS": "green", "FAIL": "bold red"})
    failed = int((~table["passed"]).sum())
    console.print(f"{len(table) - failed} PASS, {failed} FAIL. {LEGEND}", highlight=False)
    if exact.any():
        console.print(EXACT, highlight=False)
    if failed:
        raise click.exceptions.Exit(1)


EVALUATE = OptionSet([("m_", ModelOptions)])


@app.command(params=params(EVALUATE, config_file=False))
@click.option("--device", default="cpu", show_default=True, help=DEVICE_HELP)
@click.pass_context
def evaluate(ctx: click.Context, device: str, **raw: Any) -> None:
    """Test accuracy and mean loss of a model on a data set's test split."""
    from .evaluation import evaluation_text

    given, _ = values(EVALUATE, ctx, raw)
    with user_errors():
        spec = ModelOptions(**given["m_"])
        m, ds = spec.load()
        console.print(evaluation_text(m, ds, str(spec.model), spec.data, device))


TRAIN = OptionSet([("t_", TrainOptions)])


@app.command(params=params(TRAIN, config_file=False))
@click.pass_context
def train(ctx: click.Context, **raw: Any) -> None:
    """Train a zoo architecture on a data set and save weights + architecture (safetensors)."""
    from .train import train_and_save

    with user_errors():
        t = TrainOptions(**values(TRAIN, ctx, raw)[0]["t_"])
    with user_errors(), progress_bar("training") as update:
        def progress(epoch: int, step: int, total: int, loss: float) -> None:
            update(step, total, f"epoch {epoch}  loss {loss:.3f}")

        result = train_and_save(t.model, t.data, t.epochs, t.out, t.seed, t.device, progress)
    console.print(f"saved {t.out}: test accuracy {result.test_accuracy:.4f} "
                  f"after {t.epochs} epochs ({result.seconds:.0f} s)")


# ---------------------------------------------------------------- studies

app.add_command(study_command("spectra", SPECTRA, "Singular spectra of unit (and stage) "
                              "Jacobians for N test images -> DIR/spectra.parquet."))
app.add_command(study_command("stability", STABILITY, "The stability study of paper 000: "
                              "spectra, propagation, skip scaling, interpolation."))
app.add_command(study_command("identity", IDENTITY, "Paper 002 on one network: perturbation "
                              "from identity per block, distances, stopping rule."))
app.add_command(study_command("identity-sweep", SWEEP, "Paper 002's depth sweep: train "
                              "preresnet(L) per depth, then measure each network.", data=True))
app.add_command(study_command("dynamics", DYNAMICS, "Lyapunov exponents across depth (exact "
                              "and QR) and residual alignment (RA1-RA4)."))
app.add_command(study_command("stiffness", STIFFNESS, "Paper 003: eigenvalues of block "
                              "Jacobians, stiffness indices, correlation with loss."))


@app.group("stable", no_args_is_help=True)
def stable_app() -> None:
    """Paper 004: stable architectures."""


stable_app.add_command(study_command("ode", ODE, "ẏ = K y and ẏ = σ(K y + b) for K₊, K₋, K₀ "
                                     "(and --K): Euler against a reference.", model=False))
stable_app.add_command(study_command("compare", COMPARE, "Standard, antisymmetric and "
                                     "Hamiltonian networks trained alike, analysed side by "
                                     "side.", model=False))

DEMO = OptionSet([("r_", RunOptions)], defaults={"out": "out/demo"})


@app.command(params=params(DEMO))
@click.option("--quick", is_flag=True, help="the smallest sizes: every study still runs end to "
              "end (about 1.5 minutes)")
@click.pass_context
def demo(ctx: click.Context, quick: bool, **raw: Any) -> None:
    """All four papers' studies on the embedded default (no download), one HTML report."""
    from contextlib import ExitStack

    from .studies.demo import demo_table, run_demo

    start = time.monotonic()
    given, record = values(DEMO, ctx, raw)
    with user_errors():
        run = RunOptions(**given["r_"])
    out = Path(run.out)
    with user_errors(), interrupted(lambda: f"the finished tasks are kept in each part's "
                                    f"folder under {out}"), ExitStack() as stack:
        results = run_demo(out, quick=quick, executor=run.executor_spec(), fresh=run.fresh,
                           progress=lambda part: stack.enter_context(console_progress(part.folder)),
                           device=run.device, precision=run.precision, threads=threads(ctx))
    write_options(out / "options.toml", {"quick": quick, **record})
    show(demo_table(results), f"resdyn demo ({time.monotonic() - start:.0f} s)")
    console.print(f"report: {out / 'report.html'}")
    failed = sum(r.failed for r in results)
    if failed:
        report_failures(failed, sum(r.stats.total for r in results),
                        pd.concat([r.errors for r in results], ignore_index=True),
                        "each folder's errors.parquet")


@app.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="the page to write (default: "
              "FOLDER/report.html)")
def report(folder: Path, out: Path | None) -> None:
    """One self-contained HTML page of an output folder: claims, figures, tables, configuration."""
    from .report import run_folders, write_report

    with user_errors():
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder")
        path = write_report(folder, out)
    console.print(f"{path} ({len(run_folders(folder))} study run(s))")

