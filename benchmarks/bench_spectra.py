"""Benchmark: resdyn's singular spectra on ResNet-56 at CIFAR shapes, side by side in one run.

(a) all singular values of one unit at widths 4096, 8192, 16384: resdyn ``dense`` against the
    naive way (torch.autograd.functional.jacobian + numpy.linalg.svd, float64) and against the
    floor (torch.linalg.eigvalsh of a random symmetric float64 matrix of the reduced size);
(b) the top 20 by ``arpack`` against ``dense``: agreement and speed;
(c) peak memory of the dense path (peak RSS of a fresh subprocess per width, reset after the
    set-up) against the size of the float64 Jacobian;
(d) the whole network: all 27 units + 3 stages of ResNet-56 for one image.

Usage:
    python benchmarks/bench_spectra.py                  # everything (tens of minutes on 2 cores)
    python benchmarks/bench_spectra.py --parts a,b --widths 4096,8192 --naive-max 8192
    python benchmarks/bench_spectra.py --json results.json

The weights are random (``load_model("cifar-resnet56")``); BatchNorm gets realistic running
statistics from a few batches of random images in train mode (cumulative averages, on a copy).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from resdyn import capture, load_model, units
from resdyn.models import stages
from resdyn.operators import unit_jacobian
from resdyn.spectra import singular_values
from resdyn.studies.spectra import spectrum_row

WIDTHS = (4096, 8192, 16384)
TOP_K = 20


def calibrated_resnet56(seed: int = 0, batches: int = 8, batch: int = 64) -> nn.Module:
    """ResNet-56 with random weights and BatchNorm running statistics of random images."""
    torch.manual_seed(seed)
    model = copy.deepcopy(load_model("cifar-resnet56"))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(batch, 3, 32, 32))
    return model.eval()


def unit_of_width(model: nn.Module, width: int):
    """The second (regular) unit of the stage whose units are ``width`` wide, and its input."""
    us = units(model, (3, 32, 32))
    u = next(u for u in us if u.kind == "regular" and u.n_in == width)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return u, capture(model, x, [u]).inputs[u.name][0]


def timed(fn, repeat: int = 1):
    """(result, seconds): the minimum over ``repeat`` runs (the CPU is shared: min is robust)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def naive_singular_values(unit, x: torch.Tensor) -> np.ndarray:
    """The naive way: the full Jacobian by autograd, then LAPACK's SVD without vectors."""
    ref = copy.deepcopy(unit.module).to(torch.float64).eval()
    shape = (1, *x.shape)
    jac = torch.autograd.functional.jacobian(lambda t: ref(t.reshape(shape)).reshape(-1),
                                             x.to(torch.float64).reshape(-1))
    return np.linalg.svd(jac.numpy(), compute_uv=False)


