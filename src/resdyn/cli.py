"""The ``resdyn`` command line: parses arguments and calls the library, nothing more."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .cli_config import load_options, write_options
from .spectra import SINGULAR_METHOD_NAMES

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Residual networks as nonlinear dynamical systems.")
# wide enough for unit tables when piped to a file (rich assumes 80 columns off a terminal);
# messages never wrap (soft_wrap): a path or a name stays whole, whatever the terminal's width;
# tables (soft_wrap=False) fit the terminal
console = Console(width=None if sys.stdout.isatty() else 140, soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="zoo name or checkpoint (see `resdyn models`)")]
WeightsOpt = Annotated[Path | None, typer.Option("--weights", help="local state dict (.pth/.safetensors)")]
DataOpt = Annotated[str, typer.Option("--data", "-d",
                                      help="digits | cifar10 | mnist | PATH.npz | image folder")]
AnySizeOpt = Annotated[bool, typer.Option("--any-input-size", help="allow images of another "
                                          "size than the model was trained on")]


@app.callback()
def _options(threads: Annotated[int | None, typer.Option(
        "--threads", min=1, help="CPU threads for torch (default: torch's choice, one per core); "
        "1 is often fastest when other work shares the CPU")] = None) -> None:
    """Residual networks as nonlinear dynamical systems."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the library's input errors into one red line and exit status 2, not a traceback."""
    try:
        yield
    except typer.Exit:
        raise  # an exit status already decided (e.g. 130 after Ctrl-C)
    except (ValueError, KeyError, RuntimeError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        err.print(f"[bold red]error:[/] {msg}", highlight=False)
        raise typer.Exit(2) from None


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
    """Progress of a study run: says what it resumes, then done, failed, left and time left.

    The time left is estimated per analysis from the tasks of that analysis this run computed
    (the time between two finished tasks counts for the second), so a study whose training
    tasks take minutes and analyses a second is not misjudged; tasks of an analysis not yet
    timed are counted, not guessed.
    """
    last = time.monotonic()
    spent: dict[str, float] = {}
    count: dict[str, int] = {}
    with progress_bar(description, eta=False) as update:
        def show(p) -> None:
            nonlocal last
            show.last = p  # type: ignore[attr-defined]  # what an interrupt reports as kept
            now = time.monotonic()
            if p.label in ("resuming", "starting"):
                what = (f"resuming: {p.resumed} of {p.total} tasks already done, {p.left} to run"
                        if p.resumed else f"{p.total} tasks to run")
                err.print(f"{description}: {what}", highlight=False)
                last = now
                return
            spent[p.analysis] = spent.get(p.analysis, 0.0) + now - last
            count[p.analysis] = count.get(p.analysis, 0) + 1
            last = now
            label = f"{p.label}" + (f" · {p.failed} failed" if p.failed else "")
            if p.left:
                timed = sum(n * spent[a] / count[a] for a, n in p.pending.items() if a in count)
                untimed = sum(n for a, n in p.pending.items() if a not in count)
                label += f" · {p.left} left, ~{_duration(timed)}" + (
                    f" + {untimed} not yet timed" if untimed else "")
            update(p.done + p.failed, p.total, label)

        yield show


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(","))
    except ValueError:
        raise typer.BadParameter(f"expected C,H,W such as 3,32,32; got {text!r}") from None
    if len(shape) != 3:
        raise typer.BadParameter(f"expected three numbers C,H,W; got {text!r}")
    return shape


def _input_shape(model, text: str | None) -> tuple[int, ...]:
    """--input-shape, else the shape the model states; asks for it where it states none."""
    from .models import natural_input_shape

    shape = _shape(text) or natural_input_shape(model)
    if shape is None:
        raise ValueError(f"{type(model).__name__} states no input shape: give --input-shape C,H,W")
    return shape


def _load(model: str, weights: Path | None):
    from .models import load_model

    return load_model(model, weights)


@app.command()
def models() -> None:
    """List the model zoo."""
    from .models import zoo_names

    table = Table("spec", "what it is", title="resdyn model zoo")
    for name, desc in zoo_names():
        table.add_row(name, desc)
    console.print(table, soft_wrap=False)


