"""One runner for every study: run folder, resume, executor, tables, figures, claims, summary, report.

A run folder holds one identity (study, resolved config, model hash, data hash): the same call
resumes, another configuration is refused, and one process at a time writes it (see
:mod:`resdyn.runs.folder`). Options are checked before the folder is claimed; tables are built
from the planned tasks' files only. Every finished task is
stored at once, so an interrupted run loses only the tasks in flight; a task that raises is
recorded in the ``errors`` table and retried by the next run, and the claims are not judged
while any task is missing.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from ..data import Dataset, TokenData, embedded
from ..report import write_report
from ..runs import Executor, Progress, RunContext, RunStats, TaskStore, run_tasks, write_parquet
from ..runs.console import one_error
from ..runs.folder import check_out, claimed, locked
from ..runs.identity import data_digest, model_digest, plain, run_identity
from ..runs.modelref import save_model
from ..runs.store import atomic_write, run_digest, writing
from ..summary import Summary
from .base import MOVED, Claim, Context, Plan, Study, upgrade_safe
from .options import check_config
from .registry import owned_names

#: The columns of :meth:`StudyResult.claims_frame`.
CLAIM_COLUMNS = ["claim", "verdict", "value", "low", "high", "threshold", "side", "rule",
                 "evidence"]


@dataclass(frozen=True)
class StudyResult:
    """What a study run wrote to ``out`` and what it found.

    Example:
        The ODE examples (a study of no model and no data):

        >>> import tempfile
        >>> from resdyn.studies import ODE, OdeConfig
        >>> r = run_study(ODE, None, None, OdeConfig(), tempfile.mkdtemp())
        >>> r.stats, r.failed, len(r.errors)
        (RunStats(total=6, resumed=0, ran=6, failed=0), 0, 0)
        >>> sorted(r.tables), sorted(r.figures)
        (['eigenvalues', 'growth', 'trajectories'], ['fig1_trajectories'])
        >>> [claim.verdict for claim in r.claims.values()]
        ['yes', 'yes']
        >>> r.summary.name, r.report.name, r.report.parent == r.out
        ('summary.md', 'report.html', True)
        >>> r.claims_frame().columns.tolist()
        ['claim', 'verdict', 'value', 'low', 'high', 'threshold', 'side', 'rule', 'evidence']
        >>> r.claims_frame()["verdict"].tolist()
        ['yes', 'yes']

    In a notebook the result shows itself as its claims table and its figures (``_repr_html_``).
    ``temporary``: ``out`` is the fresh temporary folder of a run given ``out=None`` (see
    :func:`run_study`).
    """

    out: Path
    tables: dict[str, pd.DataFrame] = field(repr=False)
    figures: dict[str, Path]
    claims: dict[str, Claim]
    summary: Path
    report: Path
    stats: RunStats
    errors: pd.DataFrame = field(repr=False)
    strays: list[str] = field(default_factory=list)
    recomputed: list[str] = field(default_factory=list)
    temporary: bool = False

    @property
    def tasks_run(self) -> int:
        return self.stats.ran

    def warnings(self) -> list[str]:
        """What the run says about stored task files it did not take as they were."""
        said = []
        if self.recomputed:
            said.append(f"{len(self.recomputed)} stored task file(s) in {self.out}/tasks did not "
                        "prove they are this run's results and were computed again (listed in "
                        "summary.md)")
        if self.strays:
            said.append(f"{len(self.strays)} file(s) in {self.out}/tasks belong to no task of "
                        "this run and were left out of the tables (listed in summary.md)")
        return said

    @property
    def failed(self) -> int:
        return self.stats.failed

    def claims_frame(self) -> pd.DataFrame:
        """The claims as a table: claim, verdict ("yes", "no", "undecided", "not judged"), the
        number that decided it with its 95 % interval (value, low, high), its threshold and the
        claim's side of it ("above" or "below"), the rule that combines a claim's numbers,
        and the evidence. A claim of several numbers shows the one that decided it (see
        :meth:`tests_frame` for all); one without numbers (not judged) has NaN there."""
        rows = []
        for text, c in self.claims.items():
            d = c.deciding
            rows.append({"claim": text, "verdict": c.verdict,
                         "value": d.interval.value if d else np.nan,
                         "low": d.interval.low if d else np.nan,
                         "high": d.interval.high if d else np.nan,
                         "threshold": d.threshold if d else np.nan,
                         "side": d.side if d else None, "rule": c.rule, "evidence": c.evidence})
        return pd.DataFrame(rows, columns=CLAIM_COLUMNS)

    def tests_frame(self) -> pd.DataFrame:
        """Every number of every claim, one row each: claim, what, value, low, high, threshold,
        side, method (of the interval), n and unit (its units of evidence), verdict (of that
        number alone)."""
        rows = [{"claim": text, **t.record()} for text, c in self.claims.items()
                for t in c.tests]
        return pd.DataFrame(rows, columns=["claim", "what", "value", "low", "high", "threshold",
                                           "side", "method", "n", "unit", "verdict"])

    def _repr_html_(self) -> str:
        """A notebook's view: the folder, the tasks, the claims and the figures (inline PNGs)."""
        import base64
        import html

        parts = [f"<p><b>{html.escape(str(self.out))}</b>: {self.stats.ran} of "
                 f"{self.stats.total} tasks run here, {self.stats.resumed} resumed, "
                 f"{self.stats.failed} failed</p>"]
        if self.claims:
            parts.append(self.claims_frame().to_html(index=False))
        for name, path in self.figures.items():
            if Path(path).is_file():
                data = base64.b64encode(Path(path).read_bytes()).decode()
                parts.append(f'<figure><img alt="{html.escape(name)}" style="max-width:100%" '
                             f'src="data:image/png;base64,{data}"></figure>')
        return "\n".join(parts)


