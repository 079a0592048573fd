"""A GPT-2-small-sized causal LM (random weights): its 24 sub-layers as units.

``transformers.GPT2Config()`` (12 blocks, d = 768, 12 heads, context 1024, vocabulary 50257),
seeded random weights, wrapped by ``resdyn.models.language.CausalLM``: the input is the embedded
context e = model.embed(tokens) (1, T, d), and each block is two residual units on T x 768
numbers (T = 128: 98 304): x + Attn(LN₁ x) (``lm.transformer.h.{i}.attn``) and x + MLP(LN₂ x)
(``lm.transformer.h.{i}.mlp``). This times:

- the model's build, discovery (``units``) and capture of one sequence of random tokens;
- per sub-layer, one J·v (JVP) and one Jᵀ·w (VJP) in float64 and in float32, each from scratch
  (a forward pass each, as ``unit_jacobian(...).matvec`` runs them);
- the choice of solver for the top-k σ (``--k 20``): "block" and "arpack" with float32 and
  float64 products on the first ``--compare`` sub-layers, the relative differences of their
  top-k σ against ARPACK in float64; the fastest converged one within ``--agree`` (1e-4) of it
  is used for every sub-layer (``--method``/``--precision`` force a choice);
- the top-k σ of every chosen sub-layer by that solver (the compared sub-layers keep their
  comparison solve), the total against the target: all 24 within 15 minutes on a 2-core CPU,
  within 1 minute on one H100/H200;
- an SLQ density of σ² of ``--slq`` sub-layers (``--probes`` x ``--steps``);
- finite-time Lyapunov exponents across depth, the top ``--lyapunov-k`` (5), of the sub-layers
  from the first one to the last chosen one, in forward order
  (``resdyn.dynamics.qr_exponents``, ``--lyapunov exact`` for ``exact_exponents``: hours here).

float32 operators are linearized here with ``linearize(op, rtol=1e-5)``: the solvers'
own ``linearized`` checks the replayed product against a JVP to 1e-10, which float32 products
never meet, so without this every float32 product would redo the forward pass
(``--no-f32-linearize`` measures that). On a CPU with few cores, run it with
``OPENBLAS_NUM_THREADS=1``: otherwise scipy's OpenBLAS threads (ARPACK's own vector work)
compete with torch's for the cores, and ARPACK's products take 2-3x as long
(benchmarks/README.md, "GPT-2-small sub-layers").

Usage:
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_lm.py    # all 24 sub-layers, CPU (~5 min, 2 cores)
    python benchmarks/bench_lm.py --blocks 0 --probes 2 --steps 10     # quick (~3 min)
    python benchmarks/bench_lm.py --blocks 0,11 --method block --precision float32 --compare 0
    python benchmarks/bench_lm.py --device cuda --json lm.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

import numpy as np
import torch
import transformers
from timing import add_device_options, device_of, synced, timed

from resdyn import capture, units
from resdyn.dynamics import exact_exponents, qr_exponents
from resdyn.models.language import CausalLM
from resdyn.operators import linearize, unit_jacobian
from resdyn.spectra import singular_values

PRECISIONS = {"float64": torch.float64, "float32": torch.float32}
#: Seconds for all 24 sub-layers' top-20 σ: 15 min on the 2-core CPU, 1 min on one H100/H200.
TARGET_S = {"cpu": 900.0, "cuda": 60.0}


def _load() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def _operator(u, x, precision: str, f32_linearize: bool):
    """The unit's Jacobian in ``precision``; float32 linearized by hand (see the module doc)."""
    op = unit_jacobian(u, x, dtype=PRECISIONS[precision])
    if precision == "float32" and f32_linearize:
        op = linearize(op, rtol=1e-5)
    return op


def _solve(u, x, method: str, precision: str, k: int, opts: dict, f32_linearize: bool,
           device: torch.device) -> dict:
    t0 = synced(device)
    op = _operator(u, x, precision, f32_linearize)
    ready = synced(device) - t0
    res = singular_values(op, k=k, method=method, **opts)
    total = synced(device) - t0
    return {"method": method, "precision": precision, "options": opts,
            "operator": type(op).__name__, "setup_s": ready, "solve_s": res.seconds,
            "seconds": total, "products": int(res.matvecs), "converged": bool(res.converged),
            "message": res.message, "sigma": [float(s) for s in np.asarray(res.values)],
            "max_residual": float(np.max(res.residuals)) if res.residuals is not None else None}