@app.command("units")
def units_cmd(model: ModelOpt, weights: WeightsOpt = None,
              input_shape: Annotated[str | None, typer.Option(help="C,H,W (default: the model's)")] = None,
              names: Annotated[str | None, typer.Option("--units", help="comma-separated module names, "
                                                        "for models resdyn does not recognise")] = None,
              ) -> None:
    """Print the residual units of a model: stage, position, kind and shapes."""
    from .models import units

    with _user_errors():
        m = _load(model, weights)
        shape = _input_shape(m, input_shape)
        us = units(m, shape, names.split(",") if names else None)
    console.print(units_table(us, f"{model}: {len(us)} residual units, input {shape}"),
                  soft_wrap=False)


def units_table(us, title: str) -> Table:
    table = Table("#", "name", "stage", "pos", "kind", "in", "out", "n_in", "n_out", title=title)
    for i, u in enumerate(us):
        table.add_row(str(i), u.name, str(u.stage), str(u.position), u.kind,
                      "x".join(map(str, u.in_shape)), "x".join(map(str, u.out_shape)),
                      str(u.n_in), str(u.n_out))
    return table


@app.command()
def evaluate(model: ModelOpt, data: DataOpt = "digits", weights: WeightsOpt = None,
             device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
             any_input_size: AnySizeOpt = False) -> None:
    """Test accuracy and mean loss of a model on a data set's test split."""
    from .models import model_card
    from .train import evaluate as evaluate_model

    with _user_errors():
        m, ds = _model_and_data(model, weights, data, any_input_size)
        card = model_card(m)
        result = evaluate_model(m, ds, device=device)
    acc, loss = result.accuracy, result.loss
    recorded = card.info.get("test_accuracy") if card else None
    line = f"{model} on {data} test split ({len(ds.y)} images): accuracy {acc:.4f}, mean loss {loss:.4f}"
    if recorded is not None:
        line += f" (recorded at training: {float(recorded):.4f})"
    console.print(line)


@app.command()
def train(model: ModelOpt, data: DataOpt, out: Annotated[Path, typer.Option(help="FILE.safetensors")],
          epochs: Annotated[int, typer.Option(min=1)] = 30,
          seed: int = 0, device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu") -> None:
    """Train a zoo architecture on a data set and save weights + architecture (safetensors)."""
    from .train import train_and_save

    if out.suffix != ".safetensors":
        raise typer.BadParameter(f"--out must end in .safetensors; got {out}")
    with _user_errors(), progress_bar("training") as update:
        def progress(epoch: int, step: int, total: int, loss: float) -> None:
            update(step, total, f"epoch {epoch}  loss {loss:.3f}")

        result = train_and_save(model, data, epochs, out, seed, device, progress)
    console.print(f"saved {out}: test accuracy {result.test_accuracy:.4f} "
                  f"after {epochs} epochs ({result.seconds:.0f} s)")


def _model_and_data(model: str, weights: Path | None, data: str, any_input_size: bool = False):
    from .data import check_compatible, load_data

    m = _load(model, weights)
    ds = load_data(data, split="test")
    check_compatible(m, ds, any_input_size=any_input_size)
    return m, ds


ImagesOpt = Annotated[int, typer.Option("--images", "-n", min=1, help="number of test images "
                                        "(the first N of a permutation seeded by --seed)")]
MethodOpt = Annotated[str, typer.Option(help="singular values: " + " | ".join(SINGULAR_METHOD_NAMES))]
TopKOpt = Annotated[int | None, typer.Option("--top-k", min=1,
                                             help="only the k largest singular values")]
PrecisionOpt = Annotated[str, typer.Option(
    help="Jacobian products in float64 | float32 (the Gram matrix and eigensolve stay float64; "
         "float32 products move σ by < 1e-7·σ_max and build 1.6-4x faster)")]
OutOpt = Annotated[Path, typer.Option(help="run folder (resumable; refuses another configuration)")]
FreshOpt = Annotated[bool, typer.Option("--fresh", help="discard what --out holds and start over")]
ExecutorOpt = Annotated[str, typer.Option(help="serial | dask (implied by --workers/--scheduler)")]
WorkersOpt = Annotated[int | None, typer.Option(help="run tasks on a local Dask cluster of N "
                                                "worker processes")]
SchedulerOpt = Annotated[str | None, typer.Option(help="run tasks on a running Dask scheduler, "
                                                  "e.g. tcp://host:8786")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", callback=load_options, is_eager=True, dir_okay=False,
    help="TOML file of this command's options (flags given too win); every run writes its "
    "resolved options to DIR/options.toml")]


