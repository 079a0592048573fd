"""A ViT at ImageNet size: torchvision ``vit_b_16`` (random weights), its sub-layers as units.

Each encoder block of vit_b_16 is two residual units on 197 tokens x 768 = 151 296 numbers:
x + Attn(LN₁ x) and x + MLP(LN₂ x). For the chosen blocks this times, per sub-layer:

- discovery (``units``) and capture of one 224x224 image;
- one J·v (JVP, through the math attention kernel) and one Jᵀ·w (VJP), float64;
- the top-20 singular values by ARPACK (method="arpack"), with products and convergence;
- the density of σ² by stochastic Lanczos quadrature (method="slq", ``--probes`` x ``--steps``).

Usage:
    python benchmarks/bench_vit.py                          # blocks 0 and 11, CPU (~25 min, 2 cores)
    python benchmarks/bench_vit.py --blocks 0 --probes 4 --steps 30
    python benchmarks/bench_vit.py --device cuda --json vit.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torchvision
from timing import add_device_options, device_of, timed

from resdyn import capture, units
from resdyn.operators import unit_jacobian
from resdyn.spectra import singular_values


def run(blocks: list[int], device: torch.device, k: int, probes: int, steps: int,
        slq: bool) -> dict:
    torch.manual_seed(0)
    net = torchvision.models.vit_b_16(weights=None).eval().to(device)
    t0 = time.perf_counter()
    us = units(net, (3, 224, 224))
    discover = time.perf_counter() - t0
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
    chosen = [u for u in us if any(u.path.endswith(f"encoder_layer_{b}") for b in blocks)]
    t0 = time.perf_counter()
    acts = capture(net, x, chosen)
    grab = time.perf_counter() - t0
    out = {"device": str(device), "units": len(us), "width": us[0].n_in,
           "discover_s": discover, "capture_s": grab, "rows": []}
    print(f"vit_b_16: {len(us)} units, {us[0].in_shape} = {us[0].n_in} wide; units() "
          f"{discover:.2f} s, capture {grab:.2f} s", flush=True)
    for u in chosen:
        op = unit_jacobian(u, acts.inputs[u.name][0])
        g = torch.Generator().manual_seed(1)
        v = torch.randn(op.shape[1], generator=g, dtype=torch.float64).to(device)
        jvp_s, _ = timed(device, op.matvec, v)
        vjp_s, _ = timed(device, op.rmatvec, v)
        top = singular_values(op, k=k, method="arpack")
        row = {"unit": u.name, "jvp_s": jvp_s, "vjp_s": vjp_s, "arpack_s": top.seconds,
               "arpack_products": top.matvecs, "arpack_converged": bool(top.converged),
               "sigma_top": [float(s) for s in np.asarray(top.values)[:5]]}
        print(f"  {u.name}: J·v {jvp_s:.3f} s, Jᵀ·w {vjp_s:.3f} s; top-{k} σ by ARPACK "
              f"{top.seconds:.1f} s ({top.matvecs} products, converged {top.converged}), "
              f"σ_1..3 {', '.join(f'{s:.4f}' for s in row['sigma_top'][:3])}", flush=True)
        if slq:
            dens = singular_values(op, method="slq", probes=probes, steps=steps)
            d = dens.density
            top_ritz = float(np.sqrt(d.nodes.max()))  # SLQ's own estimate of σ_1
            row.update(slq_s=dens.seconds, slq_products=dens.matvecs,
                       slq_rel_stderr=float(d.stderr.max() / d.density.max()),
                       slq_sigma_max=top_ritz)
            print(f"    SLQ density ({probes} probes x {steps} steps): {dens.seconds:.1f} s "
                  f"({dens.matvecs} products); largest standard error "
                  f"{row['slq_rel_stderr']:.1%} of the peak density; largest Ritz value "
                  f"√θ = {top_ritz:.4f} vs ARPACK's σ_1 {row['sigma_top'][0]:.4f}", flush=True)
        out["rows"].append(row)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", default="0,11", help="encoder blocks to time, e.g. 0,11")
    add_device_options(p)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--probes", type=int, default=4)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--no-slq", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    device, name = device_of(args)
    print(f"device {device} ({name}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads", flush=True)
    result = run([int(b) for b in args.blocks.split(",")], device, args.k, args.probes,
                 args.steps, not args.no_slq)
    result["device_name"] = name
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
