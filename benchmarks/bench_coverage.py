"""Measured coverage of unit discovery over torchvision's classifiers and one model per timm family.

Models: every torchvision classification model (``torchvision.models.list_models(module=
torchvision.models)``; family: the torchvision module that defines it) and, per timm family (the
timm module that registers the model), the variant with the fewest parameters, timm's ``test_*``
models left out: every model of the family is built on the ``meta`` device (no memory, no init)
to count its parameters (torchvision's: its weights' metadata). Random weights, one image at the
model's default input size (timm: ``pretrained_cfg["input_size"]``; torchvision: the crop size
of the default weights' transforms, else 224). Each model runs in its own forked process with a
time limit, one torch thread; models above ``--max-params`` are skipped (listed, not built).
Per model:

- adds: additions (``+``, ``+=``, ``torch.add``, ``Tensor.add``/``add_``) of two tensors of the
  same shape in one forward pass, seen by a TorchFunctionMode; "of x": those whose two operands
  both depend on the input image (not ``x + pos_embed`` or an attention bias), each attributed
  to the innermost module running, and to its first call or a later one;
- found (verified): the steps ``resdyn.models.discover.discover`` finds in every module, and
  those in modules whose steps reproduce the module's output;
- units: ``resdyn.units(model, shape)`` and its seconds (NoUnitsFound, ValueError: the message);
- false units: per module with units, the units' parts run in step order from the module's
  recorded input must give its recorded output (units() checks the same; counted on its own).

Covered: every addition of x is a verified step of its module, or its module's report says why
it is not x + f(x) (no addition is x + f(x), re-parameterisable parallel branches, a second
input computed by the caller; a later call inherits its first call's reason). Any other reason
(steps that do not reproduce the output, more computed after the last step, a residual module
called again: one unit for several uses, an addition inside a verified module that is none of
its steps, ...) leaves an addition "missed".

Usage:
    python benchmarks/bench_coverage.py --json coverage.json     # ~14 min on 2 cores
    python benchmarks/bench_coverage.py --only resnet18 --only vit_tiny_patch16_224
    python benchmarks/bench_coverage.py --max-params 30e6 --timeout 120
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import sys
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import timm  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import Tensor  # noqa: E402
from torch.nn.modules.module import (  # noqa: E402
    register_module_forward_hook,
    register_module_forward_pre_hook,
)
from torch.overrides import TorchFunctionMode  # noqa: E402

import resdyn  # noqa: E402
from resdyn.models.discover import discover  # noqa: E402

ADDS = {torch.add, Tensor.add, Tensor.add_, Tensor.__add__, Tensor.__radd__, Tensor.__iadd__}
#: reasons of discovery that say an addition is not x + f(x) (anything else is a miss)
NOT_RESIDUAL = ("not x + f(x)", "no addition is x + f(x)", "second tensor computed from its caller's",
                "part of a step's branch")
AGAIN = "(a module's second call: only the first is analysed)"
#: an addition in a module with verified steps that is none of them: inside a step's branch
#: (Res2Net's hierarchical sums, EdgeNeXt's split sums), part of f, not a step of its own
EXTRA = "(part of a step's branch: an inner sum of f in a module with verified steps)"


# ---------------------------------------------------------------- the models

def _params(build) -> int:
    """The parameters of ``build()``, built on the meta device (on the CPU if that fails)."""
    try:
        with torch.device("meta"):
            return sum(p.numel() for p in build().parameters())
    except Exception:  # code that reads a tensor's values while it builds
        return sum(p.numel() for p in build().parameters())


def torchvision_models(only: list[str] | None) -> list[dict]:
    out = []
    for name in torchvision.models.list_models(module=torchvision.models):
        if only and name not in only:
            continue
        family = torchvision.models.get_model_builder(name).__module__.rsplit(".", 1)[-1]
        weights = torchvision.models.get_model_weights(name).DEFAULT
        crop = getattr(weights.transforms(), "crop_size", [224])[0]
        out.append({"library": "torchvision", "model": name, "family": family,
                    "params": weights.meta["num_params"],
                    "input": [3, crop, crop]})
    return out


def timm_models(only: list[str] | None) -> list[dict]:
    out = []
    for family in timm.list_modules():
        names = [n for n in timm.list_models(module=family) if not n.startswith("test_")]
        if only:  # the named models themselves, not the family's smallest
            names = [n for n in timm.list_models(module=family) if n in only]
        if not names:
            continue
        counts = {n: _params(lambda n=n: timm.create_model(n, pretrained=False)) for n in names}
        name = min(names, key=lambda n: (counts[n], n))
        out.append({"library": "timm", "model": name, "family": family, "params": counts[name],
                    "input": list(timm.get_pretrained_cfg(name).input_size),
                    "family_models": len(names)})
    return out


def build(m: dict) -> torch.nn.Module:
    if m["library"] == "timm":
        return timm.create_model(m["model"], pretrained=False)
    return torchvision.models.get_model(m["model"], weights=None)


# ---------------------------------------------------------------- (a) additions in one pass

class AddCounter(TorchFunctionMode):
    """Same-shape additions, whether both operands depend on the input, and the innermost module
    running at each: (its path, whether this is its first call)."""

    def __init__(self, model: torch.nn.Module, x: Tensor):
        super().__init__()
        self.paths = {id(m): n for n, m in model.named_modules()}
        self.stack: list[str] = []
        self.called: set[int] = set()
        self.computed, self.keep = {id(x)}, [x]  # kept alive: ids are never reused
        self.adds = 0
        self.of_x: Counter[tuple[str, bool]] = Counter()

    def pre(self, module, args):
        first = id(module) not in self.called
        self.called.add(id(module))
        self.stack.append((self.paths.get(id(module), "?"), first))

    def post(self, module, args, out):
        self.stack.pop()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if any(id(t) in self.computed for t in _tensors((args, kwargs))):
            for t in _tensors(out):
                self.computed.add(id(t))
                self.keep.append(t)
        ops = [*args[:2], kwargs.get("other")][:2]
        if func in ADDS and all(isinstance(t, Tensor) for t in ops) and ops[0].shape == ops[1].shape:
            self.adds += 1
            if all(id(t) in self.computed for t in ops):
                self.of_x[self.stack[-1] if self.stack else ("", True)] += 1
        return out


def _tensors(value) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, tuple | list | dict):
        return [t for v in (value.values() if isinstance(value, dict) else value)
                for t in _tensors(v)]
    return []


def count_adds(model: torch.nn.Module, x: Tensor) -> AddCounter:
    counter = AddCounter(model, x)
    hooks = [register_module_forward_pre_hook(counter.pre),
             register_module_forward_hook(counter.post, always_call=True)]
    try:
        with counter, torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return counter


# ---------------------------------------------------------------- (d) units are true

def false_units(model: torch.nn.Module, us: list, x: Tensor) -> list[str]:
    """Modules whose units' parts, run in step order from the module's recorded input, do not
    give its recorded output."""
    by: dict[str, list] = defaultdict(list)
    for u in us:
        if u.parts is not None:
            by[u.path].append(u)
    seen: dict[str, tuple[Tensor, Tensor]] = {}

    def hook(path):
        def record(m, args, out):
            seen.setdefault(path, (args[0], out))
        return record

    handles = [model.get_submodule(p).register_forward_hook(hook(p)) for p in by]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    bad = []
    with torch.no_grad():
        for path, group in by.items():
            y, want = seen[path]
            for u in sorted(group, key=lambda u: u.step):
                y = u.parts(y)
            if y.shape != want.shape or not torch.allclose(y, want, rtol=1e-4, atol=1e-5):
                bad.append(path)
    return bad


# ---------------------------------------------------------------- one model, in its own process

def _reason(why: str) -> str:
    """A report's reason without its numbers and error details (to aggregate)."""
    why = re.sub(r" \(largest difference .*\)$", "", why)
    return re.sub(r"cannot be replayed \((\w+):.*$", r"cannot be replayed (\1)", why)