def _executor(executor: str, workers: int | None, scheduler: str | None):
    from .runs import Executor

    name = "dask" if executor == "serial" and (workers is not None or scheduler) else executor
    return Executor(name, workers=workers, scheduler=scheduler)


def _run(ctx: typer.Context, study, config, model: str | None, weights: Path | None,
         data: str | None, out: Path,
         fresh: bool,
         executor: str, workers: int | None, scheduler: str | None, any_input_size: bool) -> None:
    """Load, run one study with progress, print where and its summary; exit 1 if tasks failed."""
    from .runs.folder import check_out
    from .studies import run_study

    with _user_errors():
        check_out(out)
        ex = _executor(executor, workers, scheduler)
        if model is None:  # a study that trains its own networks, or of no data at all
            from .data import load_data

            m, ds = None, load_data(data, split="test") if data is not None else None
        else:
            m, ds = _model_and_data(model, weights, data, any_input_size)
        with study_progress(study.name) as show, _interrupted(lambda: _kept(show, out)):
            result = run_study(study, m, ds, config, out, model_name=model, executor=ex,
                               progress=show, fresh=fresh)
    write_options(result.out / "options.toml", ctx)
    console.print(f"{result.tasks_run} tasks run, {result.stats.resumed} resumed; tables, figures "
                  f"and summary in {result.out}/")
    console.print(result.summary.read_text(), markup=False, highlight=False)
    if result.strays:
        err.print(f"[yellow]{len(result.strays)} file(s) in {result.out}/tasks belong to no task "
                  "of this run and were left out of the tables[/] (listed in summary.md)",
                  highlight=False)
    if result.failed:
        _failed(result.failed, result.stats.total, result.errors, f"{result.out}/errors.parquet")
        raise typer.Exit(1)


def _failed(failed: int, total: int, errors, where: str) -> None:
    """Say how many tasks failed, and their error once when it is the same for every one."""
    from .studies.runner import one_error

    same = one_error(errors) if len(errors) else None
    if same is not None:
        err.print(f"[bold red]{failed} of {total} tasks failed[/], every one with {same}; fix "
                  "its cause and run the command again", highlight=False)
        return
    err.print(f"[bold red]{failed} of {total} tasks failed[/] (see {where}); rerun the same "
              "command to retry them", highlight=False)


def _kept(show: Callable, out: Path) -> str:
    p = getattr(show, "last", None)
    return (f"{p.done} of {p.total} tasks are kept in {out}" if p is not None
            else f"nothing was computed yet in {out}")


@contextmanager
def _interrupted(kept: Callable[[], str]) -> Iterator[None]:
    """Ctrl-C: say what is kept and that the same command resumes; exit status 130."""
    try:
        yield
    except KeyboardInterrupt:
        err.print(f"interrupted: {kept()}; the same command resumes from there",
                  highlight=False)
        raise typer.Exit(130) from None


@app.command()
def spectra(ctx: typer.Context, model: ModelOpt, data: DataOpt = "digits", weights: WeightsOpt = None,
            images: ImagesOpt = 5, seed: int = 0,
            names: Annotated[str, typer.Option("--units", help="all, or comma-separated unit "
                                               "(and stage) names")] = "all",
            with_stages: Annotated[bool, typer.Option("--stages/--no-stages",
                                                      help="also the stage Jacobians")] = False,
            method: MethodOpt = "auto", top_k: TopKOpt = None, precision: PrecisionOpt = "float64",
            out: OutOpt = Path("out/spectra"), fresh: FreshOpt = False,
            config: ConfigOpt = None,
            executor: ExecutorOpt = "serial", workers: WorkersOpt = None,
            scheduler: SchedulerOpt = None, any_input_size: AnySizeOpt = False) -> None:
    """Singular spectra of unit (and stage) Jacobians for N test images -> DIR/spectra.parquet."""
    from .studies import SPECTRA, SpectraConfig

    with _user_errors():
        config = SpectraConfig(images=images, seed=seed, stages=with_stages, method=method,
                               k=top_k, names=None if names == "all" else tuple(names.split(",")),
                               precision=precision)
    _run(ctx, SPECTRA, config, model, weights, data, out, fresh, executor, workers, scheduler,
         any_input_size)