def _solver_options(method: str, precision: str, block: int | None, basis: int | None,
                    arpack_tol32: float) -> dict:
    if method == "block":
        return {k: v for k, v in (("block", block), ("basis", basis)) if v is not None}
    if method == "arpack" and precision == "float32":
        return {"tol": arpack_tol32}
    return {}


def _products(u, x, device: torch.device, f32_linearize: bool) -> dict:
    """One J·v and one Jᵀ·w from scratch per precision, and replayed (linearized) ones."""
    row = {}
    for name, dtype in PRECISIONS.items():
        op = unit_jacobian(u, x, dtype=dtype)
        g = torch.Generator().manual_seed(1)
        v = torch.randn(op.shape[1], generator=g, dtype=dtype).to(device)
        row[f"jvp_{name}_s"], _ = timed(device, op.matvec, v)
        row[f"vjp_{name}_s"], _ = timed(device, op.rmatvec, v)
        rtol = 1e-5 if (name == "float32" and f32_linearize) else 1e-10
        row[f"linearize_{name}_s"], lin = timed(device, linearize, op, rtol=rtol)
        row[f"linearized_{name}"] = type(lin).__name__ != "JacobianOperator"
        row[f"jvp_replay_{name}_s"], _ = timed(device, lin.matvec, v)
        row[f"vjp_replay_{name}_s"], _ = timed(device, lin.rmatvec, v)
    return row


def _rel(a: list[float], b: list[float]) -> float:
    a, b = np.asarray(a), np.asarray(b)
    n = min(len(a), len(b))
    return float(np.max(np.abs(a[:n] - b[:n]) / np.abs(b[:n]))) if n else float("nan")


