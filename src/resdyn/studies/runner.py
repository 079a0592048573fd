"""One runner for every study: run folder, resume, executor, tables, figures, claims, summary, report.

A run folder holds one identity (study, resolved config, model hash, data hash): the same call
resumes, another configuration is refused (see :mod:`resdyn.runs.folder`). Every finished task is
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

import pandas as pd
from torch import nn

from ..data import Dataset
from ..runs import Executor, Progress, RunStats, TaskStore, run_tasks, write_parquet
from ..runs.folder import check_out, claim, release
from ..runs.identity import data_digest, model_digest, plain, run_identity
from ..runs.modelref import save_model
from ..runs.store import atomic_write
from .base import Claim, Context, Study


@dataclass(frozen=True)
class StudyResult:
    """What a study run wrote to ``out`` and what it found."""

    out: Path
    tables: dict[str, pd.DataFrame] = field(repr=False)
    figures: dict[str, Path]
    claims: dict[str, Claim]
    summary: Path
    report: Path
    stats: RunStats
    errors: pd.DataFrame = field(repr=False)

    @property
    def tasks_run(self) -> int:
        return self.stats.ran

    @property
    def failed(self) -> int:
        return self.stats.failed


def model_label(model: nn.Module) -> str:
    """The name a model goes by in tables: its zoo spec, else its class name."""
    from ..models import model_card

    card = model_card(model)
    return card.spec if card is not None else type(model).__name__


def run_study(study: Study, model: nn.Module | None, data: Dataset | None, config: Any = None,
              out: str | Path = "out", *, model_name: str | None = None,
              executor: Executor | str = "serial", progress: Progress | None = None,
              fresh: bool = False) -> StudyResult:
    """Run ``study`` on ``model`` and ``data`` into the folder ``out`` (resumable).

    Args:
        study: the study's declaration (e.g. :data:`resdyn.studies.stability.STABILITY`).
        model: eval-mode network; never modified (None for a study that trains its own
            networks, e.g. the depth sweep). data: its data set (test split); None for a study
            of no data (the ODE examples).
        config: the study's config dataclass (default: its defaults).
        out: run folder; created, resumed, or refused if it holds another configuration.
        model_name: label in tables and figures (default: the zoo spec or class name).
        executor: "serial", "dask", or an :class:`resdyn.runs.Executor`.
        progress: called with a :class:`resdyn.runs.RunProgress` after every task.
        fresh: discard what ``out`` holds and start over.

    Returns:
        :class:`StudyResult`.

    Raises:
        RunFolderError: ``out`` is a file, or holds another configuration (names the fields).
        TypeError: a config of another study.
    """
    out = check_out(out)
    config = study.config() if config is None else config
    if not isinstance(config, study.config):
        raise TypeError(f"the {study.name} study takes a {study.config.__name__}; got "
                        f"{type(config).__name__}")
    if study.resolve is not None:
        config = study.resolve(config, model, data)
    name = model_name or (model_label(model) if model is not None else "")
    model_hash = model_digest(model) if model is not None else None
    identity = run_identity(study.name, config, name, model_hash, data,
                            data_digest(data) if data is not None else None)
    resumed = claim(out, identity, fresh=fresh)
    try:
        ref = save_model(model, model_hash, out) if model is not None else None
        ctx = Context(model, ref, name, data, config, out)
        plan = study.plan(ctx)
    except BaseException:
        if not resumed:  # a run that could not even start leaves no claim on the folder
            release(out)
        raise
    ctx = replace(ctx, meta=plan.meta)
    keys = [(t.analysis, t.key) for t in plan.tasks]
    if len(set(keys)) != len(keys):
        raise AssertionError(f"the {study.name} study planned duplicate task keys")
    start = time.perf_counter()
    store = TaskStore(out / "tasks")
    stats = run_tasks(plan.tasks, store, executor, progress)
    errors = store.errors()
    complete = len(errors) == 0
    tables = _tables(study, store, ctx, derived=complete)
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
            fig.draw(tables, ctx, figures[fig_name])
        claims = {text: fn(tables, ctx) for text, fn in study.claims.items()}
    seconds = time.perf_counter() - start
    summary = out / "summary.md"
    atomic_write(summary, lambda tmp: tmp.write_text(
        _summary(study, ctx, tables, claims, stats, errors, seconds), encoding="utf-8"))
    _write_json(out / "claims.json", {"claims": [
        {"claim": text, "held": c.held, "verdict": c.verdict, "evidence": c.evidence}
        for text, c in claims.items()]})
    _write_config(out, identity, executor, stats, seconds, model)
    from ..report import write_report

    report = write_report(out, study=study)
    return StudyResult(out, tables, figures, claims, summary, report, stats, errors)


def _tables(study: Study, store: TaskStore, ctx: Context, derived: bool,
            ) -> dict[str, pd.DataFrame]:
    """The study's tables; the derived ones only when every task finished (``derived``)."""
    tables: dict[str, pd.DataFrame] = {}
    for table_name, spec in study.tables.items():
        if spec.derive is not None:
            if derived:
                tables[table_name] = spec.derive(tables, ctx)
            continue
        rows = store.load(spec.analysis or table_name)
        tables[table_name] = spec.order(rows, ctx) if spec.order and len(rows) else rows
    return tables


