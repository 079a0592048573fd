"""Singular spectra of unit and stage Jacobians, one row per (image, target): the tasks of the
spectra study, which the stability study and the stable comparison plan too.

:func:`spectrum_task` loads the model by reference, captures the image's activation entering the
target and returns one row of :func:`spectrum_row`, on the run context's device and in its
precision (:func:`resdyn.runs.current`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from torch import Tensor

from .._torch import precision_dtype
from ..capture import capture
from ..data import Dataset
from ..metrics import density_summary, singular_summary
from ..models.units import Unit, stage_name, stages
from ..operators.jacobian import JacobianOperator, stage_jacobian, unit_jacobian
from ..runs import ModelRef, Task, current
from ..spectra.api import singular_values


@dataclass(frozen=True)
class Target:
    """The Jacobian of one unit or stage with what names it in a table."""

    op: JacobianOperator
    name: str
    kind: str  # "regular", "downsampling" or "stage"
    stage: int


def target_jacobian(target: Unit | Sequence[Unit], x: Tensor, precision: str = "float64",
                    ) -> Target:
    """The :class:`Target` of a unit or of a stage (the composition of its units).

    Args:
        target: a unit, or the units of a stage in forward order.
        x: (C, H, W) input of the unit (of the stage's first unit).
        precision: of the products ("float64" or "float32").
    """
    dtype = precision_dtype(precision)
    if isinstance(target, Unit):
        return Target(unit_jacobian(target, x, dtype=dtype), target.name, target.kind,
                      target.stage)
    return Target(stage_jacobian(target, x, dtype=dtype), stage_name(target), "stage",
                  target[0].stage)


def spectrum_row(target: Unit | Sequence[Unit], x: Tensor, *, method: str = "auto",
                 k: int | None = None, seed: int = 0, precision: str = "float64") -> dict:
    """Singular values and bins of one unit's (or one stage's) Jacobian at one input.

    Args:
        target: a unit, or the units of a stage in forward order.
        x: (C, H, W) input of the unit (of the stage's first unit).
        method, k: as in :func:`resdyn.spectra.singular_values`.
        seed: for the randomised methods.
        precision: of the products ("float64" or "float32").

    Returns:
        dict with name, stage, kind ("regular", "downsampling" or "stage"), n_in, n_out, method,
        reason, values (list of float, descending; empty for slq), n_above, n_plateau, n_below,
        n_zero and their shares, sigma_max, condition, rank, resolution (σ below which a value
        is not resolved from zero; NaN for the iterative methods), n_unresolved (non-zero values
        under it), precision, converged, message, matvecs, structural_zeros, seconds (operator
        and solve), solve_seconds.
    """
    t0 = time.perf_counter()
    t = target_jacobian(target, x, precision)
    res = singular_values(t.op, k=k, method=method, seed=seed)
    summary = density_summary(res.density) if res.density is not None else singular_summary(
        res.values)
    return {
        "name": t.name, "stage": t.stage, "kind": t.kind, "n_in": t.op.shape[1],
        "n_out": t.op.shape[0],
        "method": res.method, "reason": res.reason,
        "values": [float(v) for v in np.asarray(res.values, dtype=np.float64)],
        "n_above": summary.n_above, "n_plateau": summary.n_plateau,
        "n_below": summary.n_below, "n_zero": summary.n_zero,
        "share_above": summary.share_above, "share_plateau": summary.share_plateau,
        "share_below": summary.share_below, "share_zero": summary.share_zero,
        "sigma_max": summary.sigma_max, "condition": summary.condition, "rank": summary.rank,
        "resolution": res.resolution if res.resolution is not None else float("nan"),
        "n_unresolved": res.unresolved, "precision": res.precision,
        "converged": res.converged, "message": res.message, "matvecs": res.matvecs,
        "structural_zeros": res.structural_zeros,
        "seconds": time.perf_counter() - t0, "solve_seconds": res.seconds,
    }


def find_target(unit_list: Sequence[Unit], name: str) -> Unit | list[Unit]:
    """The unit, or the units of the stage, called ``name``."""
    for u in unit_list:
        if u.name == name:
            return u
    for group in stages(unit_list):
        if stage_name(group) == name:
            return group
    raise ValueError(f"unknown unit or stage {name!r}; valid: "
                     + ", ".join(target_names(unit_list, None, True)))


def target_names(unit_list: Sequence[Unit], names: Sequence[str] | None, with_stages: bool,
                 ) -> list[str]:
    """The analysed names in forward order (units, then stages): all, or the chosen ones.

    Raises:
        ValueError: a name that is neither a unit nor (with ``with_stages``) a stage.
    """
    valid = [u.name for u in unit_list] + ([stage_name(g) for g in stages(unit_list)]
                                           if with_stages else [])
    if names is None:
        return valid
    unknown = sorted(set(names) - set(valid))
    if unknown:
        raise ValueError(f"unknown unit name(s) {unknown}; valid: {', '.join(valid)}")
    return [n for n in valid if n in set(names)]


def target_shapes(unit_list: Sequence[Unit], names: Sequence[str]) -> list[tuple[int, int]]:
    """(n_out, n_in) of each named unit or stage: the shape of its Jacobian."""
    shapes = []
    for name in names:
        t = find_target(unit_list, name)
        first, last = (t, t) if isinstance(t, Unit) else (t[0], t[-1])
        shapes.append((last.n_out, first.n_in))
    return shapes


def spectrum_task(model: ModelRef, input_shape: tuple[int, ...], x: Tensor, target: str, *,
                  model_name: str, image: int, label: int, method: str = "auto",
                  k: int | None = None) -> pd.DataFrame:
    """One (image, unit or stage) of a study: :func:`spectrum_row` with model, image and label,
    on the run context's device and in its precision (:func:`resdyn.runs.current`).

    Args:
        model: the model by reference; input_shape: its (C, H, W).
        x: (C, H, W) the image (normalised); its activation entering ``target`` is captured here.
        target: unit or stage name.
        model_name, image, label: written to the row; ``image`` also seeds randomised methods.
    """
    run = current()
    unit_list = model.units(input_shape)
    chosen = find_target(unit_list, target)
    first = chosen if isinstance(chosen, Unit) else chosen[0]
    x_in = capture(model.load(), run.put(x[None]), [first]).inputs[first.name][0]
    row = spectrum_row(chosen, x_in, method=method, k=k, seed=image, precision=run.precision)
    return pd.DataFrame([{"model": model_name, "image": image, "label": label, **row}])


def spectrum_tasks(ref: ModelRef, data: Dataset, model_name: str, images: Sequence[int],
                   names: Sequence[str], method: str, k: int | None, *, key: str = "",
                   after: tuple[str, ...] = (), tags: dict | None = None) -> list[Task]:
    """The tasks of a spectra table: one per (image, name), keyed ``<key>img<i>-<name>``.

    Each carries its image as a copy (a view would pickle the whole data set with it).
    """
    return [Task("spectra", f"{key}img{i}-{name}", spectrum_task,
                 dict(model=ref, input_shape=data.input_shape, x=data.x[i].clone(), target=name,
                      model_name=model_name, image=i, label=int(data.y[i]), method=method, k=k),
                 after, tags or {})
            for i in images for name in names]