def run(blocks: list[int], device: torch.device, tokens: int, k: int, compare: int,
        method: str, precision: str, agree: float, block: int | None, basis: int | None,
        arpack_tol32: float, slq: int, probes: int, steps: int, lyapunov: str, lyapunov_k: int,
        f32_linearize: bool) -> dict:
    out: dict = {"tokens": tokens, "k": k, "blocks": blocks, "device": str(device),
                 "load_start": _load()}
    t0 = time.perf_counter()
    torch.manual_seed(0)
    lm = transformers.GPT2LMHeadModel(transformers.GPT2Config())
    model = CausalLM(lm).eval().to(device)
    out["build_s"] = time.perf_counter() - t0
    out["discover_s"], us = timed(device, units, model, (tokens, model.width))
    ids = torch.randint(0, model.vocab_size, (1, tokens),
                        generator=torch.Generator().manual_seed(0)).to(device)
    e = model.embed(ids).detach()
    out["capture_s"], acts = timed(device, capture, model, e, us)
    chosen = [u for u in us if any(u.path == f"lm.transformer.h.{b}" for b in blocks)]
    out.update(units=len(us), width=us[0].n_in, chosen=[u.name for u in chosen])
    print(f"GPT-2 small (random weights), T = {tokens}: {len(us)} units, {us[0].in_shape} = "
          f"{us[0].n_in} wide; build {out['build_s']:.1f} s, units() {out['discover_s']:.2f} s, "
          f"capture {out['capture_s']:.2f} s", flush=True)
    xs = {u.name: acts.inputs[u.name][0] for u in us}

    # products: one warm-up (torch's first JVP loads its decompositions), then per sub-layer
    _products(chosen[0], xs[chosen[0].name], device, f32_linearize)
    out["products"] = []
    for u in chosen:
        row = {"unit": u.name, **_products(u, xs[u.name], device, f32_linearize)}
        out["products"].append(row)
        print(f"  {u.name}: J·v {1e3 * row['jvp_float64_s']:.0f} ms, Jᵀ·w "
              f"{1e3 * row['vjp_float64_s']:.0f} ms (float64); J·v "
              f"{1e3 * row['jvp_float32_s']:.0f} ms, Jᵀ·w {1e3 * row['vjp_float32_s']:.0f} ms "
              f"(float32); replayed J·v/Jᵀ·w {1e3 * row['jvp_replay_float64_s']:.0f}/"
              f"{1e3 * row['vjp_replay_float64_s']:.0f} ms (float64), "
              f"{1e3 * row['jvp_replay_float32_s']:.0f}/{1e3 * row['vjp_replay_float32_s']:.0f}"
              f" ms (float32{'' if row['linearized_float32'] else ', not linearized'})",
              flush=True)

    # the choice of solver and precision on the first `compare` sub-layers
    configs = [("arpack", "float64"), ("arpack", "float32"), ("block", "float64"),
               ("block", "float32")]
    out["compare"] = []
    solved: dict[tuple[str, str, str], dict] = {}
    for u in chosen[:compare]:
        ref = None
        for m, p in configs:
            r = _solve(u, xs[u.name], m, p, k, _solver_options(m, p, block, basis, arpack_tol32),
                       f32_linearize, device)
            ref = r["sigma"] if ref is None else ref
            r.update(unit=u.name, rel_vs_arpack64=_rel(r["sigma"], ref))
            solved[(u.name, m, p)] = r
            out["compare"].append(r)
            print(f"  {u.name} {m:6s} {p}: {r['seconds']:.1f} s ({r['products']} products, "
                  f"{r['seconds'] / max(r['products'], 1) * 1e3:.0f} ms each, converged "
                  f"{r['converged']}), max |Δσ|/σ vs arpack float64 {r['rel_vs_arpack64']:.1e}, "
                  f"σ_1..3 {', '.join(f'{s:.5f}' for s in r['sigma'][:3])}", flush=True)
        for m in ("arpack", "block"):
            d = _rel(solved[(u.name, m, "float32")]["sigma"], solved[(u.name, m, "float64")]["sigma"])
            out.setdefault("f32_vs_f64", []).append({"unit": u.name, "method": m, "max_rel": d})
            print(f"  {u.name} {m}: top-{k} σ float32 vs float64, max relative difference "
                  f"{d:.1e}", flush=True)
    picked, why = (method, precision), "given"
    if compare and (method == "auto" or precision == "auto"):
        fits = []
        for m, p in configs:
            if method not in ("auto", m) or precision not in ("auto", p):
                continue
            rows = [solved[(u.name, m, p)] for u in chosen[:compare]]
            if all(r["converged"] and r["rel_vs_arpack64"] <= agree for r in rows):
                fits.append((sum(r["seconds"] for r in rows), m, p))
        if fits:
            secs, m, p = min(fits)
            picked = (m, p)
            why = (f"fastest converged within {agree:.0e} of ARPACK float64 on "
                   f"{compare} sub-layers ({secs:.1f} s for them)")
    if "auto" in picked:  # no comparison, or nothing agreed: the accurate default
        picked = ("arpack" if picked[0] == "auto" else picked[0],
                  "float64" if picked[1] == "auto" else picked[1])
        why = "default (no comparison or none agreed)"
    m, p = picked
    opts = _solver_options(m, p, block, basis, arpack_tol32)
    out.update(method=m, precision=p, method_options=opts, method_reason=why)
    print(f"top-{k} σ of every sub-layer by {m} in {p} {opts or ''}: {why}", flush=True)

    # the top-k σ of every chosen sub-layer
    out["rows"] = []
    for u in chosen:
        r = solved.get((u.name, m, p))
        reused = r is not None
        if r is None:
            r = _solve(u, xs[u.name], m, p, k, opts, f32_linearize, device)
            r["unit"] = u.name
        r = {**r, "from_compare": reused}
        out["rows"].append(r)
        print(f"  {u.name}: top-{k} σ {r['seconds']:.1f} s ({r['products']} products, "
              f"converged {r['converged']}{', the comparison solve' if reused else ''}), "
              f"σ_1..3 {', '.join(f'{s:.5f}' for s in r['sigma'][:3])}", flush=True)
    total = sum(r["seconds"] for r in out["rows"])
    by_kind = {kind: [r["seconds"] for r in out["rows"] if r["unit"].endswith(kind)]
               for kind in (".attn", ".mlp")}
    projected = sum(12 * float(np.mean(v)) for v in by_kind.values() if v)
    target = TARGET_S.get(device.type, TARGET_S["cpu"])
    out.update(topk_total_s=total, topk_projected_24_s=projected, target_s=target,
               target_met=projected <= target,
               topk_products_total=sum(r["products"] for r in out["rows"]))
    print(f"top-{k} σ of {len(chosen)} sub-layers: {total:.1f} s "
          f"({total / max(len(chosen), 1):.1f} s each, "
          f"{out['topk_products_total']} products); all 24: {projected:.0f} s "
          f"{'measured' if len(chosen) == 24 else 'projected (12 x mean attn + 12 x mean mlp)'}"
          f" against the target {target:.0f} s: {'met' if projected <= target else 'NOT met'}",
          flush=True)

    # SLQ densities
    out["slq"] = []
    for u in chosen[:slq]:
        op = _operator(u, xs[u.name], p, f32_linearize)
        dens = singular_values(op, method="slq", probes=probes, steps=steps)
        d = dens.density
        top = next(r for r in out["rows"] if r["unit"] == u.name)["sigma"][0]
        row = {"unit": u.name, "precision": p, "probes": probes, "steps": steps,
               "seconds": dens.seconds, "products": int(dens.matvecs),
               "rel_stderr": float(d.stderr.max() / d.density.max()) if probes > 1 else None,
               "sigma_max_ritz": float(np.sqrt(d.nodes.max())), "sigma_1": top}
        out["slq"].append(row)
        print(f"  {u.name}: SLQ density ({probes} probes x {steps} steps, {p}) "
              f"{dens.seconds:.1f} s ({dens.matvecs} products); largest Ritz value "
              f"√θ = {row['sigma_max_ritz']:.4f} vs σ_1 {top:.4f}", flush=True)

    # Lyapunov exponents across depth: the sub-layers from the first to the last chosen one
    if lyapunov != "none" and chosen:
        last = max(us.index(u) for u in chosen)
        chain = us[:last + 1]
        fn = qr_exponents if lyapunov == "qr" else exact_exponents
        secs, ex = timed(device, fn, chain, xs[chain[0].name], k=lyapunov_k)
        out["lyapunov"] = {"method": lyapunov, "k": lyapunov_k, "units": len(chain),
                           "seconds": secs,
                           "depths": [{"depth": x.depth, "unit": x.unit, "seconds": x.seconds,
                                       "values": [float(v) for v in x.values]} for x in ex]}
        print(f"Lyapunov exponents ({lyapunov}, top {lyapunov_k}) across {len(chain)} "
              f"sub-layers: {secs:.1f} s; λ(depth {ex[-1].depth}) = "
              f"{', '.join(f'{v:.4f}' for v in ex[-1].values)}; λ_1 by depth "
              f"{', '.join(f'{x.values[0]:.3f}' for x in ex)}", flush=True)
    out["load_end"] = _load()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", default=",".join(str(i) for i in range(12)),
                   help="GPT-2 blocks to time, e.g. 0,11 (default: all 12, i.e. 24 sub-layers)")
    add_device_options(p)
    p.add_argument("--tokens", type=int, default=128, help="T, the context length")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--compare", type=int, default=2,
                   help="sub-layers on which block/arpack x float32/float64 are compared")
    p.add_argument("--method", default="auto", choices=("auto", "block", "arpack"))
    p.add_argument("--precision", default="auto", choices=("auto", "float32", "float64"))
    p.add_argument("--agree", type=float, default=1e-4,
                   help="largest relative difference from ARPACK float64 accepted")
    p.add_argument("--block-size", type=int, default=None, help="block solver: vectors per product")
    p.add_argument("--basis", type=int, default=None, help="block solver: basis size")
    p.add_argument("--arpack-tol32", type=float, default=1e-6,
                   help="ARPACK's tol with float32 products (its 0 asks float64 accuracy)")
    p.add_argument("--slq", type=int, default=2, help="sub-layers given an SLQ density")
    p.add_argument("--probes", type=int, default=4)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--lyapunov", default="qr", choices=("qr", "exact", "none"))
    p.add_argument("--lyapunov-k", type=int, default=5)
    p.add_argument("--no-f32-linearize", action="store_true",
                   help="float32 operators as resdyn's solvers get them (not linearized)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    device, name = device_of(args)
    env = {v: os.environ[v] for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                      "OPENBLAS_NUM_THREADS") if v in os.environ}
    print(f"device {device} ({name}), torch {torch.__version__}, transformers "
          f"{transformers.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load {_load()}{', ' if env else ''}"
          f"{', '.join(f'{k}={v}' for k, v in env.items())}", flush=True)
    t0 = time.perf_counter()
    result = run([int(b) for b in args.blocks.split(",")], device, args.tokens, args.k,
                 args.compare, args.method, args.precision, args.agree, args.block_size,
                 args.basis, args.arpack_tol32, args.slq, args.probes, args.steps,
                 args.lyapunov, args.lyapunov_k, not args.no_f32_linearize)
    result.update(wall_s=time.perf_counter() - t0, device_name=name,
                  torch=torch.__version__, transformers=transformers.__version__,
                  python=sys.version.split()[0], platform=platform.platform(),
                  cpus=os.cpu_count(), threads=torch.get_num_threads(), env=env,
                  date=datetime.date.today().isoformat(), argv=sys.argv[1:])
    print(f"wall {result['wall_s']:.0f} s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
