"""Benchmark: resdyn's singular spectra on ResNet-56 at CIFAR shapes, side by side in one run.

(a) all singular values of one unit at widths 4096, 8192, 16384: resdyn ``dense`` against the
    naive way (torch.autograd.functional.jacobian + numpy.linalg.svd, float64) and against the
    floor (torch.linalg.eigvalsh of a random symmetric float64 matrix of the reduced size);
(b) the top 20 by ``arpack`` against ``dense``: agreement and speed;
(c) peak memory of the dense path (peak RSS of a fresh subprocess per width and precision, reset
    after the set-up) against the size of the float64 Jacobian;
(d) the whole network: all 27 units + 3 stages of ResNet-56 for one image, all values by
    ``dense``, per precision of the products (float64, float32), each part next to its floor:
    resdyn's own BLAS Gram (dsyrk) of a random float64 block of the part's shape (kept rows x
    width) plus eigvalsh of that Gram, in the same run;
(e) products per image on the shipped digits models: one image at a time against 8 images in one
    batched pass (one forward pass, then VJPs with the unit vector in every image at once);
(f) float32 throughout (products, Gram, eigvalsh) against float32 products only, per width;
(g) the block solver (``method="block"``: its basis stays on the device) against ARPACK, side by
    side: the top 20 singular values and the 6 eigenvalues of largest and of smallest real part
    of a digits unit (1024 wide) and a CIFAR-shaped unit (the largest of --widths), seconds,
    products and the largest difference (and against LAPACK where the unit is at most 4096
    wide); with ``--imagenet`` also torchvision ResNet-18 (random weights) layer1.0 at 224x224
    (200704 wide: for a GPU, ARPACK takes over 15 minutes on a CPU; ``--imagenet-size 128``:
    65536 wide).

Usage:
    python benchmarks/bench_spectra.py                  # everything (about 2 hours on 2 cores)
    python benchmarks/bench_spectra.py --parts a,b --widths 4096,8192 --naive-max 8192
    python benchmarks/bench_spectra.py --parts d --json whole.json    # about 50 min on 2 cores
    python benchmarks/bench_spectra.py --parts d,e --device cuda      # the GPU path
    python benchmarks/bench_spectra.py --parts g --widths 16384       # block vs ARPACK (~2 min)
    python benchmarks/bench_spectra.py --parts g --device cuda --imagenet
    python benchmarks/bench_spectra.py --parts g --imagenet --imagenet-size 128 --repeat 1
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
from scipy.optimize import linear_sum_assignment
from torch import nn

from resdyn import capture, load_data, load_model, units
from resdyn.metrics import singular_summary
from resdyn.models import calibrate_batchnorm, stages
from resdyn.operators import unit_jacobian
from resdyn.spectra import eigenvalues, precision_dtype, singular_values
from resdyn.spectra.dense import gram, gram_eigvalsh
from resdyn.tasks.spectrum import target_jacobian

WIDTHS = (4096, 8192, 16384)
TOP_K = 20


def calibrated_resnet56(seed: int = 0) -> nn.Module:
    """ResNet-56 with random weights and BatchNorm running statistics of random images."""
    torch.manual_seed(seed)
    return calibrate_batchnorm(load_model("cifar-resnet56"), (3, 32, 32), seed=seed)


def unit_of_width(model: nn.Module, width: int, device: str | torch.device = "cpu"):
    """The first regular unit ``width`` wide, and its input (``model`` on ``device``)."""
    us = units(model, (3, 32, 32))
    u = next(u for u in us if u.kind == "regular" and u.n_in == width)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(device)
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


def warm_up(model, precisions: tuple[str, ...] = ("float64",)) -> None:
    """Untimed dense solves (one per precision) and an arpack solve, so imports and first-call
    set-up are not timed."""
    u, x = unit_of_width(model, min(WIDTHS))
    for p in precisions:
        singular_values(unit_jacobian(u, x, dtype=precision_dtype(p)), method="dense")
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


def child_memory(width: int, precision: str) -> None:
    """Run in a fresh process: the dense path's peak resident memory above the set-up (KiB).

    The set-up includes one untimed solve, so one-time costs (code pages of LAPACK and vmap,
    caches) are not charged to the path.

    The peak (VmHWM) is reset to the current RSS after the set-up by writing 5 to
    /proc/self/clear_refs (Linux); ru_maxrss cannot be used: it survives exec, so a child would
    report its parent's peak.
    """
    model = calibrated_resnet56()
    warm_up(model, (precision,))  # libraries and first-call caches in before the peak reset
    u, x = unit_of_width(model, width)
    op = unit_jacobian(u, x, dtype=precision_dtype(precision))
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    assert _status_kib("VmHWM") <= before + 1024, "peak RSS was not reset"
    singular_values(op, method="dense")
    print(json.dumps({"before_kib": before, "peak_kib": _status_kib("VmHWM")}))


def part_c(widths, precisions: list[str]) -> list[dict]:
    rows = []
    for w, p in ((w, p) for w in widths for p in precisions):
        out = subprocess.run([sys.executable, __file__, "--child-memory", str(w),
                              "--precision", p], capture_output=True, text=True, check=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        jac = 8 * w * w
        extra = (got["peak_kib"] - got["before_kib"]) * 1024
        rows.append({"width": w, "precision": p, "jacobian_gib": jac / 2**30,
                     "peak_gib": got["peak_kib"] / 2**20, "dense_path_gib": extra / 2**30,
                     "ratio": extra / jac})
        print(f"[c] {w} {p}: dense path +{extra / 2**30:.2f} GiB = {extra / jac:.2f}x J", flush=True)
    return rows


def _block_shape(op, res) -> tuple[int, int]:
    """(a, b), a <= b: the shape of the block the dense path builds (kept rows x width)."""
    kept = op.shape[0] - res.structural_zeros
    return min(kept, op.shape[1]), max(kept, op.shape[1])


def _synced(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def part_floor(a: int, b: int, device: torch.device, seed: int = 3) -> dict:
    """The LAPACK work a part cannot skip: the Gram of a random float64 (a, b) block by resdyn's
    own BLAS call (dsyrk on the CPU, a matrix product on a GPU), then eigvalsh of that Gram."""
    g = torch.Generator(device=device).manual_seed(seed)
    m = torch.randn(a, b, dtype=torch.float64, device=device, generator=g)
    t0 = _synced(device)
    gm = gram(m)
    t1 = _synced(device)
    del m
    gram_eigvalsh(gm)
    t2 = _synced(device)
    return {"floor_gram": t1 - t0, "floor_eigensolve": t2 - t1, "floor": t2 - t0}


def part_d(model, precisions: list[str], device: torch.device, floors: bool = True,
           only: int | None = None) -> dict:
    """Every unit and stage of ResNet-56 for one image, all values by ``dense``, per precision,
    each part next to the floor of its own block shape, all in this one run."""
    model = model.to(device)
    us = units(model, (3, 32, 32))
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(device)
    acts = capture(model, x, us)
    targets = (list(us) + stages(us))[:only]
    for p in precisions:  # untimed: first-call set-up of each precision's products and solvers
        singular_values(target_jacobian(us[-1], acts.inputs[us[-1].name][0], p).op, method="dense")
    rows = []
    for i, target in enumerate(targets):
        first = target if not isinstance(target, list) else target[0]
        xin = acts.inputs[first.name][0]
        row: dict = {}
        values = {}
        for p in precisions:
            t0 = _synced(device)
            t = target_jacobian(target, xin, p)
            op, row["name"], row["kind"] = t.op, t.name, t.kind
            res = singular_values(op, method="dense")
            row[f"{p}_s"] = _synced(device) - t0
            row.update({f"{p}_{k}": v for k, v in res.phases.items()})
            values[p] = res.values
            row["a"], row["b"] = _block_shape(op, res)
            del op, res
        if floors:
            row.update(part_floor(row["a"], row["b"], device))
        if len(values) > 1:
            ref, *others = precisions
            for p in others:
                row[f"{p}_max_rel_diff"] = float(np.abs(values[p] - values[ref]).max()
                                                 / values[ref][0])
                row[f"{p}_bins_equal"] = bins(values[p]) == bins(values[ref])
        rows.append(row)
        shown = ", ".join(f"{p} {row[f'{p}_s']:.1f}s" for p in precisions)
        floor = f", floor {row['floor']:.1f}s" if floors else ""
        print(f"[d] {i + 1}/{len(targets)} {row['name']} ({row['a']}x{row['b']}): {shown}{floor}",
              flush=True)
    return {"rows": rows, "precisions": precisions, "device": str(device)}


def bins(values: np.ndarray) -> tuple[int, int, int, int]:
    s = singular_summary(values)
    return s.n_above, s.n_plateau, s.n_below, s.n_zero


def batched_rows(module: nn.Module, xs: torch.Tensor, k: int) -> torch.Tensor:
    """The first k rows of the unit Jacobian at each of the B images of ``xs``, in one pass.

    One forward pass over the B images (BatchNorm in eval mode: images do not interact), then
    vmapped VJPs whose cotangents put the same unit vector in every image at once: the network
    sees a batch of k·B images per product call instead of k.
    """
    from torch.func import vjp, vmap

    b = xs.shape[0]
    _, pull = vjp(module, xs)
    e = torch.zeros(k, b, xs[0].numel(), dtype=xs.dtype, device=xs.device)
    e[torch.arange(k), :, torch.arange(k)] = 1
    return vmap(lambda c: pull(c.reshape(xs.shape))[0])(e)


def part_f(model, widths: list[int]) -> list[dict]:
    """Why the Gram matrix and eigensolve stay float64: the σ of one unit with everything in
    float32 (products, Gram, eigvalsh) and with float32 products only, against float64."""
    rows = []
    for w in widths:
        u, x = unit_of_width(model, w)
        ref = singular_values(unit_jacobian(u, x), method="dense").values
        op = unit_jacobian(u, x, dtype=torch.float32)
        block = op.rows(torch.nonzero(~op.zero_rows).reshape(-1))       # float32 (a, n)
        all32 = torch.linalg.eigvalsh(block @ block.T).flip(0).clamp(min=0).sqrt().double()
        prod32 = singular_values(op, method="dense").values
        row = {"width": w, "kept_rows": len(block)}
        for name, v in (("all_float32", all32.numpy()), ("float32_products", prod32)):
            v = np.concatenate([v, np.zeros(len(ref) - len(v))])
            row[f"{name}_max_rel_diff"] = float(np.abs(v - ref).max() / ref[0])
            row[f"{name}_bins_equal"] = bins(v) == bins(ref)
        rows.append(row)
        print(f"[f] {w}: all float32 {row['all_float32_max_rel_diff']:.1e}, float32 products "
              f"{row['float32_products_max_rel_diff']:.1e} (max |Δσ|/σ_max)", flush=True)
    return rows


def _per_image(module: nn.Module, xs: torch.Tensor, k: int, batch: int, device: torch.device,
               repeat: int) -> float:
    """Seconds per image for the rows of all images of ``xs``, ``batch`` images per pass."""
    def run() -> None:
        for s in range(0, len(xs), batch):
            batched_rows(module, xs[s:s + batch], k)
        _synced(device)

    return timed(run, repeat)[1] / len(xs)


def part_e(names: list[str], device: torch.device, images: int = 8, repeat: int = 3) -> list[dict]:
    """Per-image time of the products (all rows of a unit Jacobian, up to 1024) for 1 image at a
    time against ``images`` images in one batched pass, on the shipped digits models."""
    data = load_data("digits")
    rows = []
    for name in names:
        model = load_model(name).to(device)
        us = units(model, data.input_shape)
        widths = sorted({u.n_in for u in us if u.kind == "regular"}, reverse=True)
        for w in widths:
            u = [u for u in us if u.kind == "regular" and u.n_in == w][1]
            for p in ("float64", "float32"):
                dtype = precision_dtype(p)
                module = copy.deepcopy(u.module).to(device, dtype).eval()
                xs = capture(model, data.x[:images].to(device), [u]).inputs[u.name].to(dtype)
                k = min(w, 1024)
                batched_rows(module, xs, k)  # warm-up
                one = _per_image(module, xs, k, 1, device, repeat)
                many = _per_image(module, xs, k, images, device, repeat)
                rows.append({"model": name, "unit": u.name, "width": w, "precision": p,
                             "rows": k, "one_s": one, "batched_s": many, "gain": one / many})
                print(f"[e] {name} {u.name} {w} {p}: {one * 1e3:.1f} ms per image alone, "
                      f"{many * 1e3:.1f} ms per image in a batch of {images}", flush=True)
    return rows


#: Part (g)'s problems: (name, solve(op, method)).
G_PROBLEMS = (
    (f"sigma top-{TOP_K}", lambda op, m: singular_values(op, k=TOP_K, method=m)),
    ("lambda LR k=6", lambda op, m: eigenvalues(op, k=6, which="LR", method=m)),
    ("lambda SR k=6", lambda op, m: eigenvalues(op, k=6, which="SR", method=m)),
)


def g_units(model: nn.Module, width: int, device: torch.device, imagenet: int | None) -> list:
    """(name, unit, input) of part (g): a digits unit, a CIFAR-shaped one, and ResNet-18's
    layer1.0 at an ``imagenet`` x ``imagenet`` input (64·(imagenet/4)² wide) unless None."""
    digits, data = load_model("digits-resnet56").to(device), load_data("digits")
    u = next(u for u in units(digits, data.input_shape) if u.name == "stages.0.1")
    out = [("digits-resnet56 stages.0.1", u,
            capture(digits, data.x[:1].to(device), [u]).inputs[u.name][0])]
    cifar = copy.deepcopy(model).to(device)
    u, x = unit_of_width(cifar, width, device)
    out.append((f"cifar-resnet56 {u.name}", u, x))
    if imagenet:
        import torchvision

        torch.manual_seed(0)
        net = torchvision.models.resnet18(weights=None).eval().to(device)
        shape = (3, imagenet, imagenet)
        u = next(u for u in units(net, shape) if u.name == "layer1.0")
        x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0)).to(device)
        out.append((f"resnet18 layer1.0 {imagenet}x{imagenet}", u,
                    capture(net, x, [u]).inputs[u.name][0]))
    return out


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |Δ| between the values of two solves relative to the largest |value| (0 where
    both are all exact zeros): σ in order; eigenvalues matched, a value matching its conjugate
    too (k may cut a pair)."""
    scale = max(np.abs(a).max(), np.abs(b).max())
    if not np.iscomplexobj(a):
        return float(np.abs(a - b).max() / scale) if scale else 0.0
    cost = np.minimum(np.abs(a[:, None] - b[None, :]), np.abs(a[:, None] - b[None, :].conj()))
    i, j = linear_sum_assignment(cost)
    return float(cost[i, j].max() / scale) if scale else 0.0