@app.command()
def check(model: ModelOpt, weights: WeightsOpt = None,
          input_shape: Annotated[str | None, typer.Option(help="C,H,W (default: the model's)")] = None,
          seed: int = 0) -> None:
    """Taylor and adjoint tests of every unit and stage Jacobian operator (PASS/FAIL table)."""
    from .check import check_model

    with _user_errors():
        m = _load(model, weights)
        shape = _input_shape(m, input_shape)
        table = check_model(m, shape, seed=seed)
    shown = table.drop(columns=["remainder", "passed"])
    t = Table(*[str(c) for c in shown.columns], "result",
              title=f"{model}: Jacobian checks at a random input")
    # a NaN order with the remainder at round-off: nothing to fit, F exactly linear along v
    exact = table["order_quadratic"].isna() & (table["remainder"] == "round-off")
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
def stability(ctx: typer.Context, model: ModelOpt, data: DataOpt = "digits", weights: WeightsOpt = None,
              images: ImagesOpt = 5, method: MethodOpt = "auto", top_k: TopKOpt = None,
              precision: PrecisionOpt = "float64",
              eps: Annotated[float, typer.Option(help="FGSM/PGD budget in pixel units")] = 0.1,
              unit: Annotated[str | None, typer.Option(help="unit for skip scaling and "
                                                       "interpolation")] = None,
              seed: int = 0, out: OutOpt = Path("out/stability"), fresh: FreshOpt = False,
              config: ConfigOpt = None,
              executor: ExecutorOpt = "serial", workers: WorkersOpt = None,
              scheduler: SchedulerOpt = None, any_input_size: AnySizeOpt = False) -> None:
    """The stability study of paper 000: spectra, propagation, skip scaling, interpolation."""
    from .studies import STABILITY, StabilityConfig

    with _user_errors():
        config = StabilityConfig(images=images, seed=seed, method=method, k=top_k, eps=eps,
                                 unit=unit, precision=precision)
    _run(ctx, STABILITY, config, model, weights, data, out, fresh, executor, workers, scheduler,
         any_input_size)


def _items(text: str, kind: type, what: str) -> tuple:
    """Comma-separated values of ``kind`` (raises ValueError, shown as one line by _user_errors)."""
    try:
        values = tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{what} must be comma-separated {kind.__name__}s; got {text!r}") from None
    values = tuple(v.strip() for v in values) if kind is str else values
    if not values:
        raise ValueError(f"{what}: give at least one value; got {text!r}")
    return values


EpsOpt = Annotated[str, typer.Option(help="perturbation levels ε of the stopping rule "
                                     "L = ceil(d_scaled/ε), comma-separated")]


@app.command()
def identity(ctx: typer.Context, model: ModelOpt, data: DataOpt = "digits", weights: WeightsOpt = None,
             images: ImagesOpt = 100, seed: int = 0, eps: EpsOpt = "0.1",
             out: OutOpt = Path("out/identity"), fresh: FreshOpt = False,
             config: ConfigOpt = None,
             executor: ExecutorOpt = "serial", workers: WorkersOpt = None,
             scheduler: SchedulerOpt = None, any_input_size: AnySizeOpt = False) -> None:
    """Paper 002 on one network: perturbation from identity per block, distances, stopping rule."""
    from .studies import IDENTITY, IdentityConfig

    with _user_errors():
        config = IdentityConfig(images=images, seed=seed, eps=_items(eps, float, "--eps"))
    _run(ctx, IDENTITY, config, model, weights, data, out, fresh, executor, workers, scheduler,
         any_input_size)


