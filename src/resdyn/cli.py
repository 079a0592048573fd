"""The ``resdyn`` command line: parses arguments and calls the library, nothing more.

The study commands are made from the studies' option classes
(:func:`~resdyn.cli_run.study_command`); the model and run options are declared once, in
:mod:`resdyn.cli_run`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from .cli_config import write_options
from .cli_run import (
    Options,
    RunOptions,
    console,
    err,
    interrupted,
    load_model_and_data,
    progress_bar,
    report_failures,
    study_command,
    study_progress,
    threads,
    user_errors,
)
from .studies import (
    COMPARE,
    DYNAMICS,
    IDENTITY,
    ODE,
    SPECTRA,
    STABILITY,
    STIFFNESS,
    SWEEP,
)


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


MODEL = click.option("--model", "-m", required=True, help="zoo name or checkpoint (see `resdyn "
                     "models`)")
WEIGHTS = click.option("--weights", type=click.Path(path_type=Path), help="local state dict "
                       "(.pth/.safetensors), or 'random' (reproducible random init)")
INPUT_SHAPE = click.option("--input-shape", help="C,H,W (default: the model's)")
DEVICE = click.option("--device", default="cpu", show_default=True, help="cpu | cuda | cuda:N | "
                      "auto (a GPU where there is one)")


def _input_shape(model, text: str | None) -> tuple[int, ...]:
    """--input-shape, else the shape the model states; asks for it where it states none."""
    from .models import natural_input_shape

    if text is not None:
        try:
            shape = tuple(int(s) for s in text.replace("x", ",").split(","))
        except ValueError:
            raise ValueError(f"--input-shape: expected C,H,W such as 3,32,32; got {text!r}") from None
        if len(shape) != 3:
            raise ValueError(f"--input-shape: expected three numbers C,H,W; got {text!r}")
        return shape
    stated = natural_input_shape(model)
    if stated is None:
        raise ValueError(f"{type(model).__name__} states no input shape: give --input-shape C,H,W")
    return stated


# ---------------------------------------------------------------- models, units, checks

@app.command()
def models() -> None:
    """List the model zoo."""
    from .models import zoo_names

    table = Table("spec", "what it is", title="resdyn model zoo")
    for name, desc in zoo_names():
        table.add_row(name, desc)
    console.print(table, soft_wrap=False)


@app.command("units")
@MODEL
@WEIGHTS
@INPUT_SHAPE
@click.option("--units", "names", help="comma-separated module names, for models resdyn does "
              "not recognise")
def units_cmd(model: str, weights: Path | None, input_shape: str | None,
              names: str | None) -> None:
    """Print the residual units of a model: stage, position, kind and shapes."""
    from .models import load_model, units

    with user_errors():
        m = load_model(model, weights)
        shape = _input_shape(m, input_shape)
        us = units(m, shape, names.split(",") if names else None)
    table = Table("#", "name", "stage", "pos", "kind", "in", "out", "n_in", "n_out",
                  title=f"{model}: {len(us)} residual units, input {shape}")
    for i, u in enumerate(us):
        table.add_row(str(i), u.name, str(u.stage), str(u.position), u.kind,
                      "x".join(map(str, u.in_shape)), "x".join(map(str, u.out_shape)),
                      str(u.n_in), str(u.n_out))
    console.print(table, soft_wrap=False)


@app.command()
@MODEL
@WEIGHTS
@INPUT_SHAPE
@click.option("--seed", type=int, default=0, show_default=True)
def check(model: str, weights: Path | None, input_shape: str | None, seed: int) -> None:
    """Taylor and adjoint tests of every unit and stage Jacobian operator (PASS/FAIL table)."""
    from .check import check_model
    from .models import load_model

    with user_errors():
        m = load_model(model, weights)
        table = check_model(m, _input_shape(m, input_shape), seed=seed)
    shown = table.drop(columns=["remainder", "passed"])
    t = Table(*[str(c) for c in shown.columns], "result",
              title=f"{model}: Jacobian checks at a random input")
    exact = table["remainder"] == "round-off"  # no slope to fit: F exactly linear along v
    for (_, row), is_exact, ok in zip(shown.iterrows(), exact, table["passed"], strict=True):
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in row]
        if is_exact:
            cells[list(shown.columns).index("order_quadratic")] = "exact*"
        t.add_row(*cells, "[green]PASS[/]" if ok else "[bold red]FAIL[/]")
    console.print(t, soft_wrap=False)
    failed = int((~table["passed"]).sum())
    console.print(f"{len(table) - failed} PASS, {failed} FAIL. order_linear should be 1 and "
                  "order_quadratic 2 (≥ 1.4 accepted: crossing ReLU kinks makes the remainder "
                  "noisier); adjoint_error is |⟨Jv, w⟩ − ⟨v, Jᵀw⟩| relative, at round-off.",
                  highlight=False)
    if exact.any():
        console.print("exact*: the Taylor remainder ‖F(x+εv) − F(x) − ε·Jv‖ is at round-off for "
                      "the step sizes tried, so there is no slope to fit: F is exactly linear "
                      "along v there (no ReLU kink crossed), which only the true J achieves.",
                      highlight=False)
    if failed:
        raise click.exceptions.Exit(1)


@app.command()
@MODEL
@click.option("--data", "-d", default="digits", show_default=True, help="digits | induction | "
              "cifar10 | mnist | PATH.npz | image folder | text file")
@WEIGHTS
@DEVICE
@click.option("--any-input-size", is_flag=True, help="allow images of another size than the "
              "model was trained on")
def evaluate(model: str, data: str, weights: Path | None, device: str,
             any_input_size: bool) -> None:
    """Test accuracy and mean loss of a model on a data set's test split."""
    from .models import model_card
    from .train import evaluate as evaluate_model

    with user_errors():
        m, ds = load_model_and_data(model, weights, data, any_input_size)
        card = model_card(m)
        if hasattr(m, "embed"):
            return _evaluate_lm(m, model, data, device)
        result = evaluate_model(m, ds, device=device)
    recorded = card.info.get("test_accuracy") if card else None
    line = (f"{model} on {data} test split ({len(ds.y)} images): accuracy {result.accuracy:.4f}, "
            f"mean loss {result.loss:.4f}")
    if isinstance(recorded, int | float):
        line += f" (recorded at training: {float(recorded):.4f})"
    console.print(line)


