"""The dynamics study's tasks: Lyapunov exponents across depth and residual alignment for one
image, and the top singular value of every residual branch of one network of a depth family.

Every task loads its model by reference and computes on the run context's device and in its
precision (:func:`resdyn.runs.current`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..capture import capture
from ..dynamics import (
    exact_exponents,
    overlap_matrix,
    qr_exponents,
    random_overlap,
    residual_triplets,
    self_alignment,
    straightness,
)
from ..models.units import Unit, stage_name, stages
from ..operators.jacobian import residual_jacobian
from ..runs import ModelRef, current
from ..spectra.api import singular_values


def consecutive(unit_list: Sequence[Unit], inputs: dict[str, Tensor],
                outputs: dict[str, Tensor]) -> list[Unit]:
    """The longest run of units each of whose output is the next one's input (the first such
    run on a tie): the exponents compose units one after another, and a layer between two
    units (a pooling, a norm, a ConvNeXt's or Swin's down-sampling between stages) breaks the
    chain there."""
    runs: list[list[Unit]] = [[unit_list[0]]] if unit_list else []
    for a, b in zip(unit_list, unit_list[1:], strict=False):
        out, nxt = outputs[a.name], inputs[b.name]
        if out.shape == nxt.shape and torch.allclose(out, nxt, rtol=1e-5, atol=1e-6):
            runs[-1].append(b)
        else:
            runs.append([b])
    return max(runs, key=len, default=[])


def _residual_units(unit_list: Sequence[Unit]) -> list[Unit]:
    """The units whose residual branch is known (J_R is defined)."""
    return [u for u in unit_list if u.parts is not None]


def lyapunov_task(model: ModelRef, input_shape: tuple[int, ...], x: Tensor, *, image: int,
                  label: int, k: int, dense_max: int) -> pd.DataFrame:
    """Finite-time Lyapunov exponents of one image at every depth, exactly and by QR, along
    the longest run of consecutive units (:func:`consecutive`: all of them in a ResNet).

    Returns:
        one row per (path, depth, i): image, label, path ("exact" or "qr"), method ("dense",
        "arpack" or "qr"), depth l, unit, stage, width, i (1-based), exponent λ_i(l) (−inf for a
        σ_i or R_ii at or below that depth's resolution), n_zero (how many of the k are −inf at
        that depth), resolution (that depth's ρ_l: see :mod:`resdyn.dynamics.lyapunov`), seconds
        (of that depth).
    """
    run = current()
    net, unit_list = model.load(), model.units(input_shape)
    acts = capture(net, run.put(x[None]), unit_list)
    unit_list = consecutive(unit_list, acts.inputs, acts.outputs)
    x0 = acts.inputs[unit_list[0].name][0]
    stage_of = {u.name: u.stage for u in unit_list}
    rows = []
    for path, result in (
            ("exact", exact_exponents(unit_list, x0, k, dtype=run.dtype, dense_max=dense_max,
                                      seed=image)),
            ("qr", qr_exponents(unit_list, x0, k, dtype=run.dtype, seed=image))):
        for e in result:
            for i, value in enumerate(np.asarray(e.values, dtype=float), start=1):
                rows.append({"image": image, "label": label, "path": path, "method": e.method,
                             "depth": e.depth, "unit": e.unit, "stage": stage_of[e.unit],
                             "width": e.width, "i": i, "exponent": float(value),
                             "n_zero": e.n_zero, "resolution": e.resolution,
                             "seconds": e.seconds})
    return pd.DataFrame(rows)


def alignment_task(model: ModelRef, input_shape: tuple[int, ...], x: Tensor, *, image: int,
                   label: int, k: int, dense_max: int) -> pd.DataFrame:
    """Residual alignment of one image: per unit, per pair of units, per stage.

    Returns:
        rows of three records (column ``record``):
        - "unit": unit, stage, position, kind, n_in, n_out, sigma (top k σ of J_R), sigma1,
          align (|⟨u_i, v_i⟩|, empty for a non-square unit), align1, rank (numerical rank of J_R:
          its σ above the SVD's resolution, read off the full SVD that gave the triplets; NaN
          where the unit is wider than ``dense_max`` and only the top k are known), resolution
          (max(n_in, n_out)·ε·σ₁, LAPACK's tolerance);
        - "pair": a, b (unit names), a_index, b_index, left, right (overlaps of the top-k left
          and right singular subspaces), random (k / n, the overlap of random subspaces), for
          every two different units of the same width;
        - "stage": stage name, straightness (‖x_L − x_0‖ / path length), step_mean, step_cv,
          steps, of the image's trajectory through the stage's units of one shape.
    """
    run = current()
    net, unit_list = model.load(), model.units(input_shape)
    acts = capture(net, run.put(x[None]), unit_list)
    base = {"image": image, "label": label}
    rows, triplets = [], []
    chosen = _residual_units(unit_list)
    for u in chosen:
        x_u = acts.inputs[u.name][0]
        t = residual_triplets(u, x_u, k, dtype=run.dtype, dense_max=dense_max, seed=image)
        triplets.append(t)
        align = self_alignment(t) if u.in_shape == u.out_shape else np.zeros(0)
        # RA3's rank from the triplets' own full SVD (its resolution max(n)·ε·σ₁), not a second
        # build of J_R; NaN where the triplets came from svds (a unit wider than dense_max)
        rank = float("nan") if t.rank is None else float(t.rank)
        resolution = float("nan") if t.resolution is None else float(t.resolution)
        rows.append({**base, "record": "unit", "unit": u.name, "stage": u.stage,
                     "position": u.position, "kind": u.kind, "n_in": u.n_in, "n_out": u.n_out,
                     "sigma": [float(s) for s in t.sigma], "sigma1": float(t.sigma[0]),
                     "align": [float(a) for a in align],
                     "align1": float(align[0]) if len(align) else float("nan"),
                     "rank": rank, "resolution": resolution})
    left, right = overlap_matrix(triplets, side="left"), overlap_matrix(triplets, side="right")
    for a in range(len(chosen)):
        for b in range(len(chosen)):
            if a != b and np.isfinite(left[a, b]):
                n = chosen[a].n_out
                rows.append({**base, "record": "pair", "a": chosen[a].name, "b": chosen[b].name,
                             "a_index": a, "b_index": b, "stage": chosen[a].stage,
                             "same_stage": chosen[a].stage == chosen[b].stage,
                             "left": float(left[a, b]), "right": float(right[a, b]),
                             "random": random_overlap(n, min(k, n))})
    for group in stages(unit_list):
        shape = tuple(acts.outputs[group[-1].name].shape)
        points = [acts.inputs[group[0].name]] if tuple(acts.inputs[group[0].name].shape) == shape \
            else []
        points += [acts.outputs[u.name] for u in group if tuple(acts.outputs[u.name].shape) == shape]
        if len(points) >= 3:
            rows.append({**base, "record": "stage", "stage": group[0].stage,
                         "section": stage_name(group),
                         **straightness([p.double() for p in points])})
    return pd.DataFrame(rows)


def depth_task(model: ModelRef, input_shape: tuple[int, ...], x: Tensor, *, images: list[int],
               model_name: str) -> pd.DataFrame:
    """σ₁(J_R) of every residual unit of one network of a depth family, per image.

    Args:
        x: (B, C, H, W) the images; images: their indices (B).

    Returns:
        one row per (image, unit): model, units (the network's number of residual units, its
        depth L), image, unit, stage, kind, sigma1, method.
    """
    run = current()
    net, unit_list = model.load(), model.units(input_shape)
    acts = capture(net, run.put(x), unit_list)
    chosen = _residual_units(unit_list)
    rows = []
    for j, image in enumerate(images):
        for u in chosen:
            res = singular_values(residual_jacobian(u, acts.inputs[u.name][j], dtype=run.dtype),
                                  k=1, seed=image)
            rows.append({"model": model_name, "units": len(unit_list), "image": image,
                         "unit": u.name, "stage": u.stage, "kind": u.kind,
                         "sigma1": float(res.values[0]), "method": res.method})
    return pd.DataFrame(rows)
