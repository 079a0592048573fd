"""The ``resdyn`` command line: parses arguments and calls the library, nothing more.

A study command declares its own options and returns its study and config; the run options
(``--out --fresh --config --executor --workers --scheduler --device --precision``) and the
model options are declared once, in :mod:`resdyn.cli_run`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from .cli_config import write_options
from .cli_run import (
    AnySizeOpt,
    DataOpt,
    DeviceOpt,
    ModelOpt,
    RunOptions,
    WeightsOpt,
    console,
    err,
    interrupted,
    load_model_and_data,
    progress_bar,
    report_failures,
    study_command,
    study_progress,
    user_errors,
    with_run_options,
)
from .spectra import SINGULAR_METHOD_NAMES

try:  # typer >= 0.22 carries its own click, whose errors are TyperExceptions
    from typer import TyperException as CommandLineError
except ImportError:  # pragma: no cover - older typer: click's own errors
    from click import ClickException as CommandLineError  # type: ignore[assignment]


class OneLineErrors(TyperGroup):
    """The ``resdyn`` group: every refusal of the command line (a bad value, an unknown option,
    a missing one) is one line ``error: ...`` with exit status 2, as resdyn's own refusals
    (:func:`~resdyn.cli_run.user_errors`), instead of click's usage box; Ctrl-C anywhere in a
    command is one line and exit status 130. ``--help`` and no arguments still show the help."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except CommandLineError as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # the help (typer tells it so too)
                if e.format_message():
                    typer.echo(e.format_message(), err=True)
            else:
                given = list(sys.argv[1:] if args is None else args)
                err.print(f"[bold red]error:[/] {escape(_one_line(e, given))}", highlight=False)
            sys.exit(e.exit_code)
        except typer.Abort:  # end of input at a prompt (resdyn has none; Ctrl-C: _ctrl_c)
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
        raise typer.Exit(130) from None


def _one_line(e: CommandLineError, args: list[str]) -> str:
    """A command-line error's message on one line, with the value given where the message does
    not say it (typer's "Input should be a valid integer"), and where to look for valid ones."""
    msg = " ".join(e.format_message().split()).rstrip(".")
    opts = getattr(getattr(e, "param", None), "opts", None) or ()
    pairs = zip(args, [*args[1:], None], strict=True)  # each word and the one after it
    given = [a.split("=", 1)[1] if "=" in a else b for a, b in pairs if a.split("=", 1)[0] in opts]
    if given and given[-1] is not None and repr(given[-1]) not in msg:
        msg += f"; got {given[-1]!r}"
    ctx = getattr(e, "ctx", None)
    return msg + (f"; see '{ctx.command_path} --help'" if ctx is not None else "")


app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True,
                  help="Residual networks as nonlinear dynamical systems.")


@app.callback()
def _options(threads: Annotated[int | None, typer.Option(
        "--threads", min=1, help="CPU threads for torch in every phase (default: one thread, "
        "and the cores other processes leave free for the products and dense solves of blocks "
        "4096 wide or more)")] = None) -> None:
    """Residual networks as nonlinear dynamical systems."""
    from . import cli_run

    cli_run.THREADS[0] = threads
    if threads is not None:  # for the commands outside a run (train, evaluate, check)
        import torch

        torch.set_num_threads(threads)


# ---------------------------------------------------------------- options of several commands

ImagesOpt = Annotated[int, typer.Option("--images", "-n", min=1, help="number of test images "
                                        "(the first N of a permutation seeded by --seed)")]
MethodOpt = Annotated[str, typer.Option(help="singular values: " + " | ".join(SINGULAR_METHOD_NAMES))]
TopKOpt = Annotated[int | None, typer.Option("--top-k", min=1,
                                             help="only the k largest singular values")]
EpsOpt = Annotated[str, typer.Option(help="perturbation levels ε of the stopping rule "
                                     "L = ceil(d_scaled/ε), comma-separated")]
InputShapeOpt = Annotated[str | None, typer.Option(help="C,H,W (default: the model's)")]