@app.command("identity-sweep")
def identity_sweep(ctx: typer.Context, data: DataOpt = "digits",
                   depths: Annotated[str, typer.Option(help="blocks per section L of each "
                                                       "network, comma-separated")] = "2,4,8,16,32",
                   epochs: Annotated[int, typer.Option(help="training epochs per depth")] = 15,
                   lr: float = 0.1, batch_size: int = 128, seed: int = 0,
                   images: ImagesOpt = 100, eps: EpsOpt = "0.1",
                   out: OutOpt = Path("out/identity-sweep"), fresh: FreshOpt = False,
                   config: ConfigOpt = None,
                   executor: ExecutorOpt = "serial", workers: WorkersOpt = None,
                   scheduler: SchedulerOpt = None) -> None:
    """Paper 002's depth sweep: train preresnet(L) per depth, then measure each network."""
    from .studies import SWEEP, SweepConfig

    with _user_errors():
        config = SweepConfig(depths=_items(depths, int, "--depths"), epochs=epochs, lr=lr,
                             batch_size=batch_size, seed=seed, images=images,
                             eps=_items(eps, float, "--eps"))
    _run(ctx, SWEEP, config, None, None, data, out, fresh, executor, workers, scheduler, False)


@app.command()
def stiffness(ctx: typer.Context, model: ModelOpt, data: DataOpt = "digits", weights: WeightsOpt = None,
              images: ImagesOpt = 200, seed: int = 0,
              blocks: Annotated[str, typer.Option(help="all (every square block), or "
                                                  "comma-separated block names")] = "all",
              dense_max: Annotated[int, typer.Option(help="widest block whose eigenvalues are "
                                                     "all computed; wider: Arnoldi extremes")] = 4096,
              arnoldi_k: Annotated[int, typer.Option(help="eigenvalues per side on the Arnoldi "
                                                     "path")] = 6,
              metrics: Annotated[str, typer.Option(help="metrics correlated with loss and "
                                                   "correctness, comma-separated")] =
              "share_negative,stiffness_signed,stiffness_ratio,spectral_radius",
              out: OutOpt = Path("out/stiffness"), fresh: FreshOpt = False,
              config: ConfigOpt = None,
              executor: ExecutorOpt = "serial", workers: WorkersOpt = None,
              scheduler: SchedulerOpt = None, any_input_size: AnySizeOpt = False) -> None:
    """Paper 003: eigenvalues of block Jacobians, stiffness indices, correlation with loss."""
    from .studies import STIFFNESS, StiffnessConfig

    with _user_errors():
        config = StiffnessConfig(images=images, seed=seed, dense_max=dense_max, k=arnoldi_k,
                                 blocks=None if blocks == "all" else _items(blocks, str,
                                                                              "--blocks"),
                                 metrics=_items(metrics, str, "--metrics"))
    _run(ctx, STIFFNESS, config, model, weights, data, out, fresh, executor, workers, scheduler,
         any_input_size)