def model_label(model: nn.Module) -> str:
    """The name a model goes by in tables: its zoo spec, else its class name."""
    from ..models import model_card

    card = model_card(model)
    return card.spec if card is not None else type(model).__name__


def run_study(study: Study, model: nn.Module | None, data: Dataset | None, config: Any = None,
              out: str | Path | None = "out", *, model_name: str | None = None,
              executor: Executor | str | Any = "serial", progress: Progress | None = None,
              fresh: bool = False, device: str = "cpu", precision: str = "float64",
              threads: int | None = None) -> StudyResult:
    """Run ``study`` on ``model`` and ``data`` into the folder ``out`` (resumable).

    Args:
        study: the study's declaration (e.g. :data:`resdyn.studies.stability.STABILITY`).
        model: eval-mode network; never modified (None for a study that trains its own
            networks, e.g. the depth sweep). data: its data set (test split); None for a study
            of no data (the ODE examples).
        config: the study's config dataclass (default: its defaults).
        out: run folder; created, resumed, or refused if it holds another configuration.
            None: a fresh folder ``resdyn-<study>-XXXXXXXX`` in the system's temporary
            directory (``tempfile.gettempdir()``, ``$TMPDIR``), made once the options are
            checked; the result's ``out`` names it and ``temporary`` is True. resdyn never
            deletes it (the result's tables are in memory, its figures, summary and report
            are files there): it lasts until you remove it (``shutil.rmtree(r.out)``) or the
            system clears its temporary directory.
        model_name: label in tables and figures (default: the zoo spec or class name).
        executor: "serial", "dask", an :class:`resdyn.runs.Executor`, or a
            ``dask.distributed.Client`` of yours: used as is (no cluster is started, so a
            notebook's runs share one) and not closed.
        progress: called with a :class:`resdyn.runs.RunProgress` after every task.
        fresh: discard what resdyn wrote in ``out`` and start over (refused while ``out``
            holds files of anyone else).
        device: where every task computes (the run context, :class:`resdyn.runs.RunContext`):
            "cpu", "cuda", "cuda:N" or "auto"; recorded per row, so a run may resume on another
            device.
        precision: the Jacobian products in "float64" or "float32" (part of the run's
            identity).
        threads: torch threads for every phase of every task (None: the automatic policy of
            :mod:`resdyn._threads`).

    Returns:
        :class:`StudyResult` (``strays``: files in ``out/tasks`` of no planned task, left out;
        ``recomputed``: stored task files that did not prove they are this run's, computed
        again).

    Raises:
        RunFolderError: ``out`` is a file, holds another configuration (names the fields), or
            is in use by another process (names it).
        ValueError: an option the model or data cannot take (checked before ``out`` is
            claimed), a non-finite number in ``config``, an unknown or absent device, a
            precision the study refuses.
        TypeError: a config of another study.

    Example:
        >>> import tempfile
        >>> from resdyn import load_data, load_model
        >>> from resdyn.studies import SPECTRA, SpectraConfig
        >>> model, data = load_model("digits-resnet20"), load_data("digits")
        >>> out = tempfile.mkdtemp()
        >>> r = run_study(SPECTRA, model, data, SpectraConfig(images=1, k=3), out)
        >>> r.stats, r.tables["spectra"]["name"].tolist()[:3], sorted(r.figures)
        (RunStats(total=9, resumed=0, ran=9, failed=0), ['stages.0.0', 'stages.0.1', 'stages.0.2'], ['bins'])
        >>> run_study(SPECTRA, model, data, SpectraConfig(images=1, k=3), out).stats  # resumes
        RunStats(total=9, resumed=9, ran=0, failed=0)
        >>> run_study(SPECTRA, model, data, SpectraConfig(images=2, k=3), out)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        resdyn.runs.folder.RunFolderError: ... of another configuration (config.images: 1 -> 2). ...
    """
    temporary = out is None
    out = None if out is None else check_out(out)
    config = study.config() if config is None else config
    if not isinstance(config, study.config):
        raise TypeError(f"the {study.name} study takes a {study.config.__name__}; got "
                        f"{type(config).__name__}")
    check_config(config)
    if model is not None and not isinstance(model, nn.Module):
        hint = (f" (load it first: resdyn.load_model({model!r}))" if isinstance(model, str)
                else "")
        raise TypeError(f"model must be a torch.nn.Module or None; got a "
                        f"{type(model).__name__}{hint}")
    if isinstance(data, TokenData) and model is not None:
        data = embedded(data, model)  # a causal LM reads the embedded context
    if data is not None and not isinstance(data, Dataset):
        hint = f" (load it first: resdyn.load_data({data!r}))" if isinstance(data, str) else ""
        raise TypeError(f"data must be a resdyn Dataset or None; got a {type(data).__name__}"
                        f"{hint}")
    run = RunContext.on(device, precision, threads)
    if precision not in study.precisions:
        raise ValueError(f"the {study.name} study computes in {', '.join(study.precisions)} "
                         f"only: {study.precision_note}")
    if study.resolve is not None:
        if model is None or data is None:
            raise ValueError(f"the {study.name} study analyses a model on a data set; give both")
        config = study.resolve(config, model, data)
    name = model_name or (model_label(model) if model is not None else "")
    model_hash = model_digest(model) if model is not None else None
    identity = run_identity(study.name, config, name, model_hash, data,
                            data_digest(data) if data is not None else None)
    # how the run computes, where it changes the results: the products' precision (the
    # device is recorded per row instead)
    identity = {**identity, "run": {"precision": precision}, "revision": study.revision}
    executor = Executor.of(executor)  # an unknown name is refused before the folder is claimed
    executor.check_reachable()
    if out is None:
        import tempfile

        out = Path(tempfile.mkdtemp(prefix=f"resdyn-{study.name}-"))
    ctx = Context(model, None, name, data, config, out, run=run)
    try:
        with locked(out):
            result = _run(study, ctx, model_hash, identity, executor, progress, fresh)
    except BaseException:
        if temporary:  # no result names it (a refusal, Ctrl-C): it is not left behind
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        raise
    return replace(result, temporary=True) if temporary else result


