"""Block coupling m_K of one token pair at GPT-2-small width (d = 768): matrix-free against dense.

Two GPT-2 blocks of GPT-2-small's width (d = 768, 12 heads, MLP 3072; seeded random weights:
nothing is downloaded), one sequence of ``--tokens`` random tokens. One token pair's measure is
m_K(J¹_{rr}, J²_{rr}) for K = 10, 30, 50 in both orientations (U-J-V and V-J-U), r the last
token, J^l_{rr} = ∂f^l(X)_r / ∂x_r (768 × 768) of the block's residual contribution f = F − id.
Each path starts from nothing (the blocks' input captured) and ends with the m_K:

- dense: both J materialised (768 VJPs each, cotangents at token r), their top-50 triplets
  (:func:`resdyn.spectra.triplets.singular_triplets`, the Gram's top eigenpairs), the
  projections U₂ᵀJ₁V₂ and V₂ᵀJ₁U₂ as matrix products;
- matrix-free: both per-token operators linearized (one forward pass each), their top-50 triplets
  by block Krylov (``method="block"``, residuals ≤ 1e-10·σ₁), the projections as 2 × 50 products
  of J₁.

The two are timed side by side in one run (``--repeat`` times, the median), and their m_K are
compared (they agree to the solver's tolerance).

Usage:
    python benchmarks/bench_coupling.py                  # CPU, T = 16
    python benchmarks/bench_coupling.py --tokens 64 --threads 2
    python benchmarks/bench_coupling.py --device cuda
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import transformers
from timing import add_device_options, device_of, timed

from resdyn import capture, units
from resdyn.dynamics.coupling import KS, blocks, coupling, frames, project, token_jacobian
from resdyn.models.language import CausalLM
from resdyn.operators import linearize
from resdyn.spectra.triplets import singular_triplets


def measure(ops, trips) -> dict:
    """{(orientation, K): m_K(J₁, J₂)}."""
    out = {}
    for orientation in ("ujv", "vju"):
        for k, m in coupling(project(ops[0], *frames(trips[1], orientation)), trips[0].sigma,
                             KS).items():
            out[(orientation, k)] = m
    return out


def dense_path(fs, bl, xs, r):
    js = [token_jacobian(f, b, x, r, r).dense() for f, b, x in zip(fs, bl, xs, strict=True)]
    trips = [singular_triplets(j, max(KS)) for j in js]
    return measure(js, trips)


def free_path(fs, bl, xs, r):
    ops = [linearize(token_jacobian(f, b, x, r, r)) for f, b, x in zip(fs, bl, xs, strict=True)]
    trips = [singular_triplets(op, max(KS), method="block") for op in ops]
    assert all(t.converged for t in trips), [t.message for t in trips]
    return measure(ops, trips), sum(t.matvecs for t in trips)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--repeat", type=int, default=3)
    add_device_options(p)
    args = p.parse_args()
    device, name = device_of(args)
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=768, n_head=12, n_positions=args.tokens,
                                     vocab_size=1000, bos_token_id=None, eos_token_id=None)
    model = CausalLM(transformers.GPT2LMHeadModel(config)).eval().to(device)
    us = units(model, (args.tokens, 768))
    e = model.embed(torch.randint(0, 1000, (1, args.tokens), device=device))
    acts = capture(model, e, us)
    bl = blocks(us)
    xs = [acts.inputs[b.units[0].name][0] for b in bl]
    fs = [b.residual() for b in bl]
    r = args.tokens - 1
    dense_path(fs, bl, xs, r)  # warm-up (first JVP/VJP set-up)
    free_path(fs, bl, xs, r)
    times: dict[str, list[float]] = {"dense": [], "free": []}
    for _ in range(args.repeat):
        dt, dense = timed(device, dense_path, fs, bl, xs, r)
        times["dense"].append(dt)
        dt, (free, products) = timed(device, free_path, fs, bl, xs, r)
        times["free"].append(dt)
    diff = max(abs(free[key] - dense[key]) for key in dense)
    td, tf = float(np.median(times["dense"])), float(np.median(times["free"]))
    print(f"# block coupling of one token pair, GPT-2-small width d = 768, T = {args.tokens}, "
          f"{name}, {torch.get_num_threads()} threads, {args.device}")
    print(f"dense        {td:8.2f} s   (2 x 768 VJPs, top-50 triplets from the Gram)")
    print(f"matrix-free  {tf:8.2f} s   (block Krylov, {products} products for both J, then "
          f"2 x 50 for the projections)")
    print(f"ratio matrix-free / dense: {tf / td:.2f}")
    print(f"max |m_K(matrix-free) - m_K(dense)| over K = {KS}, both orientations: {diff:.1e}")
    print("m_K (dense): " + ", ".join(f"{o} K={k}: {v:.4f}" for (o, k), v in dense.items()))


if __name__ == "__main__":
    main()
