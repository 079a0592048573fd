"""The dynamics study's coupling figure: m_K between every pair of blocks, and across tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .common import common_prefix, plt, save


def _grid(ax, fig, m: np.ndarray, vmax: float, label: str) -> None:
    im = ax.imshow(m, vmin=0, vmax=vmax, cmap="magma_r", aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.046, label=label)
    if m.shape[0] <= 12 and m.shape[1] <= 12:
        for (i, j), v in np.ndenumerate(m):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v > 0.6 * vmax else "black")


def coupling(pairs: pd.DataFrame, blocks: pd.DataFrame, path: Path, model: str) -> Path:
    """Left: m_K(J^l, J^{l'}) of the read token for every ordered pair of blocks (rows l: J₁,
    columns l': whose singular vectors), the smallest K, "ujv", median over images (blank where
    the Jacobians' shapes differ); right, for token sequences: m_K(J^l_{t r}, J^l_{r r}) per block
    and input token t. Colours run from 0 (coupled) to the random level."""
    if pairs.empty or "K" not in pairs:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no block coupling measured (--coupling-images 0, or no two blocks "
                "of one width)", ha="center", va="center", fontsize=8, wrap=True)
        return save(fig, path)
    k = int(pairs["K"].min())
    ujv = pairs[(pairs["K"] == k) & (pairs["orientation"] == "ujv")]
    depth, tokens = ujv[ujv["across"] == "depth"], ujv[ujv["across"] == "tokens"]
    tokens = tokens[tokens["token_out_2"] == tokens["token_in_2"]]  # J₂ = J_rr: t against r
    panels = 2 if len(tokens) else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.6 * panels, 4.6), squeeze=False)
    names = list(dict.fromkeys(blocks.sort_values("l")["block"]))
    level = float(depth["random"].median()) if len(depth) else float(ujv["random"].median())
    vmax = max(level, float(ujv["m"].max()) if len(ujv) else 0.0, 1e-12)
    m = np.full((len(names), len(names)), np.nan)
    for (l1, l2), v in depth.groupby(["l1", "l2"])["m"].median().items():
        m[int(l1), int(l2)] = v
    ax = axes[0, 0]
    _grid(ax, fig, m, vmax, f"m_{k} (median over images)")
    prefix = common_prefix(names) if len(names) > 1 else ""
    short = [n[len(prefix):] or n for n in names]
    ax.set_xticks(range(len(names)), short, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), short, fontsize=7)
    ax.set_xlabel("block l' (its top singular vectors: U₂, V₂)")
    ax.set_ylabel("block l (J₁)")
    ax.set_title(f"across depth, m_{k}; random level {level:.3g}", fontsize=9)
    if len(tokens):
        t = tokens.groupby(["l1", "token_in_1"])["m"].median().unstack()
        ax = axes[0, 1]
        _grid(ax, fig, t.to_numpy(), vmax, f"m_{k}(J_tr, J_rr)")
        ax.set_yticks(range(len(t)), [short[int(i)] for i in t.index], fontsize=7)
        step = max(1, -(-len(t.columns) // 16))  # at most 16 labels
        ax.set_xticks(range(0, len(t.columns), step),
                      [str(int(c)) for c in t.columns[::step]], fontsize=7)
        ax.set_xlabel(f"input token t (r = {int(tokens['token_out_1'].iloc[0])}, read by the head)")
        ax.set_ylabel("block l")
        ax.set_title(f"across tokens, m_{k}(J^l_tr, J^l_rr); random level "
                     f"{float(tokens['random'].median()):.3g}", fontsize=9)
    fig.suptitle(f"{model}: block coupling (Aubry et al. 2025), 0 = coupled")
    fig.tight_layout()
    return save(fig, path)