def _reference(op, problem: str) -> np.ndarray:
    """LAPACK's answer to one of G_PROBLEMS from the dense matrix (float64, CPU)."""
    dense = op.dense().cpu().double().numpy()
    if problem.startswith("sigma"):
        return np.linalg.svd(dense, compute_uv=False)[:TOP_K]
    lam = np.linalg.eigvals(dense)
    key = -lam.real if "LR" in problem else lam.real
    return lam[np.argsort(key, kind="stable")[:6]]


def part_g(model: nn.Module, width: int, device: torch.device, imagenet: int | None, repeat: int,
           dense_max: int = 4096) -> list[dict]:
    """Block against ARPACK on each unit of :func:`g_units`, the least seconds of ``repeat``
    solves each (block and ARPACK taking turns), after one untimed solve of each method
    (first-call set-up)."""
    rows = []
    for i, (name, u, x) in enumerate(g_units(model, width, device, imagenet)):
        op = unit_jacobian(u, x)
        if i == 0:
            for method in ("block", "arpack"):
                singular_values(op, k=2, method=method)
        for problem, solve in G_PROBLEMS:
            row: dict = {"unit": name, "n": op.shape[1], "problem": problem}
            values = {}
            for method in ("block", "arpack") * repeat:  # interleaved: a busy spell hits both
                res, seconds = timed(lambda op=op, m=method, s=solve: s(op, m))
                row[f"{method}_s"] = min(seconds, row.get(f"{method}_s", seconds))
                row[f"{method}_matvecs"], row[f"{method}_converged"] = res.matvecs, res.converged
                values[method] = res.values
            row["max_rel_diff"] = _difference(values["block"], values["arpack"])
            if op.shape[1] <= dense_max:
                ref = _reference(op, problem)
                for method in ("block", "arpack"):
                    row[f"{method}_vs_lapack"] = _difference(values[method], ref)
            rows.append(row)
            print(f"[g] {name} {problem}: block {row['block_s']:.2f}s "
                  f"({row['block_matvecs']} products), arpack {row['arpack_s']:.2f}s "
                  f"({row['arpack_matvecs']}), max rel diff {row['max_rel_diff']:.1e}", flush=True)
    return rows