def floor_seconds(size: int, repeat: int) -> float:
    a = torch.randn(size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    a = a + a.T
    return timed(lambda: torch.linalg.eigvalsh(a), repeat)[1]


def warm_up(model) -> None:
    """One untimed dense and arpack solve, so imports and first-call set-up are not timed."""
    u, x = unit_of_width(model, min(WIDTHS))
    singular_values(unit_jacobian(u, x), method="dense")
    singular_values(unit_jacobian(u, x), k=2, method="arpack")


def part_a_b(model, widths, naive_max, parts, repeat) -> list[dict]:
    warm_up(model)
    rows = []
    for w in widths:
        u, x = unit_of_width(model, w)
        op = unit_jacobian(u, x)
        dense, t_dense = timed(lambda op=op: singular_values(op, method="dense"), repeat)
        reduced = min(op.shape[0] - dense.structural_zeros, op.shape[1])
        row = {"width": w, "unit": u.name, "kept_rows": op.shape[0] - dense.structural_zeros,
               "reduced": reduced, "dense_s": t_dense}
        row["dense_phases"] = dense.message
        print(f"[a] {w}: dense {t_dense:.1f}s ({dense.message})", flush=True)
        if "a" in parts:
            row["floor_s"] = floor_seconds(reduced, repeat)
            print(f"[a] {w}: floor eigvalsh({reduced}) {row['floor_s']:.1f}s", flush=True)
            if w <= naive_max:
                ref, row["naive_s"] = timed(lambda u=u, x=x: naive_singular_values(u, x))
                row["naive_rel_diff"] = float(np.abs(ref - dense.values).max() / ref[0])
                print(f"[a] {w}: naive {row['naive_s']:.1f}s", flush=True)
        if "b" in parts:
            top, t_top = timed(lambda op=op: singular_values(op, k=TOP_K, method="arpack"),
                               repeat)
            rel = np.abs(top.values - dense.values[:TOP_K]) / dense.values[:TOP_K]
            row.update(arpack_s=t_top, arpack_matvecs=top.matvecs,
                       arpack_converged=top.converged, arpack_rel_diff=float(rel.max()))
            print(f"[b] {w}: arpack top-{TOP_K} {t_top:.2f}s", flush=True)
        rows.append(row)
    return rows


def _status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS: resident now; VmHWM: its peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child_memory(width: int) -> None:
    """Run in a fresh process: the dense path's peak resident memory above the set-up (KiB).

    The set-up includes one untimed solve, so one-time costs (code pages of LAPACK and vmap,
    caches) are not charged to the path.

    The peak (VmHWM) is reset to the current RSS after the set-up by writing 5 to
    /proc/self/clear_refs (Linux); ru_maxrss cannot be used: it survives exec, so a child would
    report its parent's peak.
    """
    model = calibrated_resnet56()
    warm_up(model)  # libraries loaded and first-call caches filled before the peak is reset
    u, x = unit_of_width(model, width)
    op = unit_jacobian(u, x)
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    assert _status_kib("VmHWM") <= before + 1024, "peak RSS was not reset"
    singular_values(op, method="dense")
    print(json.dumps({"before_kib": before, "peak_kib": _status_kib("VmHWM")}))


def part_c(widths) -> list[dict]:
    rows = []
    for w in widths:
        out = subprocess.run([sys.executable, __file__, "--child-memory", str(w)],
                             capture_output=True, text=True, check=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        jac = 8 * w * w
        extra = (got["peak_kib"] - got["before_kib"]) * 1024
        rows.append({"width": w, "jacobian_gib": jac / 2**30, "peak_gib": got["peak_kib"] / 2**20,
                     "dense_path_gib": extra / 2**30, "ratio": extra / jac})
        print(f"[c] {w}: dense path +{extra / 2**30:.2f} GiB = {extra / jac:.2f}x J", flush=True)
    return rows


def part_d(model) -> dict:
    us = units(model, (3, 32, 32))
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    def whole() -> pd.DataFrame:
        acts = capture(model, x, us)
        targets = list(us) + stages(us)
        rows = []
        for i, target in enumerate(targets):
            first = target if not isinstance(target, list) else target[0]
            rows.append(spectrum_row(target, acts.inputs[first.name][0]))
            print(f"[d] {i + 1}/{len(targets)} {rows[-1]['name']}", flush=True)
        return pd.DataFrame(rows)

    df, t = timed(whole)
    by_kind = df.groupby("kind")["seconds"].agg(["count", "sum"]).to_dict("index")
    return {"rows": len(df), "seconds": t, "by_kind": by_kind,
            "methods": df.method.value_counts().to_dict()}


def print_tables(ab: list[dict], c: list[dict], d: dict | None) -> None:
    if ab and "floor_s" in ab[0]:
        print("\n(a) all singular values of one unit (seconds)")
        print(f"{'width':>6} {'kept':>6} {'resdyn':>8} {'naive':>9} {'floor':>8} "
              f"{'naive/resdyn':>12} {'resdyn/floor':>12} {'max|Δσ|/σmax':>12}")
        for r in ab:
            naive, dense = r.get("naive_s"), r["dense_s"]
            naive_s = f"{naive:.1f}" if naive else "skipped"
            speedup = f"{naive / dense:.1f}x" if naive else "-"
            diff = f"{r['naive_rel_diff']:.1e}" if naive else "-"
            print(f"{r['width']:>6} {r['kept_rows']:>6} {dense:>8.1f} {naive_s:>9} "
                  f"{r['floor_s']:>8.1f} {speedup:>12} {dense / r['floor_s']:>11.2f}x {diff:>12}")
        for r in ab:
            print(f"    {r['width']} ({r['unit']}): {r['dense_phases']}")
    if ab and "arpack_s" in ab[0]:
        print(f"\n(b) top-{TOP_K} singular values: arpack vs dense")
        print(f"{'width':>6} {'arpack s':>9} {'matvecs':>8} {'dense s':>8} {'dense/arpack':>12} "
              f"{'max rel diff':>12}")
        for r in ab:
            print(f"{r['width']:>6} {r['arpack_s']:>9.2f} {r['arpack_matvecs']:>8} "
                  f"{r['dense_s']:>8.1f} {r['dense_s'] / r['arpack_s']:>11.1f}x "
                  f"{r['arpack_rel_diff']:>12.1e}")
    if c:
        print("\n(c) peak memory of the dense path (fresh process per width)")
        print(f"{'width':>6} {'J GiB':>7} {'path GiB':>9} {'ratio':>6} {'process peak GiB':>17}")
        for r in c:
            print(f"{r['width']:>6} {r['jacobian_gib']:>7.2f} {r['dense_path_gib']:>9.2f} "
                  f"{r['ratio']:>5.2f}x {r['peak_gib']:>17.2f}")
    if d:
        print(f"\n(d) whole network: {d['rows']} rows (27 units + 3 stages) in "
              f"{d['seconds']:.0f} s; methods {d['methods']}")
        for kind, v in d["by_kind"].items():
            print(f"    {kind:>12}: {v['count']} rows, {v['sum']:.0f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="a,b,c,d", help="comma-separated subset of a,b,c,d")
    p.add_argument("--widths", default=",".join(map(str, WIDTHS)))
    p.add_argument("--naive-max", type=int, default=16384,
                   help="skip the naive baseline above this width (it is slow)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--repeat", type=int, default=2,
                   help="time resdyn, floor and arpack this many times and keep the minimum")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--child-memory", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child_memory:
        child_memory(args.child_memory)
        return
    parts, widths = set(args.parts.split(",")), [int(w) for w in args.widths.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"cuda={torch.cuda.is_available()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()}", flush=True)
    model = calibrated_resnet56()
    ab = part_a_b(model, widths, args.naive_max, parts, args.repeat) if parts & {"a", "b"} else []
    c = part_c(widths) if "c" in parts else []
    d = part_d(model) if "d" in parts else None
    print_tables(ab, c, d)
    print(f"\nload average at the end {os.getloadavg()} (the CPU is shared with other work)")
    if args.json:
        args.json.write_text(json.dumps({"a_b": ab, "c": c, "d": d}, indent=2, default=str))


if __name__ == "__main__":
    main()