def _evaluate_lm(m, model: str, data: str, device: str) -> None:
    """Next-token accuracy of a causal LM: every position, the in-context ones, the last."""
    from ._torch import resolve_device
    from .data import TokenData, load_data
    from .data.specs import token_options
    from .models import model_card
    from .train_lm import evaluate_lm

    card = model_card(m)
    tokens = load_data(data, split="test", **token_options(m))
    assert isinstance(tokens, TokenData)
    ev = evaluate_lm(m.to(resolve_device(device)), tokens)
    info = card.info if card else {}
    recorded = {k: info.get(f"test_accuracy{k}") for k in ("", "_all", "_in_context")}
    said = (f" (recorded at training: {recorded['']:.4f} last, {recorded['_all']:.4f} all, "
            f"{recorded['_in_context']:.4f} in context)"
            if all(isinstance(v, int | float) for v in recorded.values()) else "")
    console.print(f"{model} on {data} test split ({len(tokens)} sequences of {tokens.context} "
                  f"tokens): next-token accuracy {ev.accuracy:.4f} at the last position, "
                  f"{ev.accuracy_all:.4f} over all positions, {ev.accuracy_in_context:.4f} "
                  f"over the in-context positions; mean loss {ev.loss:.4f}{said}")


@app.command()
@MODEL
@click.option("--data", "-d", required=True, help="digits | induction | cifar10 | mnist | "
              "PATH.npz | image folder")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="FILE.safetensors")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@DEVICE
def train(model: str, data: str, out: Path, epochs: int, seed: int, device: str) -> None:
    """Train a zoo architecture on a data set and save weights + architecture (safetensors)."""
    from .train import train_and_save

    if out.suffix != ".safetensors":
        raise click.BadParameter(f"--out must end in .safetensors; got {out}")
    with user_errors(), progress_bar("training") as update:
        def progress(epoch: int, step: int, total: int, loss: float) -> None:
            update(step, total, f"epoch {epoch}  loss {loss:.3f}")

        result = train_and_save(model, data, epochs, out, seed, device, progress)
    console.print(f"saved {out}: test accuracy {result.test_accuracy:.4f} "
                  f"after {epochs} epochs ({result.seconds:.0f} s)")


