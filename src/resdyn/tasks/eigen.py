"""Eigenvalue metrics of every square block of one image: the task of the stiffness study, which
the stable comparison plans too.

Per block: all eigenvalues (dense) where the block is at most ``dense_max`` wide, otherwise the
extreme real parts (``k`` per side) by the iterative solver :func:`resdyn.spectra.eigenvalues`
picks; the metrics of :func:`resdyn.metrics.eigen_summary`, with the reason where one is
undefined.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..capture import capture
from ..metrics import EIG_ROUND_OFF_FACTOR, eigen_summary, eigenvalues_with_bounds
from ..operators import unit_jacobian
from ..operators.base import LinearOperator
from ..runs import ModelRef, current
from ..spectra import eigenvalues

METRICS = ("share_negative", "stiffness_signed", "stiffness_ratio", "spectral_radius")
NEEDS_ALL = {"share_negative": "the share needs every eigenvalue",
             "stiffness_ratio": "min |Re λ| needs every eigenvalue",
             "spectral_radius": "the extremes path computes real parts, not the largest |λ|"}



def stiffness_task(model: ModelRef, input_shape: tuple[int, ...], x: torch.Tensor, label: int,
                   image: int, blocks: tuple[str, ...], dense_max: int, k: int, seed: int,
                   keep_values: bool, error_bounds: bool = False) -> pd.DataFrame:
    """Eigenvalue metrics of every block of one image (down-sampling blocks noted, skipped).

    Rows: image, label, loss, correct, block, stage, position, index (forward order), kind, n,
    method, converged, note, max_real, min_real and the metrics, nan_reason, seconds, and the
    eigenvalues (values_re, values_im) when ``keep_values``.

    With ``error_bounds`` the dense path solves with left and right eigenvectors
    (:func:`~resdyn.metrics.eigenvalues_with_bounds`, a few times the time of eigenvalues
    alone) and the rows also hold each kept eigenvalue's error bound p·ε·‖J‖_F / |yᴴx|
    (``values_err``; 0 for the exact zeros of rows the output ReLU kills; empty on the Arnoldi
    path).
    """
    run = current()
    net, unit_list = model.load(), model.units(input_shape)
    acts = capture(net, run.put(x[None]), unit_list)
    logits = acts.logits.double()
    loss = float(F.cross_entropy(logits, run.put(torch.tensor([label]))))
    correct = bool(int(logits.argmax(1)) == label)
    rows = []
    for index, u in enumerate(unit_list):
        row = {"image": image, "label": label, "loss": loss, "correct": correct, "block": u.name,
               "stage": u.stage, "position": u.position, "index": index, "kind": u.kind,
               "n": u.n_in}
        if u.in_shape != u.out_shape:
            rows.append({**row, "method": "skipped", "converged": False, "note":
                         f"not square ({'x'.join(map(str, u.in_shape))} -> "
                         f"{'x'.join(map(str, u.out_shape))}): no eigenvalues",
                         **_nan_metrics({m: "the block is not square, it has no eigenvalues"
                                         for m in METRICS}), "seconds": 0.0,
                         "values_re": [], "values_im": [],
                         **({"values_err": []} if error_bounds else {})})
            continue
        if u.name not in blocks:
            continue
        op = unit_jacobian(u, acts.inputs[u.name][0], dtype=run.dtype)
        # rows an output ReLU kills: each an exact eigenvalue 0 (none without a ReLU after the
        # sum, e.g. a transformer's x + f(x): there the whole block is solved)
        row["known_zero_rows"] = int(op.zero_rows.sum()) if op.zero_rows is not None else 0
        err = np.zeros(0)
        if u.n_in <= dense_max:
            if error_bounds:
                lam, err, extra = _dense_with_bounds(op)
            else:
                res = eigenvalues(op)  # all values: "auto" solves densely (or says why not)
                lam = np.asarray(res.values)
                extra = {"method": res.method, "converged": bool(res.converged),
                         "note": res.message, "seconds": res.seconds}
            m = eigen_summary(lam)
            metrics = {"max_real": float(lam.real.max()), "min_real": float(lam.real.min()),
                       "share_negative": m.share_negative, "stiffness_signed": m.stiffness_signed,
                       "stiffness_ratio": m.stiffness_ratio, "spectral_radius": m.spectral_radius,
                       "nan_reason": m.nan_reason}
            kept = lam if keep_values else np.zeros(0, complex)
            err = err if keep_values else np.zeros(0)
        else:
            # "auto" picks the iterative solver (ARPACK on the CPU, block off it)
            top = eigenvalues(op, k=k, which="LR", seed=seed)
            bottom = eigenvalues(op, k=k, which="SR", seed=seed)
            hi, lo = float(top.values.real.max()), float(bottom.values.real.min())
            # the extremes fix min and max Re λ, so the signed index (and why it is NaN) too
            ends = eigen_summary(np.concatenate([top.values, bottom.values]))
            where = f"Arnoldi path, n = {u.n_in} > dense_max = {dense_max}"
            why = {**{name: f"{need} ({where})" for name, need in NEEDS_ALL.items()},
                   **{name: w for name, w in _split_reasons(ends.nan_reason).items()
                      if name == "stiffness_signed"}}
            metrics = {**_nan_metrics(why), "max_real": hi, "min_real": lo,
                       "stiffness_signed": ends.stiffness_signed}
            extra = {"method": top.method, "converged": bool(top.converged and bottom.converged),
                     "note": f"largest real parts: {top.message}; smallest: {bottom.message}",
                     "seconds": top.seconds + bottom.seconds}
            kept = np.concatenate([top.values, bottom.values]) if keep_values else \
                np.zeros(0, complex)
        rows.append({**row, **extra, **metrics, "values_re": kept.real.tolist(),
                     "values_im": kept.imag.tolist(),
                     **({"values_err": err.tolist()} if error_bounds else {})})
    return pd.DataFrame(rows)


def _nan_metrics(why: dict[str, str]) -> dict:
    """Every metric NaN; ``nan_reason`` says why for each metric named in ``why``."""
    nan = float("nan")
    return {"max_real": nan, "min_real": nan, "share_negative": nan, "stiffness_signed": nan,
            "stiffness_ratio": nan, "spectral_radius": nan,
            "nan_reason": "; ".join(f"{m}: {w}" for m, w in why.items())}


def _split_reasons(text: str) -> dict[str, str]:
    """{metric: why} of a ``nan_reason`` ("metric: why; metric: why")."""
    return dict(part.split(": ", 1) for part in text.split("; ") if part)


def _dense_with_bounds(op: LinearOperator) -> tuple[np.ndarray, np.ndarray, dict]:
    """All eigenvalues of J with their error bounds, sorted as :func:`eigenvalues` sorts them
    (descending real part, then descending imaginary part).

    A zero row of J (known killed by the output ReLU, or found zero) makes J block-triangular
    after a permutation: those rows give exact zeros (bound 0) and the others are the
    eigenvalues of J without those rows and columns, as in the dense solver.
    """
    t0 = time.perf_counter()
    full = op.dense().to("cpu", torch.float64).numpy()
    n = full.shape[0]
    keep = (full != 0).any(axis=1)
    if op.zero_rows is not None:
        keep &= ~op.zero_rows.cpu().numpy()
    lam, err = eigenvalues_with_bounds(full[np.ix_(keep, keep)])
    zeros = n - int(keep.sum())
    lam = np.concatenate([lam, np.zeros(zeros, np.complex128)])
    err = np.concatenate([err, np.zeros(zeros)])
    order = np.lexsort((-lam.imag, -lam.real))
    return lam[order], err[order], {
        "method": "dense", "converged": True, "seconds": time.perf_counter() - t0,
        "note": f"geev with left and right eigenvectors of a {n - zeros}x{n - zeros} block, "
                f"{zeros} exact zeros; error bounds {EIG_ROUND_OFF_FACTOR:g}·ε·‖J‖_F / |yᴴx|"}
