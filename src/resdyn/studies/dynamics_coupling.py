"""The dynamics study's block coupling (Aubry, Meng, Sugolov & Papyan, ICLR 2025): its tables,
figure, claim and notes, registered by :mod:`.dynamics`; the task is
:func:`resdyn.tasks.coupling.coupling_task`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..plots import coupling as figs
from .base import Claim, Context, Figure, Table, Tables
from .intervals import Test, bootstrap, evidence_unit

#: The claim holds when the median m_K across depth is at most this share of the median random
#: level (fixed before any run).
FAR_BELOW = 0.5

_INTEGER = ("image", "label", "l", "l1", "l2", "token_in_1", "token_out_1", "token_in_2",
            "token_out_2", "d", "K", "d_in", "d_out", "tokens", "read", "token", "steps")
_COLUMNS = {
    "pair": ["image", "label", "across", "block_1", "block_2", "l1", "l2", "token_in_1",
             "token_out_1", "token_in_2", "token_out_2", "d", "orientation", "K", "m", "random"],
    "block": ["image", "label", "block", "l", "kind", "d_in", "d_out", "tokens", "read",
              "method", "sigma1", "converged", "seconds"],
    "line": ["image", "label", "token", "lss", "steps"],
}


def records(t: pd.DataFrame, record: str, ctx: Context) -> pd.DataFrame:
    """The coupling task's rows of one record kind with their own columns (integers as such),
    the model's name first."""
    columns = _COLUMNS[record]
    if t.empty or "record" not in t:
        return pd.DataFrame(columns=["model", *columns])
    part = t[t["record"] == record]
    part = part[[c for c in columns if c in part] + [c for c in ("device",) if c in part]]
    part = part.astype({c: int for c in _INTEGER if c in part})
    part.insert(0, "model", ctx.model_name)
    return part.sort_values([c for c in ("image", "across", "l1", "l2", "token_in_1",
                                         "token_in_2", "orientation", "K", "l", "token")
                             if c in part], ignore_index=True)


def depth_pairs(pairs: pd.DataFrame, every_k: bool = False) -> pd.DataFrame:
    """Rows of two different blocks across depth, "ujv", the smallest K (``every_k``: all)."""
    if pairs.empty:
        return pairs
    d = pairs[(pairs["across"] == "depth") & (pairs["l1"] != pairs["l2"])
              & (pairs["orientation"] == "ujv")]
    return d if every_k or d.empty else d[d["K"] == d["K"].min()]


def coupled_claim(tables: Tables, ctx: Context | None = None) -> Claim:
    pairs = tables["coupling"]
    d = depth_pairs(pairs)
    if d.empty:
        return Claim(None, "no two blocks with Jacobians of one shape were measured (needs "
                     "--coupling-images ≥ 1 and two blocks of one width)")
    k, m, level = int(d["K"].iloc[0]), float(d["m"].median()), float(d["random"].median())
    by_k = depth_pairs(pairs, every_k=True).groupby("K")[["m", "random"]].median()
    per_image = d.groupby("image")[["m", "random"]].median()
    ratios = (per_image["m"] / per_image["random"]).to_numpy()
    iv, = bootstrap(ratios, lambda s: np.median(s, axis=1), unit=evidence_unit(ctx))
    return Claim.judged(
                 f"median m_{k} across depth (every ordered pair of different blocks of one "
                 f"width, read token, U-J-V, {d['image'].nunique()} image(s), {len(d)} pairs) "
                 f"{m:.3f} against the random level {level:.3f} (ratio {m / level:.2f}); per K: "
                 + ", ".join(f"K={int(kk)}: {r.m:.3f} / {r.random:.3f}"
                             for kk, r in by_k.iterrows())
                 + f" (holds if ≤ {FAR_BELOW:g} × the random level)",
                 [Test(f"median over images of m_{k} / random level across depth", iv, FAR_BELOW,
                       "below")])


def notes(tables: Tables, ctx: Context) -> str:
    pairs, bl, line = tables["coupling"], tables["coupling_blocks"], tables["line_shape"]
    if bl.empty:
        return ""
    tok = pairs[(pairs["across"] == "tokens") & (pairs["orientation"] == "ujv")]
    tok = tok[tok["K"] == tok["K"].min()] if len(tok) else tok
    lines = ["## Block coupling", "",
             f"Blocks measured: {bl['block'].nunique()} ({', '.join(sorted(set(bl['kind'])))}; "
             f"d = {int(bl['d_in'].min())}–{int(bl['d_in'].max())}; triplets "
             f"{', '.join(sorted(set(bl['method'])))}); seconds (all images) "
             f"{bl['seconds'].sum():.1f}.", ""]
    if len(tok):
        lines += [f"Across tokens (m_{int(tok['K'].iloc[0])}, U-J-V, median over blocks, tokens "
                  f"and images): {tok['m'].median():.3f} against the random level "
                  f"{tok['random'].median():.3f}.", ""]
    if len(line):
        lines += [f"Line-shape score of the token trajectories (path length / chord, 1 = "
                  f"straight): median {line['lss'].median():.3f}, from {line['lss'].min():.3f} "
                  f"to {line['lss'].max():.3f} over tokens and images.", ""]
    return "\n".join(lines)


TABLES = {
    "coupling": Table(analysis="coupling", order=lambda t, ctx: records(t, "pair", ctx)),
    "coupling_blocks": Table(analysis="coupling", order=lambda t, ctx: records(t, "block", ctx)),
    "line_shape": Table(analysis="coupling", order=lambda t, ctx: records(t, "line", ctx)),
}

FIGURES = {
    "coupling": Figure(lambda t, ctx, p: figs.coupling(t["coupling"], t["coupling_blocks"], p,
                                                       ctx.model_name),
                       "block coupling m_K (Aubry et al. 2025, smallest K, U-J-V, median over "
                       "images) between every pair of blocks (0: coupled; blank: shapes differ) "
                       "and, for token sequences, of each token's Jacobian J_tr to the read "
                       "token's J_rr; colours end at the random level"),
}

CLAIMS = {
    "blocks are coupled: the median m_K across depth is far below the random level":
        coupled_claim,
}