def measure(m: dict) -> dict:
    torch.manual_seed(0)
    model = build(m).eval()
    shape = tuple(m["input"])
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))
    counter = count_adds(model, x)
    reports = {r.path: r for r in discover(model, x).reports}
    out = {"adds": counter.adds, "adds_of_x": sum(counter.of_x.values()),
           "found": sum(r.steps for r in reports.values()),
           "verified": sum(r.steps for r in reports.values() if r.verified),
           "not_residual": defaultdict(Counter), "missed": defaultdict(Counter), "missed_at": []}
    modules = dict(model.named_modules())
    for (path, first), n in counter.of_x.items():  # each module's additions of x: taken, or why not
        r = reports.get(path)
        if not first and (r is None or r.verified):  # a residual module used twice: one unit
            why = AGAIN
        elif r is not None and r.verified:
            n -= min(n, r.steps)
            why = EXTRA
        else:
            why = _reason(r.why) if r is not None else "(no report)"
        if n:
            kind = "not_residual" if any(s in why for s in NOT_RESIDUAL) else "missed"
            cls = type(modules[path]).__name__ if path in modules else "?"
            out[kind][why][cls] += n
            if kind == "missed" and len(out["missed_at"]) < 3:
                out["missed_at"].append([path, cls, n, r.why if r and why != AGAIN else why])
    t0 = time.perf_counter()
    try:
        us = resdyn.units(model, shape)
    except ValueError as e:  # NoUnitsFound included
        out.update(seconds=time.perf_counter() - t0, units=0,
                   units_error=f"{type(e).__name__}: {e}"[:300], false_units=[])
        return out
    out.update(seconds=time.perf_counter() - t0, units=len(us), units_error="",
               false_units=false_units(model, us, x))
    return out


def _child(conn, m: dict) -> None:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    sys.stderr = open(os.devnull, "w")  # torch.fx prints each failed replay
    try:
        conn.send(measure(m))
    except BaseException as e:  # the model's own failure: reported, the sweep goes on
        conn.send({"error": f"{type(e).__name__}: {e}"[:300]})


