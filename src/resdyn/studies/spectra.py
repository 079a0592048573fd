"""The spectra study: singular values of every unit (and stage) Jacobian, per image, as a table.

The work for one (image, unit or stage) is :func:`spectrum_row`, a plain function of its inputs
(units, the input tensor, method, k) that returns a plain dict, so an executor (Dask, a cluster)
can run it unchanged. :func:`spectra_table` loops over images and targets; :func:`write_spectra`
appends rows to ``DIR/spectra.parquet`` atomically.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from torch import Tensor, nn

from ..capture import capture
from ..metrics import density_summary, singular_summary
from ..models.units import Unit
from ..models.units import stages as group_stages
from ..models.units import stage_name
from ..operators.jacobian import stage_jacobian, unit_jacobian
from ..runs import write_parquet
from ..spectra.api import singular_values

Progress = Callable[[int, int, str], None]
SPECTRA_FILE = "spectra.parquet"


def spectrum_row(target: Unit | Sequence[Unit], x: Tensor, *, method: str = "auto",
                 k: int | None = None, seed: int = 0) -> dict:
    """Singular values and bins of one unit's (or one stage's) Jacobian at one input.

    Args:
        target: a unit, or the units of a stage in forward order.
        x: (C, H, W) input of the unit (of the stage's first unit).
        method, k: as in :func:`resdyn.spectra.singular_values`.
        seed: for the randomised methods.

    Returns:
        dict with name, stage, kind ("regular", "downsampling" or "stage"), n_in, n_out, method,
        reason, values (list of float, descending; empty for slq), n_above, n_plateau, n_below,
        n_zero and their shares, sigma_max, condition, rank, converged, message, matvecs,
        structural_zeros, seconds (operator and solve), solve_seconds.
    """
    t0 = time.perf_counter()
    if isinstance(target, Unit):
        op, name, kind, stage = unit_jacobian(target, x), target.name, target.kind, target.stage
    else:
        op = stage_jacobian(target, x)
        name, kind, stage = stage_name(target), "stage", target[0].stage
    res = singular_values(op, k=k, method=method, seed=seed)
    summary = density_summary(res.density) if res.density is not None else singular_summary(
        res.values)
    return {
        "name": name, "stage": stage, "kind": kind, "n_in": op.shape[1], "n_out": op.shape[0],
        "method": res.method, "reason": res.reason,
        "values": [float(v) for v in np.asarray(res.values, dtype=np.float64)],
        "n_above": summary.n_above, "n_plateau": summary.n_plateau,
        "n_below": summary.n_below, "n_zero": summary.n_zero,
        "share_above": summary.share_above, "share_plateau": summary.share_plateau,
        "share_below": summary.share_below, "share_zero": summary.share_zero,
        "sigma_max": summary.sigma_max, "condition": summary.condition, "rank": summary.rank,
        "converged": res.converged, "message": res.message, "matvecs": res.matvecs,
        "structural_zeros": res.structural_zeros,
        "seconds": time.perf_counter() - t0, "solve_seconds": res.seconds,
    }


def spectrum_task(target: Unit | Sequence[Unit], x: Tensor, *, model_name: str = "",
                  image: int = 0, label: int = -1, method: str = "auto", k: int | None = None,
                  as_stage: bool | None = None, seed: int | None = None) -> pd.DataFrame:
    """:func:`spectrum_row` as a one-row table with model, image and label (an executor task).

    Args:
        target: a unit, or a list of units; a list of one unit is that unit unless ``as_stage``
            (a one-unit stage has the same Jacobian), a longer list is a stage.
        x, method, k: as in :func:`spectrum_row`.
        model_name, image, label: written to the row.
        as_stage: force the row kind ("stage" or the unit's kind).
        seed: for randomised methods (default: the image index).
    """
    if not isinstance(target, Unit):
        target = list(target)
        stage = as_stage if as_stage is not None else len(target) > 1
        if not stage:
            if len(target) != 1:
                raise ValueError(f"as_stage=False needs exactly one unit; got {len(target)}")
            target = target[0]
    row = spectrum_row(target, x, method=method, k=k, seed=image if seed is None else seed)
    return pd.DataFrame([{"model": model_name, "image": image, "label": label, **row}])


def _targets(unit_list: Sequence[Unit], names: str | Sequence[str], with_stages: bool,
             ) -> list[Unit | list[Unit]]:
    groups = group_stages(unit_list)
    if names == "all":
        chosen = set(u.name for u in unit_list) | {stage_name(g) for g in groups}
    else:
        chosen = set([names] if isinstance(names, str) else names)
        valid = [u.name for u in unit_list] + ([stage_name(g) for g in groups] if with_stages
                                               else [])
        unknown = sorted(chosen - set(valid))
        if unknown:
            raise ValueError(f"unknown unit name(s) {unknown}; valid: {', '.join(valid)} "
                             "(or names='all')")
    targets: list[Unit | list[Unit]] = [u for u in unit_list if u.name in chosen]
    if with_stages:
        targets += [g for g in groups if names == "all" or stage_name(g) in chosen]
    return targets


def spectra_table(model: nn.Module, x: Tensor, labels: Sequence[int] | Tensor | None,
                  unit_list: Sequence[Unit], *, names: str | Sequence[str] = "all",
                  stages: bool = False, method: str = "auto", k: int | None = None,
                  model_name: str = "", progress: Progress | None = None) -> pd.DataFrame:
    """Singular spectra of units (and stages) for a batch of images: one row per (image, target).

    Args:
        model: the network (not modified).
        x: (B, C, H, W) images.
        labels: B target labels (or None).
        unit_list: from :func:`resdyn.units`.
        names: "all" or unit names (and stage names such as "stages.0" when ``stages``).
        stages: also analyse each stage (the composition of its units).
        method, k: as in :func:`resdyn.spectra.singular_values`.
        model_name: written to the ``model`` column.
        progress: optional callable(done, total, label) called after each row.

    Returns:
        DataFrame with model, image, label and the columns of :func:`spectrum_row`.

    Raises:
        ValueError: unknown names, or labels not matching the batch.

    Example:
        >>> import torch
        >>> from resdyn import load_model, units
        >>> m = load_model("cifar-resnet20", in_channels=1); us = units(m, (1, 8, 8))
        >>> df = spectra_table(m, torch.randn(1, 1, 8, 8), [3], us, names=["stages.2.1"])
        >>> df.loc[0, "name"], df.loc[0, "kind"], int(df.loc[0, "n_in"])
        ('stages.2.1', 'regular', 256)
    """
    if x.dim() != 4:
        raise ValueError(f"x must be a batch (B, C, H, W); got shape {tuple(x.shape)}")
    if labels is not None and len(labels) != x.shape[0]:
        raise ValueError(f"{len(labels)} labels for {x.shape[0]} images")
    targets = _targets(unit_list, names, stages)
    acts = capture(model, x, unit_list)
    total, rows = x.shape[0] * len(targets), []
    for i in range(x.shape[0]):
        label = int(labels[i]) if labels is not None else -1
        for t in targets:
            first = t if isinstance(t, Unit) else t[0]
            row = spectrum_row(t, acts.inputs[first.name][i], method=method, k=k, seed=i)
            rows.append({"model": model_name, "image": i, "label": label, **row})
            if progress is not None:
                progress(len(rows), total, f"image {i} {row['name']}")
    return pd.DataFrame(rows)


def write_spectra(rows: pd.DataFrame, directory: str | os.PathLike) -> Path:
    """Append rows to ``directory/spectra.parquet`` safely; returns the file's path.

    The file is rewritten whole by :func:`resdyn.runs.write_parquet` (temporary file and atomic
    rename), under an exclusive lock (``spectra.parquet.lock``), so a crash never leaves a torn
    file and concurrent writers on one machine do not lose rows.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SPECTRA_FILE
    with open(directory / (SPECTRA_FILE + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        table = rows
        if path.exists():
            table = pd.concat([pd.read_parquet(path), rows], ignore_index=True)
        write_parquet(table, path)
    return path


def read_spectra(directory: str | os.PathLike) -> pd.DataFrame:
    """The rows written by :func:`write_spectra` (values as lists of float)."""
    df = pd.read_parquet(Path(directory) / SPECTRA_FILE)
    df["values"] = [list(map(float, v)) for v in df["values"]]
    return df


__all__ = ["read_spectra", "spectra_table", "spectrum_row", "spectrum_task", "write_spectra"]
