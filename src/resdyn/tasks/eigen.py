"""Eigenvalue metrics of every square block of one image: the task of the stiffness study, which
the stable comparison plans too.

Per block: all eigenvalues (dense) where the block is at most ``dense_max`` wide, otherwise the
extreme real parts (``k`` per side) by the iterative solver :func:`resdyn.spectra.eigenvalues`
picks; the metrics of :func:`resdyn.metrics.eigen_summary`, with the reason where one is
undefined. A causal sequence unit (``UnitParts.causal``, (T, d) -> (T, d)) has a block
lower-triangular Jacobian: all its eigenvalues come from the T diagonal d x d blocks
(:mod:`resdyn.operators.causal`) whenever d ≤ ``dense_max``, however large T·d.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..capture import capture
from ..metrics import EIG_ROUND_OFF_FACTOR, eigen_summary, eigenvalues_with_bounds, share_below
from ..models.units import Unit
from ..operators import causal_eigenvalues, diagonal_blocks, unit_jacobian, upper_blocks_zero
from ..operators.base import LinearOperator
from ..runs import ModelRef, current
from ..spectra import eigenvalues

METRICS = ("share_negative", "stiffness_signed", "stiffness_ratio", "spectral_radius")
#: The same measures of J − I (the residual branch: paper 004's vector field), per block.
BRANCH_METRICS = ("branch_share_negative", "branch_stiffness_signed", "branch_stiffness_ratio")
NEEDS_ALL = {"share_negative": "the share needs every eigenvalue",
             "stiffness_ratio": "min |Re λ| needs every eigenvalue",
             "spectral_radius": "the extremes path computes real parts, not the largest |λ|"}



def stiffness_task(model: ModelRef, input_shape: tuple[int, ...], x: torch.Tensor, label: int,
                   image: int, blocks: tuple[str, ...], dense_max: int, k: int, seed: int,
                   keep_values: bool, error_bounds: bool = False) -> pd.DataFrame:
    """Eigenvalue metrics of every block of one image (down-sampling blocks noted, skipped).

    Rows: image, label, loss, correct, block, stage, position, index (forward order), kind, n,
    method, converged, note, max_real, min_real and the metrics of J (:data:`METRICS`), those
    of J − I (:data:`BRANCH_METRICS`: the eigenvalues λ − 1 of the residual branch; the share
    of Re(λ − 1) < 0 counts, with ``error_bounds``, only values below −their bound, else the
    sign of the computed real part), nan_reason, seconds, and the eigenvalues (values_re,
    values_im) when ``keep_values``.

    With ``error_bounds`` the dense path solves with left and right eigenvectors
    (:func:`~resdyn.metrics.eigenvalues_with_bounds`, a few times the time of eigenvalues
    alone) and the rows also hold each kept eigenvalue's error bound p·ε·‖J‖_F / |yᴴx|
    (``values_err``; 0 for the exact zeros of rows the output ReLU kills; empty on the Arnoldi
    path).

    A unit declared causal (:class:`~resdyn.models.UnitParts` ``causal``) with a (T, d) input
    and output gets every eigenvalue from its T diagonal d x d blocks when d ≤ ``dense_max``
    (method ``"causal-blocks"``; with ``error_bounds`` each block's values get that block's
    bounds), after a check that the blocks above the diagonal are exactly zero.

    Raises:
        ValueError: a unit declared causal whose Jacobian has a nonzero block above the token
            diagonal (an output token depends on a later input token).
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
                                         for m in METRICS + BRANCH_METRICS}), "seconds": 0.0,
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
        tokens = _causal_tokens(u, dense_max)
        if tokens or u.n_in <= dense_max:
            if tokens:
                lam, err, extra = _causal_blocks(op, u.name, tokens, error_bounds)
            elif error_bounds:
                lam, err, extra = _dense_with_bounds(op)
            else:
                res = eigenvalues(op)  # all values: "auto" solves densely (or says why not)
                lam = np.asarray(res.values)
                extra = {"method": res.method, "converged": bool(res.converged),
                         "note": res.message, "seconds": res.seconds}
            m, b = eigen_summary(lam), eigen_summary(lam - 1)
            metrics = {"max_real": float(lam.real.max()), "min_real": float(lam.real.min()),
                       "share_negative": m.share_negative, "stiffness_signed": m.stiffness_signed,
                       "stiffness_ratio": m.stiffness_ratio, "spectral_radius": m.spectral_radius,
                       "branch_share_negative": (share_below(lam, err, shift=1.0)
                                                 if error_bounds else b.share_negative),
                       "branch_stiffness_signed": b.stiffness_signed,
                       "branch_stiffness_ratio": b.stiffness_ratio,
                       "nan_reason": _join(m.nan_reason, _branch(b.nan_reason))}
            kept = lam if keep_values else np.zeros(0, complex)
            err = err if keep_values else np.zeros(0)
        else:
            # "auto" picks the iterative solver (ARPACK on the CPU, block off it)
            top = eigenvalues(op, k=k, which="LR", seed=seed)
            bottom = eigenvalues(op, k=k, which="SR", seed=seed)
            hi, lo = float(top.values.real.max()), float(bottom.values.real.min())
            # the extremes fix min and max Re λ, so the signed index (and why it is NaN) too
            extremes = np.concatenate([top.values, bottom.values])
            ends, branch_ends = eigen_summary(extremes), eigen_summary(extremes - 1)
            where = f"Arnoldi path, n = {u.n_in} > dense_max = {dense_max}"
            signed = {name: w for name, w in _split_reasons(ends.nan_reason).items()
                      if name == "stiffness_signed"}
            branch_signed = {f"branch_{name}": w for name, w
                             in _split_reasons(branch_ends.nan_reason).items()
                             if name == "stiffness_signed"}
            why = {**{name: f"{need} ({where})" for name, need in NEEDS_ALL.items()}, **signed,
                   **{f"branch_{name}": f"{need} ({where})" for name, need in NEEDS_ALL.items()
                      if f"branch_{name}" in BRANCH_METRICS}, **branch_signed}
            metrics = {**_nan_metrics(why), "max_real": hi, "min_real": lo,
                       "stiffness_signed": ends.stiffness_signed,
                       "branch_stiffness_signed": branch_ends.stiffness_signed}
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
    return {"max_real": nan, "min_real": nan, **dict.fromkeys(METRICS + BRANCH_METRICS, nan),
            "nan_reason": "; ".join(f"{m}: {w}" for m, w in why.items())}