def run_one(m: dict, timeout: float) -> dict:
    ctx = multiprocessing.get_context("fork")
    here, there = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(there, m))
    t0 = time.perf_counter()
    p.start()
    there.close()
    try:
        got = here.recv() if here.poll(timeout) else {"error": f"timeout ({timeout:.0f} s)"}
    except EOFError:
        got = {}
    p.join(1)
    if p.is_alive():
        p.kill()
        p.join()
    if not got:
        got = {"error": f"process died (exit code {p.exitcode})"}
    return {**m, **got, "wall": time.perf_counter() - t0}


# ---------------------------------------------------------------- table and summary

def row(r: dict) -> str:
    head = (f"| {r['library']} | {r['model']} | {r['family']} | {r['params'] / 1e6:.1f} | "
            f"{'×'.join(map(str, r['input'][1:]))} | ")
    if "skipped" in r or "error" in r:
        return head + f"| | | | | {r.get('skipped') or r['error']} |"
    note = []
    if r["false_units"]:
        note.append(f"FALSE units in {r['false_units']}")
    if r["units_error"]:
        note.append(r["units_error"].split(":")[0])
    if r["missed"]:
        note.append("missed " + "; ".join(f"{sum(c.values())}: {w}" for w, c in r["missed"].items()))
    units = r["units"] if not r["units_error"] else "-"
    return head + (f"{r['adds']} | {r['adds_of_x']} | {r['found']} ({r['verified']}) | {units} | "
                   f"{r['seconds']:.2f} | {'; '.join(note)} |")


def _total(reasons: dict) -> int:
    return sum(n for classes in reasons.values() for n in classes.values())


def summary(results: list[dict]) -> str:
    done = [r for r in results if "adds" in r]
    fams: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in done:
        fams[r["library"], r["family"]].append(r)
    with_adds = {f for f, rs in fams.items() if any(r["adds_of_x"] for r in rs)}
    residual = {f for f in with_adds
                if any(r["adds_of_x"] > _total(r["not_residual"]) for r in fams[f])}
    covered = {f for f in residual if not any(r["missed"] for r in fams[f])}
    lines = [f"models: {len(results)}; measured {len(done)}, failed "
             f"{sum('error' in r for r in results)}, skipped {sum('skipped' in r for r in results)}",
             f"families measured: {len(fams)}; with additions of x: {len(with_adds)}; with "
             f"additions discovery does not call 'not x + f(x)' (residual): {len(residual)}; "
             f"every such addition a verified step: {len(covered)}",
             f"false units: {sum(len(r['false_units']) for r in done)}; units() raised "
             f"ValueError (not NoUnitsFound): "
             f"{[r['model'] for r in done if r['units_error'].startswith('ValueError')]}",
             f"not covered: {sorted(f'{lib}/{f}' for lib, f in residual - covered)}"]
    for kind, title in (("not_residual", "additions of x not taken: not x + f(x), per discovery"),
                        ("missed", "additions of x missed (no 'not x + f(x)' reason)")):
        lines.append(f"\n{title}:")
        for (lib, fam), rs in sorted(fams.items()):
            c: dict[str, Counter] = defaultdict(Counter)
            for r in rs:
                for why, classes in r[kind].items():
                    c[why].update(classes)
            if c:
                lines.append(f"- {lib}/{fam}: " + "; ".join(
                    f"{sum(n.values())}× {w} ({', '.join(n)})" for w, n in c.items()))
    lines.append("\nmissed, where (module, class, additions, why):")
    lines += [f"- {r['model']}: {at}" for r in done for at in r["missed_at"]]
    lines.append("\nfailed: " + "; ".join(f"{r['model']}: {r['error']}" for r in results
                                          if "error" in r))
    lines.append("skipped: " + ", ".join(f"{r['model']} ({r['params'] / 1e6:.0f} M)"
                                         for r in results if "skipped" in r))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-params", type=float, default=350e6, help="skip models above this")
    ap.add_argument("--only", action="append", help="a model name (repeatable)")
    ap.add_argument("--library", choices=["timm", "torchvision"], help="only this library")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per model")
    ap.add_argument("--json", help="write every row here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    models = []
    if args.library != "timm":
        models += torchvision_models(args.only)
    if args.library != "torchvision":
        models += timm_models(args.only)
    print(f"{len(models)} models, chosen in {time.perf_counter() - t0:.0f} s", flush=True)
    print("| library | model | family | params M | input | adds | of x | steps found (verified) "
          "| units | units() s | note |\n|---|---|---|---:|---|---:|---:|---:|---:|---:|---|",
          flush=True)
    results = []
    for m in models:
        if m["params"] > args.max_params:
            r = {**m, "skipped": f"skipped: over {args.max_params / 1e6:.0f} M parameters"}
        else:
            r = run_one(m, args.timeout)
        results.append(r)
        print(row(r), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"\n{summary(results)}\nwall: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