def _run(study: Study, ctx: Context, model_hash: str | None, identity: dict,
         executor: Executor | str, progress: Progress | None, fresh: bool) -> StudyResult:
    """run_study's work, while this process holds the run folder's lock."""
    def owned(found: dict[str, Any] | None) -> list[str]:
        return owned_names(found, study)

    with claimed(ctx.out, identity, fresh=fresh, owned=owned,
                 upgrade_safe=upgrade_safe(study, ctx), moved=MOVED, changes=study.changes):
        return _work(study, ctx, model_hash, identity, executor, progress)


def _work(study: Study, ctx: Context, model_hash: str | None, identity: dict,
          executor: Executor | str, progress: Progress | None) -> StudyResult:
    """run_study's work in the claimed folder."""
    out, model = ctx.out, ctx.model
    ctx = replace(ctx, model_ref=save_model(model, model_hash, out)
                  if model is not None and model_hash is not None else None)
    plan = study.plan(ctx)
    ctx = replace(ctx, meta=plan.meta)
    keys = [(t.analysis, t.key) for t in plan.tasks]
    if len(set(keys)) != len(keys):
        raise AssertionError(f"the {study.name} study planned duplicate task keys")
    ids = [t.id for t in plan.tasks]
    start = time.perf_counter()
    store = TaskStore(out / "tasks", run=run_digest(identity))
    recomputed = store.sweep(ids)
    models = {ctx.ref.key: model} if model is not None else {}
    stats = run_tasks(plan.tasks, store, executor, progress, ctx.run, models)
    errors = store.errors(ids)
    strays = store.strays(ids)
    complete = len(errors) == 0
    tables = _tables(study, store, plan, ctx, derived=complete)
    for table_name, table in tables.items():
        write_parquet(table, out / f"{table_name}.parquet")
    if len(errors):
        write_parquet(errors, out / "errors.parquet")
    else:
        (out / "errors.parquet").unlink(missing_ok=True)
    figures: dict[str, Path] = {}
    claims: dict[str, Claim] = {}
    if complete:
        for fig_name, fig in study.figures.items():
            figures[fig_name] = out / f"{fig_name}.png"
            with writing(figures[fig_name]):
                fig.draw(tables, ctx, figures[fig_name])
        claims = {text: fn(tables, ctx) for text, fn in study.claims.items()}
    seconds = time.perf_counter() - start
    summary = _summary(study, ctx, tables, claims, stats, errors, strays, seconds)
    replace(summary, recomputed=recomputed).write(out)
    _write_config(out, identity, executor, stats, seconds, ctx.run)
    report = write_report(out)
    return StudyResult(out, tables, figures, claims, out / "summary.md", report, stats, errors,
                       strays, recomputed)