def print_g(g: list[dict], device: str) -> None:
    print(f"\n(g) block solver against ARPACK on {device}: seconds, products, max |Δ|/max|value|")
    print(f"{'unit':>30} {'n':>7} {'problem':>14} {'block s':>8} {'products':>8} {'arpack s':>9} "
          f"{'products':>8} {'arpack/block':>12} {'max rel diff':>12} {'vs LAPACK (b, a)':>18}")
    for r in g:
        lapack = (f"{r['block_vs_lapack']:.1e}, {r['arpack_vs_lapack']:.1e}"
                  if "block_vs_lapack" in r else "-")
        ok = "" if r["block_converged"] and r["arpack_converged"] else " (not converged)"
        print(f"{r['unit']:>30} {r['n']:>7} {r['problem']:>14} {r['block_s']:>8.2f} "
              f"{r['block_matvecs']:>8} {r['arpack_s']:>9.2f} {r['arpack_matvecs']:>8} "
              f"{r['arpack_s'] / r['block_s']:>11.2f}x {r['max_rel_diff']:>12.1e} "
              f"{lapack:>18}{ok}")


def print_tables(ab: list[dict], c: list[dict], d: dict | None, e: list[dict], f: list[dict],
                 ) -> None:
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
        print(f"{'width':>6} {'precision':>9} {'J GiB':>7} {'path GiB':>9} {'ratio':>6} "
              f"{'process peak GiB':>17}")
        for r in c:
            print(f"{r['width']:>6} {r['precision']:>9} {r['jacobian_gib']:>7.2f} "
                  f"{r['dense_path_gib']:>9.2f} {r['ratio']:>5.2f}x {r['peak_gib']:>17.2f}")
    if d:
        print_whole(d)
    if e:
        print("\n(e) products per image: one image at a time against a batch (ms per image)")
        print(f"{'model':>16} {'unit':>11} {'width':>6} {'precision':>9} {'alone':>8} "
              f"{'batched':>8} {'gain':>6}")
        for r in e:
            print(f"{r['model']:>16} {r['unit']:>11} {r['width']:>6} {r['precision']:>9} "
                  f"{r['one_s'] * 1e3:>8.1f} {r['batched_s'] * 1e3:>8.1f} {r['gain']:>5.2f}x")
    if f:
        print("\n(f) max |Δσ|/σ_max against float64, and whether every bin count is the same")
        for r in f:
            print(f"{r['width']:>6} kept {r['kept_rows']:>6}: all float32 "
                  f"{r['all_float32_max_rel_diff']:.1e} (bins same: {r['all_float32_bins_equal']}),"
                  f" float32 products {r['float32_products_max_rel_diff']:.1e} (bins same: "
                  f"{r['float32_products_bins_equal']})")