def _items(text: str, kind: type, what: str) -> tuple:
    """Comma-separated values of ``kind`` (raises ValueError, shown as one line)."""
    try:
        values = tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{what} must be comma-separated {kind.__name__}s; got {text!r}") from None
    values = tuple(v.strip() for v in values) if kind is str else values
    if not values:
        raise ValueError(f"{what}: give at least one value; got {text!r}")
    return values


def _names(text: str, what: str) -> tuple[str, ...] | None:
    """``all`` (None: every one), or comma-separated names."""
    return None if text == "all" else _items(text, str, what)


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
def units_cmd(model: ModelOpt, weights: WeightsOpt = None, input_shape: InputShapeOpt = None,
              names: Annotated[str | None, typer.Option("--units", help="comma-separated module names, "
                                                        "for models resdyn does not recognise")] = None,
              ) -> None:
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
def check(model: ModelOpt, weights: WeightsOpt = None, input_shape: InputShapeOpt = None,
          seed: int = 0) -> None:
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
        raise typer.Exit(1)


@app.command()
def evaluate(model: ModelOpt, data: DataOpt = "digits", weights: WeightsOpt = None,
             device: DeviceOpt = "cpu", any_input_size: AnySizeOpt = False) -> None:
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
def train(model: ModelOpt, data: DataOpt, out: Annotated[Path, typer.Option(help="FILE.safetensors")],
          epochs: Annotated[int, typer.Option(min=1)] = 30,
          seed: int = 0, device: DeviceOpt = "cpu") -> None:
    """Train a zoo architecture on a data set and save weights + architecture (safetensors)."""
    from .train import train_and_save

    if out.suffix != ".safetensors":
        raise typer.BadParameter(f"--out must end in .safetensors; got {out}")
    with user_errors(), progress_bar("training") as update:
        def progress(epoch: int, step: int, total: int, loss: float) -> None:
            update(step, total, f"epoch {epoch}  loss {loss:.3f}")

        result = train_and_save(model, data, epochs, out, seed, device, progress)
    console.print(f"saved {out}: test accuracy {result.test_accuracy:.4f} "
                  f"after {epochs} epochs ({result.seconds:.0f} s)")


# ---------------------------------------------------------------- studies

@app.command()
@study_command("out/spectra")
def spectra(images: ImagesOpt = 5, seed: int = 0,
            names: Annotated[str, typer.Option("--units", help="all, or comma-separated unit "
                                               "(and stage) names")] = "all",
            with_stages: Annotated[bool, typer.Option("--stages/--no-stages",
                                                      help="also the stage Jacobians")] = False,
            method: MethodOpt = "auto", top_k: TopKOpt = None):
    """Singular spectra of unit (and stage) Jacobians for N test images -> DIR/spectra.parquet."""
    from .studies import SPECTRA, SpectraConfig

    return SPECTRA, SpectraConfig(images=images, seed=seed, stages=with_stages, method=method,
                                  k=top_k, names=_names(names, "--units"))


@app.command()
@study_command("out/stability")
def stability(images: ImagesOpt = 5, method: MethodOpt = "auto", top_k: TopKOpt = None,
              eps: Annotated[float, typer.Option(help="FGSM/PGD budget in pixel units")] = 0.1,
              unit: Annotated[str | None, typer.Option(help="unit for skip scaling and "
                                                       "interpolation")] = None,
              seed: int = 0):
    """The stability study of paper 000: spectra, propagation, skip scaling, interpolation."""
    from .studies import STABILITY, StabilityConfig

    return STABILITY, StabilityConfig(images=images, seed=seed, method=method, k=top_k, eps=eps,
                                      unit=unit)


@app.command()
@study_command("out/identity", precision=False)
def identity(images: ImagesOpt = 100, seed: int = 0, eps: EpsOpt = "0.1"):
    """Paper 002 on one network: perturbation from identity per block, distances, stopping rule."""
    from .studies import IDENTITY, IdentityConfig

    return IDENTITY, IdentityConfig(images=images, seed=seed, eps=_items(eps, float, "--eps"))