def _tables(study: Study, store: TaskStore, plan: Plan, ctx: Context, derived: bool,
            ) -> dict[str, pd.DataFrame]:
    """The study's tables from the planned tasks' rows (nothing else in the store); the derived
    ones only when every task finished (``derived``)."""
    tables: dict[str, pd.DataFrame] = {}
    for table_name, spec in study.tables.items():
        if spec.derive is not None:
            if derived:
                tables[table_name] = spec.derive(tables, ctx)
            continue
        analysis = spec.analysis or table_name
        rows = store.load(analysis, [t.key for t in plan.tasks if t.analysis == analysis])
        tables[table_name] = spec.order(rows, ctx) if spec.order and len(rows) else rows
    return tables


def heading(study: Study, ctx: Context) -> str:
    """'<title>: <model> on <data>', leaving out what the run has not got."""
    on = " on ".join(filter(None, (ctx.model_name, ctx.data.name if ctx.data else "")))
    return f"{study.title}: {on}" if on else study.title


def _summary(study: Study, ctx: Context, tables, claims: dict[str, Claim], stats: RunStats,
             errors: pd.DataFrame, strays: list[str], seconds: float) -> Summary:
    run = (f"This run computed {stats.ran} of {stats.total} tasks in {seconds:.0f} s"
           + (f" ({stats.resumed} were resumed from tasks/)." if stats.resumed else "."))
    figures = {n: f.caption for n, f in study.figures.items()}
    tables_declared = list(study.tables)
    if len(errors):
        failure = (f"**{len(errors)} of {stats.total} tasks failed**, so the claims are not "
                   "judged, no figure is drawn and only the tasks' own tables are written. ")
        same = one_error(errors)
        if same is not None:
            failure += (f"Every failed task raised the same error, {same}: fix its cause, then "
                        "the same command reruns them (all in `errors.parquet`).")
            return Summary(heading(study, ctx), run, strays, failure, figures=figures, tables=tables_declared)
        failure += "The same command retries them. Errors (all in `errors.parquet`):"
        rows = [(f"{r.analysis} {r.key}", f"{r.error}: {r.message}") for r in errors.itertuples()]
        return Summary(heading(study, ctx), run, strays, failure, rows, figures=figures,
                       tables=tables_declared)
    return Summary(heading(study, ctx), run, strays,
                   claims=[{"claim": text, **c.record()} for text, c in claims.items()],
                   notes=study.notes(tables, ctx) if study.notes is not None else "",
                   figures=figures, tables=tables_declared)


def _write_config(out: Path, identity: dict, executor: Executor | str, stats: RunStats,
                  seconds: float, run: RunContext) -> None:
    import torch

    from .. import __version__

    ex = Executor.of(executor)
    gpu = torch.cuda.get_device_name(run.device) if run.device.startswith("cuda") else None
    info = {**identity, "executor": plain(ex.describe()),
            "device": {"torch": run.device, "gpu": gpu, "precision": run.precision,
                       "machine": platform.machine(), "cpus": os.cpu_count(),
                       "torch_threads": run.threads or "automatic"},
            "last_run": {"tasks": stats.total, "resumed": stats.resumed, "ran": stats.ran,
                         "failed": stats.failed, "seconds": round(seconds, 3)},
            "versions": {"resdyn": __version__, "torch": torch.__version__,
                         "python": platform.python_version()}}
    text = json.dumps(info, indent=2)
    atomic_write(out / "config.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))