# ---------------------------------------------------------------- studies

app.add_command(study_command("spectra", SPECTRA, "out/spectra", "Singular spectra of unit (and "
                              "stage) Jacobians for N test images -> DIR/spectra.parquet."))
app.add_command(study_command("stability", STABILITY, "out/stability", "The stability study of "
                              "paper 000: spectra, propagation, skip scaling, interpolation."))
app.add_command(study_command("identity", IDENTITY, "out/identity", "Paper 002 on one network: "
                              "perturbation from identity per block, distances, stopping rule."))
app.add_command(study_command("identity-sweep", SWEEP, "out/identity-sweep", "Paper 002's depth "
                              "sweep: train preresnet(L) per depth, then measure each network.",
                              model=False, data=True))
app.add_command(study_command("dynamics", DYNAMICS, "out/dynamics", "Lyapunov exponents across "
                              "depth (exact and QR) and residual alignment (RA1-RA4)."))
app.add_command(study_command("stiffness", STIFFNESS, "out/stiffness", "Paper 003: eigenvalues "
                              "of block Jacobians, stiffness indices, correlation with loss."))


@app.group("stable", no_args_is_help=True)
def stable_app() -> None:
    """Paper 004: stable architectures."""


stable_app.add_command(study_command("ode", ODE, "out/stable-ode", "ẏ = K y and ẏ = σ(K y + b) "
                                     "for K₊, K₋, K₀ (and --K): Euler against a reference.",
                                     model=False))
stable_app.add_command(study_command("compare", COMPARE, "out/stable-compare", "Standard, "
                                     "antisymmetric and Hamiltonian networks trained alike, "
                                     "analysed side by side.", model=False))

DEMO_OPTIONS = Options([("r_", RunOptions)], defaults={"out": "out/demo"})


@app.command(params=DEMO_OPTIONS.params())
@click.option("--quick", is_flag=True, help="the smallest sizes: every study still runs end to "
              "end (about 1.5 minutes)")
@click.pass_context
def demo(ctx: click.Context, quick: bool, **raw: Any) -> None:
    """All four papers' studies on the embedded default (no download), one HTML report."""
    from contextlib import ExitStack

    import pandas as pd

    from .report import run_title
    from .studies.demo import run_demo

    start = time.monotonic()
    values, record = DEMO_OPTIONS.values(ctx, raw)
    with user_errors():
        run = RunOptions(**values["r_"])
    out = Path(run.out)
    with user_errors(), interrupted(lambda: f"the finished tasks are kept in each part's "
                                    f"folder under {out}"), ExitStack() as stack:
        def progress(part):
            return stack.enter_context(study_progress(f"{part.folder}"))

        results = run_demo(out, quick=quick, executor=run.executor_spec(), progress=progress,
                           fresh=run.fresh, device=run.device, precision=run.precision,
                           threads=threads(ctx))
    write_options(out / "options.toml", {"quick": quick, **record})
    table = Table("study", "folder", "tasks run", "resumed", "claims held", "not held",
                  "undecided", "not judged", title=f"resdyn demo ({time.monotonic() - start:.0f} s)")
    for r in results:
        said = [c.verdict for c in r.claims.values()]
        table.add_row(run_title(r.out), r.out.name, str(r.tasks_run), str(r.stats.resumed),
                      *(str(said.count(v)) for v in ("yes", "no", "undecided", "not judged")))
    console.print(table, soft_wrap=False)
    console.print(f"report: {out / 'report.html'}")
    failed = sum(r.failed for r in results)
    if failed:
        report_failures(failed, sum(r.stats.total for r in results),
                        pd.concat([r.errors for r in results], ignore_index=True),
                        "each folder's errors.parquet")
        raise click.exceptions.Exit(1)


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


def main() -> None:  # pragma: no cover - console-script entry for `python -m resdyn`
    app(prog_name="resdyn")


if __name__ == "__main__":  # pragma: no cover
    main()