@app.command()
def demo(ctx: typer.Context,
         out: Annotated[Path, typer.Option(help="the demo folder: one subfolder per study and "
                                           "report.html")] = Path("out/demo"),
         quick: Annotated[bool, typer.Option("--quick", help="the smallest sizes: every study "
                                             "still runs end to end (about a minute)")] = False,
         fresh: FreshOpt = False, config: ConfigOpt = None, executor: ExecutorOpt = "serial",
         workers: WorkersOpt = None, scheduler: SchedulerOpt = None) -> None:
    """All four papers' studies on the embedded default (no download), one HTML report."""
    from contextlib import ExitStack

    from .report import run_title
    from .studies.demo import run_demo

    start = time.monotonic()
    with _user_errors(), _interrupted(lambda: f"the finished tasks are kept in each part's "
                                      f"folder under {out}"), ExitStack() as stack:
        def progress(part):
            return stack.enter_context(study_progress(f"{part.folder}"))

        results = run_demo(out, quick=quick, executor=_executor(executor, workers, scheduler),
                           progress=progress, fresh=fresh)
    write_options(out / "options.toml", ctx)
    table = Table("study", "folder", "tasks run", "resumed", "claims held", "not held",
                  "not judged", title=f"resdyn demo ({time.monotonic() - start:.0f} s)")
    for r in results:
        held = [c.held for c in r.claims.values()]
        table.add_row(run_title(r.out), r.out.name, str(r.tasks_run), str(r.stats.resumed),
                      str(held.count(True)), str(held.count(False)), str(held.count(None)))
    console.print(table, soft_wrap=False)
    console.print(f"report: {out / 'report.html'}")
    failed = sum(r.failed for r in results)
    if failed:
        import pandas as pd

        _failed(failed, sum(r.stats.total for r in results),
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

    with _user_errors():
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder")
        path = write_report(folder, out)
    console.print(f"{path} ({len(run_folders(folder))} study run(s))")


stable_app = typer.Typer(no_args_is_help=True, help="Paper 004: stable architectures.")
app.add_typer(stable_app, name="stable")


@stable_app.command("ode")
def stable_ode(ctx: typer.Context, K: Annotated[list[str] | None, typer.Option(
                   "--K", help="another matrix to integrate, rows separated by ';' "
                   "(e.g. '0,-2;2,-0.1'); repeatable")] = None,
               h: Annotated[float, typer.Option(help="forward Euler step")] = 0.1,
               T: Annotated[float, typer.Option("--T", help="time horizon")] = 2.0,
               starts: Annotated[int, typer.Option(help="nearby initial conditions")] = 3,
               spread: Annotated[float, typer.Option(help="their distance from the center")] = 0.1,
               activation: Annotated[str, typer.Option(help="tanh | relu")] = "tanh",
               out: OutOpt = Path("out/stable-ode"), fresh: FreshOpt = False,
               config: ConfigOpt = None) -> None:
    """ẏ = K y and ẏ = σ(K y + b) for K₊, K₋, K₀ (and --K): Euler against a reference."""
    from .studies import ODE, OdeConfig
    from .studies.stable_ode import PAPER_K, parse_matrix

    with _user_errors():
        extra = tuple((f"K{i + 1}" if len(K or []) > 1 else "K", parse_matrix(text))
                      for i, text in enumerate(K or []))
        config = OdeConfig(matrices=PAPER_K + extra, h=h, T=T, starts=starts, spread=spread,
                           activation=activation)
    _run(ctx, ODE, config, None, None, None, out, fresh, "serial", None, None, False)


@stable_app.command("compare")
def stable_compare(ctx: typer.Context, data: Annotated[str, typer.Option("--data", "-d", help="data sets, "
                                                     "comma-separated")] = "swissroll,peaks,digits",
                   blocks: Annotated[int, typer.Option(help="depth: residual blocks")] = 8,
                   width: int = 8, h: Annotated[float, typer.Option(help="step size")] = 0.5,
                   gamma: Annotated[float, typer.Option(help="antisymmetric damping")] = 0.01,
                   epochs: int = 60, lr: float = 0.1, batch_size: int = 64, seed: int = 0,
                   images: ImagesOpt = 10,
                   eps: Annotated[float, typer.Option(help="FGSM budget, share of the data "
                                                      "range")] = 0.05,
                   out: OutOpt = Path("out/stable-compare"), fresh: FreshOpt = False,
                   config: ConfigOpt = None,
                   executor: ExecutorOpt = "serial", workers: WorkersOpt = None,
                   scheduler: SchedulerOpt = None) -> None:
    """Standard, antisymmetric and Hamiltonian networks trained alike, analysed side by side."""
    from .studies import COMPARE, CompareConfig

    with _user_errors():
        datasets = _items(data, str, "--data")
        from .data import load_data

        for spec in datasets:  # unknown or unreadable data fail here, before any training
            load_data(spec, split="test")
        config = CompareConfig(datasets=datasets, blocks=blocks, width=width, h=h, gamma=gamma,
                               epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                               images=images, eps=eps)
    _run(ctx, COMPARE, config, None, None, None, out, fresh, executor, workers, scheduler, False)


def main() -> None:  # pragma: no cover - console-script entry for `python -m resdyn`
    app(prog_name="resdyn")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