@app.command("identity-sweep")
@study_command("out/identity-sweep", model=False, data=True, precision=False)
def identity_sweep(depths: Annotated[str, typer.Option(help="blocks per section L of each "
                                                       "network, comma-separated")] = "2,4,8,16,32",
                   epochs: Annotated[int, typer.Option(help="training epochs per depth")] = 15,
                   lr: float = 0.1, batch_size: int = 128, seed: int = 0,
                   images: ImagesOpt = 100, eps: EpsOpt = "0.1"):
    """Paper 002's depth sweep: train preresnet(L) per depth, then measure each network."""
    from .studies import SWEEP, SweepConfig

    return SWEEP, SweepConfig(depths=_items(depths, int, "--depths"), epochs=epochs, lr=lr,
                              batch_size=batch_size, seed=seed, images=images,
                              eps=_items(eps, float, "--eps"))


@app.command()
@study_command("out/dynamics", precision=False)
def dynamics(images: ImagesOpt = 3, seed: int = 0,
             k: Annotated[int, typer.Option(min=1, help="exponents per depth and singular "
                                            "triplets per residual branch")] = 5,
             dense_max: Annotated[int, typer.Option(help="widest first unit whose composed "
                                                    "Jacobians stay dense (wider: top k by "
                                                    "ARPACK)")] = 4096,
             family: Annotated[str, typer.Option(help="RA4's networks trained alike at several "
                                                 "depths (shipped names or .safetensors), "
                                                 "comma-separated; 'auto': the digits ResNets "
                                                 "on digits; 'none'")] = "auto",
             family_images: Annotated[int, typer.Option(min=1, help="images per network of "
                                                        "the family")] = 2):
    """Lyapunov exponents across depth (exact and QR) and residual alignment (RA1-RA4)."""
    from .studies import DYNAMICS, DynamicsConfig

    fam = None if family == "auto" else () if family == "none" else _items(family, str,
                                                                            "--family")
    return DYNAMICS, DynamicsConfig(images=images, seed=seed, k=k, dense_max=dense_max,
                                    family=fam, family_images=family_images)


@app.command()
@study_command("out/stiffness")
def stiffness(images: ImagesOpt = 200, seed: int = 0,
              blocks: Annotated[str, typer.Option(help="all (every square block), or "
                                                  "comma-separated block names")] = "all",
              dense_max: Annotated[int, typer.Option(help="widest block whose eigenvalues are "
                                                     "all computed; wider: Arnoldi extremes")] = 4096,
              arnoldi_k: Annotated[int, typer.Option(help="eigenvalues per side on the Arnoldi "
                                                     "path")] = 6,
              metrics: Annotated[str, typer.Option(help="metrics correlated with loss and "
                                                   "correctness, comma-separated")] =
              "share_negative,stiffness_signed,stiffness_ratio,spectral_radius"):
    """Paper 003: eigenvalues of block Jacobians, stiffness indices, correlation with loss."""
    from .studies import STIFFNESS, StiffnessConfig

    return STIFFNESS, StiffnessConfig(images=images, seed=seed, dense_max=dense_max, k=arnoldi_k,
                                      blocks=_names(blocks, "--blocks"),
                                      metrics=_items(metrics, str, "--metrics"))


stable_app = typer.Typer(no_args_is_help=True, help="Paper 004: stable architectures.")
app.add_typer(stable_app, name="stable")


