"""The dynamics study's coupling task: block coupling m_K (Aubry et al. 2025) of one image or
sequence across depth and across tokens, and the line-shape score of its token trajectories.

It loads its model by reference and computes on the run context's device and in its precision
(:func:`resdyn.runs.current`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pandas as pd
from torch import Tensor

from ..capture import capture
from ..dynamics.coupling import (
    KS,
    Block,
    blocks,
    line_shape,
    pair_rows,
    random_level,
    read_rows,
    token_jacobian,
)
from ..operators.base import LinearOperator
from ..operators.linearize import linearized
from ..runs import ModelRef, current
from ..spectra.triplets import SingularTriplets, singular_triplets

#: Random frame pairs averaged per Jacobian for its random level.
DRAWS = 3


def _measured(bl: Sequence[Block]) -> list[Block]:
    """The blocks with something to compare: another block of the same Jacobian shape (across
    depth) or several tokens (across tokens). A ResNet's down-sampling unit, the only one of
    its shape, has neither."""
    shapes = [(b.d_out, b.d_in, b.tokens) for b in bl]
    return [b for b, s in zip(bl, shapes, strict=True) if shapes.count(s) > 1 or b.tokens > 1]


def _jacobians(b: Block, x: Tensor, *, dense_max: int, kmax: int, seed: int,
               ) -> tuple[list[Tensor | LinearOperator], list[SingularTriplets], str]:
    """J_{t, read} for every input token t (a feature map: its one J) and their top triplets:
    dense (d_out VJPs, a full SVD each) up to ``dense_max`` wide, else matrix-free (block
    Krylov on each per-token operator)."""
    run = current()
    f = b.residual(run.dtype)
    if max(b.d_in, b.d_out) <= dense_max:
        rows = read_rows(f, b, x, b.read, dtype=run.dtype)
        js: list[Tensor | LinearOperator] = [rows[t] for t in range(b.tokens)]
        return js, [singular_triplets(j, kmax) for j in rows], "dense"
    # linearized once: the solve, the projections and the random frames replay one pass
    ops: list[Tensor | LinearOperator] = [
        linearized(token_jacobian(f, b, x, t, b.read, dtype=run.dtype)) for t in range(b.tokens)]
    trips = [singular_triplets(op, kmax, method="block", seed=seed) for op in ops]
    return ops, trips, "block"


def coupling_task(model: ModelRef, input_shape: tuple[int, ...], x: Tensor, *, image: int,
                  label: int, dense_max: int, ks: tuple[int, ...] = KS) -> pd.DataFrame:
    """Block coupling of one image (sequence) across depth and tokens.

    For every block (:func:`resdyn.dynamics.coupling.blocks`) the Jacobians J_{t, r} of its
    residual contribution, r the token its head reads (the last of a causal LM, a ViT's class
    token; a ResNet unit's whole feature map is its one token), their top-max(K) triplets and
    random levels (:data:`DRAWS` random frame pairs each).

    Returns:
        rows of three records (column ``record``):
        - "pair": across ("depth": J^l_{rr} against J^{l'}_{rr} for every ordered pair of
          blocks with Jacobians of one shape, l = l' included; "tokens": within a block, J_{tr}
          against J_{rr} and back, t ≠ r), block_1, block_2, l1, l2, token_in_1, token_out_1,
          token_in_2, token_out_2 (J₁ = J^{l1}_{in_1 out_1}, J₂ likewise), d, orientation
          ("ujv", "vju" for square J), K, m (m_K(J₁, J₂)), random (J₁'s random level);
        - "block": block, l, kind, d_in, d_out, tokens, read, method ("dense" or "block"),
          sigma1 (σ₁ of J_{rr}), converged, seconds (Jacobians, triplets, random levels);
        - "line": token, lss (the line-shape score of the token's trajectory through the
          blocks, input of the first to output of the last), steps (sequences only).
    """
    run = current()
    net, unit_list = model.load(), model.units(input_shape)
    acts = capture(net, run.put(x[None]), unit_list)
    base = {"image": image, "label": label}
    chosen = _measured(blocks(unit_list))
    rows: list[dict] = []
    found = []
    for index, b in enumerate(chosen):
        t0 = time.perf_counter()
        kmax = min(max(ks), b.d_in, b.d_out)
        js, trips, method = _jacobians(b, acts.inputs[b.units[0].name][0], dense_max=dense_max,
                                       kmax=kmax, seed=image)
        levels = [random_level(j, t.sigma, ks, draws=DRAWS, seed=image) for j, t in
                  zip(js, trips, strict=True)]
        found.append((b, js, trips, levels))
        rows.append({**base, "record": "block", "block": b.name, "l": index, "kind": b.kind,
                     "d_in": b.d_in, "d_out": b.d_out, "tokens": b.tokens, "read": b.read,
                     "method": method, "sigma1": float(trips[b.read].sigma[0]),
                     "converged": all(t.converged for t in trips),
                     "seconds": time.perf_counter() - t0})

    def pairs(across: str, l1: int, t1: int, l2: int, t2: int) -> None:
        (b1, js1, tr1, lv1), (b2, _, tr2, _) = found[l1], found[l2]
        head = {**base, "record": "pair", "across": across, "block_1": b1.name,
                "block_2": b2.name, "l1": l1, "l2": l2, "token_in_1": t1,
                "token_out_1": b1.read, "token_in_2": t2, "token_out_2": b2.read, "d": b1.d_in}
        rows.extend({**head, **r} for r in pair_rows(js1[t1], tr1[t1], tr2[t2], lv1[t1], ks))

    for l1, (b1, _, tr1, _) in enumerate(found):
        for l2, (b2, _, tr2, _) in enumerate(found):
            if tr1[b1.read].shape == tr2[b2.read].shape and b1.tokens == b2.tokens:
                pairs("depth", l1, b1.read, l2, b2.read)
    for index, (b, _, _, _) in enumerate(found):
        for t in range(b.tokens):
            if t != b.read:
                pairs("tokens", index, t, index, b.read)
                pairs("tokens", index, b.read, index, t)
    seq = [b for b, *_ in found if b.tokens > 1]
    if seq:
        points = [acts.inputs[seq[0].units[0].name][0]] + [acts.outputs[b.units[-1].name][0]
                                                            for b in seq]
        for t in range(seq[0].tokens):
            rows.append({**base, "record": "line", "token": t,
                         "lss": line_shape([p[t] for p in points]), "steps": len(seq)})
    return pd.DataFrame(rows)