def heading(study: Study, ctx: Context) -> str:
    """'<title>: <model> on <data>', leaving out what the run has not got."""
    on = " on ".join(filter(None, (ctx.model_name, ctx.data.name if ctx.data else "")))
    return f"{study.title}: {on}" if on else study.title


def _summary(study: Study, ctx: Context, tables, claims: dict[str, Claim], stats: RunStats,
             errors: pd.DataFrame, seconds: float) -> str:
    lines = [f"# {heading(study, ctx)}", "",
             f"This run computed {stats.ran} of {stats.total} tasks in {seconds:.0f} s"
             + (f" ({stats.resumed} were resumed from tasks/)." if stats.resumed else "."), ""]
    if len(errors):
        lines += [f"**{len(errors)} of {stats.total} tasks failed**, so the claims are not judged, "
                  "no figure is drawn and only the tasks' own tables are written; the same "
                  "command retries them. Errors (all in "
                  "`errors.parquet`):", "", "| task | error |", "|---|---|"]
        lines += [f"| {r.analysis} {r.key} | {r.error}: {_cell(r.message)} |"
                  for r in errors.itertuples()]
        return "\n".join(lines) + "\n"
    if claims:
        lines += ["## Claims", "", "| claim | holds here | evidence |", "|---|---|---|"]
        for text, c in claims.items():
            lines.append(f"| {text} | {c.verdict} | {_cell(c.evidence)} |")
        lines.append("")
    if study.notes is not None:
        lines.append(study.notes(tables, ctx))
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")  # a pipe table's cell


def _write_config(out: Path, identity: dict, executor: Executor | str, stats: RunStats,
                  seconds: float, model: nn.Module | None) -> None:
    import torch

    from .. import __version__

    ex = executor if isinstance(executor, Executor) else Executor(executor)
    param = next(model.parameters(), None) if model is not None else None
    info = {**identity, "executor": plain(ex),
            "device": {"torch": str(param.device) if param is not None else "cpu",
                       "machine": platform.machine(), "cpus": os.cpu_count(),
                       "torch_threads": torch.get_num_threads()},
            "last_run": {"tasks": stats.total, "resumed": stats.resumed, "ran": stats.ran,
                         "failed": stats.failed, "seconds": round(seconds, 3)},
            "versions": {"resdyn": __version__, "torch": torch.__version__,
                         "python": platform.python_version()}}
    _write_json(out / "config.json", info)


def _write_json(path: Path, value: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(value, indent=2), encoding="utf-8"))