def _branch(reasons: str) -> str:
    """The ``nan_reason`` of J − I's measures, named as their columns (``branch_...``)."""
    return "; ".join(f"branch_{m}: {w}" for m, w in _split_reasons(reasons).items())


def _join(*reasons: str) -> str:
    return "; ".join(r for r in reasons if r)


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
    known = op.zero_rows.cpu().numpy() if op.zero_rows is not None else None
    lam, err, zeros = _deflated_with_bounds(full, known)
    order = np.lexsort((-lam.imag, -lam.real))
    return lam[order], err[order], {
        "method": "dense", "converged": True, "seconds": time.perf_counter() - t0,
        "note": f"geev with left and right eigenvectors of a {n - zeros}x{n - zeros} block, "
                f"{zeros} exact zeros; error bounds {EIG_ROUND_OFF_FACTOR:g}·ε·‖J‖_F / |yᴴx|"}


def _deflated_with_bounds(a: np.ndarray, known_zero: np.ndarray | None = None,
                          ) -> tuple[np.ndarray, np.ndarray, int]:
    """(values, bounds, zeros) of the square ``a``: an exact 0 (bound 0) per zero row (found, or
    known in ``known_zero``), :func:`~resdyn.metrics.eigenvalues_with_bounds` of the rest."""
    keep = (a != 0).any(axis=1)
    if known_zero is not None:
        keep &= ~known_zero
    lam, err = eigenvalues_with_bounds(a[np.ix_(keep, keep)])
    zeros = len(a) - int(keep.sum())
    return (np.concatenate([lam, np.zeros(zeros, np.complex128)]),
            np.concatenate([err, np.zeros(zeros)]), zeros)


def _causal_tokens(u: Unit, dense_max: int) -> int:
    """T where the unit is declared causal on (T, d) -> (T, d) with d ≤ ``dense_max`` (its
    eigenvalues come from the diagonal blocks), else 0."""
    causal = u.parts is not None and u.parts.causal
    shape = u.in_shape
    if not causal or shape != u.out_shape or len(shape) != 2 or shape[1] > dense_max:
        return 0
    return shape[0]


def _causal_blocks(op: LinearOperator, name: str, tokens: int, bounds: bool,
                   ) -> tuple[np.ndarray, np.ndarray, dict]:
    """All eigenvalues of a causal unit's J from its diagonal blocks (with each block's error
    bounds when ``bounds``), sorted as :func:`eigenvalues` sorts them.

    Raises:
        ValueError: a block above the token diagonal is not exactly zero.
    """
    t0 = time.perf_counter()
    if not upper_blocks_zero(op, tokens):
        raise ValueError(f"unit {name!r} is declared causal (UnitParts(causal=True)) but is not: "
                         "an output token depends on a later input token (a block of its "
                         "Jacobian above the token diagonal is not zero). Declare it without "
                         "causal=True, or check its attention mask")
    d = op.shape[0] // tokens
    note = f"eigenvalues of the {tokens} diagonal {d}×{d} blocks (block lower-triangular Jacobian)"
    if bounds:
        solved = [_deflated_with_bounds(b) for b in
                  diagonal_blocks(op, tokens).to("cpu", torch.float64).numpy()]
        lam = np.concatenate([v for v, _, _ in solved])
        err = np.concatenate([e for _, e, _ in solved])
        order = np.lexsort((-lam.imag, -lam.real))
        lam, err = lam[order], err[order]
        note += (f"; error bounds {EIG_ROUND_OFF_FACTOR:g}·ε·‖J_tt‖_F / |yᴴx| of each block's "
                 "geev with left and right eigenvectors")
    else:
        lam, err = causal_eigenvalues(op, tokens), np.zeros(0)
    return lam, err, {"method": "causal-blocks", "converged": True, "note": note,
                      "seconds": time.perf_counter() - t0}