@stable_app.command("ode")
@study_command("out/stable-ode", model=False, precision=False)
def stable_ode(K: Annotated[list[str] | None, typer.Option(
                   "--K", help="another matrix to integrate, rows separated by ';' "
                   "(e.g. '0,-2;2,-0.1'); repeatable")] = None,
               h: Annotated[float, typer.Option(help="forward Euler step")] = 0.1,
               T: Annotated[float, typer.Option("--T", help="time horizon")] = 2.0,
               starts: Annotated[int, typer.Option(help="nearby initial conditions")] = 3,
               spread: Annotated[float, typer.Option(help="their distance from the center")] = 0.1,
               activation: Annotated[str, typer.Option(help="tanh | relu")] = "tanh"):
    """ẏ = K y and ẏ = σ(K y + b) for K₊, K₋, K₀ (and --K): Euler against a reference."""
    from .studies import ODE, OdeConfig
    from .studies.stable_ode import PAPER_K, parse_matrix

    extra = tuple((f"K{i + 1}" if len(K or []) > 1 else "K", parse_matrix(text))
                  for i, text in enumerate(K or []))
    return ODE, OdeConfig(matrices=PAPER_K + extra, h=h, T=T, starts=starts, spread=spread,
                          activation=activation)


@stable_app.command("compare")
@study_command("out/stable-compare", model=False, precision=False)
def stable_compare(datasets: Annotated[str, typer.Option("--data", "-d", help="data sets, "
                                                         "comma-separated")] = "swissroll,peaks,digits",
                   blocks: Annotated[int, typer.Option(help="depth: residual blocks")] = 8,
                   width: int = 8, h: Annotated[float, typer.Option(help="step size")] = 0.5,
                   gamma: Annotated[float, typer.Option(help="antisymmetric damping")] = 0.01,
                   epochs: int = 60, lr: float = 0.1, batch_size: int = 64, seed: int = 0,
                   images: ImagesOpt = 10,
                   eps: Annotated[float, typer.Option(help="FGSM budget, share of the data "
                                                      "range")] = 0.05):
    """Standard, antisymmetric and Hamiltonian networks trained alike, analysed side by side."""
    from .data import load_data
    from .studies import COMPARE, CompareConfig

    names = _items(datasets, str, "--data")
    for spec in names:  # unknown or unreadable data fail here, before any training
        load_data(spec, split="test")
    return COMPARE, CompareConfig(datasets=names, blocks=blocks, width=width, h=h, gamma=gamma,
                                  epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                                  images=images, eps=eps)


@app.command()
@with_run_options("out/demo")
def demo(ctx: typer.Context,
         quick: Annotated[bool, typer.Option("--quick", help="the smallest sizes: every study "
                                             "still runs end to end (about a minute)")] = False,
         **run_kwargs) -> None:
    """All four papers' studies on the embedded default (no download), one HTML report."""
    from contextlib import ExitStack

    import pandas as pd

    from .report import run_title
    from .studies.demo import run_demo

    run_kwargs.pop("config", None)
    run = RunOptions(**run_kwargs)
    start = time.monotonic()
    with user_errors(), interrupted(lambda: f"the finished tasks are kept in each part's "
                                    f"folder under {run.out}"), ExitStack() as stack:
        def progress(part):
            return stack.enter_context(study_progress(f"{part.folder}"))

        results = run_demo(run.out, quick=quick, executor=run.executor_spec(), progress=progress,
                           fresh=run.fresh, device=run.device, precision=run.precision,
                           threads=run.threads)
    write_options(run.out / "options.toml", ctx)
    table = Table("study", "folder", "tasks run", "resumed", "claims held", "not held",
                  "not judged", title=f"resdyn demo ({time.monotonic() - start:.0f} s)")
    for r in results:
        held = [c.held for c in r.claims.values()]
        table.add_row(run_title(r.out), r.out.name, str(r.tasks_run), str(r.stats.resumed),
                      str(held.count(True)), str(held.count(False)), str(held.count(None)))
    console.print(table, soft_wrap=False)
    console.print(f"report: {run.out / 'report.html'}")
    failed = sum(r.failed for r in results)
    if failed:
        report_failures(failed, sum(r.stats.total for r in results),
                        pd.concat([r.errors for r in results], ignore_index=True),
                        "each folder's errors.parquet")
        raise typer.Exit(1)


@app.command()
def report(folder: Annotated[Path, typer.Argument(help="a study's run folder, or a folder of "
                                                  "them (e.g. the demo's)")],
           out: Annotated[Path | None, typer.Option(help="the page to write (default: "
                                                    "FOLDER/report.html)")] = None) -> None:
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