def print_whole(d: dict) -> None:
    """The whole-network table: per kind and in all, each precision against the floor sum."""
    df = pd.DataFrame(d["rows"])
    precisions = d["precisions"]
    print(f"\n(d) whole network on {d['device']}: {len(df)} parts, all values by dense, seconds")
    cols = [f"{p}_s" for p in precisions] + (["floor"] if "floor" in df else [])
    by_kind = df.groupby("kind")[cols].sum()
    by_kind.loc["all"] = df[cols].sum()
    by_kind.insert(0, "parts", df.groupby("kind").size().reindex(by_kind.index).fillna(len(df)))
    if "floor" in df:
        for p in precisions:
            by_kind[f"{p}/floor"] = by_kind[f"{p}_s"] / by_kind["floor"]
    print(by_kind.round(2).to_string())
    phases = [f"{p}_{k}" for p in [*precisions, "floor"] for k in ("build", "gram", "eigensolve")
              if f"{p}_{k}" in df]
    print("\n    phases summed over the parts (s):")
    print("    " + df[phases].sum().round(1).to_string().replace("\n", "\n    "))
    for p in precisions[1:]:
        print(f"    {p} against {precisions[0]}: max |Δσ|/σ_max {df[f'{p}_max_rel_diff'].max():.1e}, "
              f"bins equal in {int(df[f'{p}_bins_equal'].sum())} of {len(df)} parts")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="a,b,c,d,e,f,g",
                   help="comma-separated subset of a,b,c,d,e,f,g")
    p.add_argument("--widths", default=",".join(map(str, WIDTHS)))
    p.add_argument("--naive-max", type=int, default=16384,
                   help="skip the naive baseline above this width (it is slow)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--repeat", type=int, default=2,
                   help="time resdyn, floor and arpack this many times and keep the minimum")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--precision", default="float64,float32",
                   help="(c), (d): the products' precisions; in (d) the first is the reference")
    p.add_argument("--device", default="cpu", help="(d), (e) and (g) run here, e.g. cuda")
    p.add_argument("--imagenet", action="store_true",
                   help="(g): also ResNet-18 layer1.0 at 224x224 (200704 wide; for a GPU)")
    p.add_argument("--imagenet-size", type=int, default=224,
                   help="(g) with --imagenet: the input size (e.g. 128 on a CPU: 65536 wide)")
    p.add_argument("--no-floor", action="store_true", help="(d) without the floors")
    p.add_argument("--only", type=int, default=None, help="(d): the first N parts only")
    p.add_argument("--models", default="digits-resnet56,digits-resnet110",
                   help="(e): shipped digits models")
    p.add_argument("--child-memory", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child_memory:
        child_memory(args.child_memory, args.precision.split(",")[0])
        return
    parts, widths = set(args.parts.split(",")), [int(w) for w in args.widths.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"cuda={torch.cuda.is_available()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()}", flush=True)
    device = torch.device(args.device)
    if device.type != "cpu" and parts & {"a", "b", "c", "f"}:
        p.error("parts a, b, c and f run on the CPU only; use --parts d,e,g with --device")
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}", flush=True)
    model = calibrated_resnet56()
    ab = part_a_b(model, widths, args.naive_max, parts, args.repeat) if parts & {"a", "b"} else []
    c = part_c(widths, args.precision.split(",")) if "c" in parts else []
    d = (part_d(model, args.precision.split(","), device, not args.no_floor, args.only)
         if "d" in parts else None)
    e = part_e(args.models.split(","), device) if "e" in parts else []
    f = part_f(model, widths) if "f" in parts else []
    g = (part_g(model, max(widths), device, args.imagenet_size if args.imagenet else None,
                args.repeat) if "g" in parts else [])
    print_tables(ab, c, d, e, f)
    if g:
        print_g(g, str(device))
    print(f"\nload average at the end {os.getloadavg()} (the CPU is shared with other work)")
    if args.json:
        args.json.write_text(json.dumps({"a_b": ab, "c": c, "d": d, "e": e, "f": f, "g": g},
                                        indent=2, default=str))


if __name__ == "__main__":
    main()
