"""Thread policies side by side, on a quiet machine and beside one competing 2-thread BLAS job.

Policies: ``auto`` (resdyn's default: one thread, the free cores for blocks 4096 wide or more;
see resdyn._threads), ``1`` and ``N`` (every phase on that many threads; N = the cores, torch's
own default). Work:

- ``digits``: the stability study of the shipped digits-resnet56 (``--images`` images, every
  task: spectra of all units and stages, propagation, projections, skip scaling, interpolation),
  as `resdyn stability` runs it;
- ``cifar``: all singular values of one unit of a CIFAR-shaped ResNet-56 (random weights,
  BatchNorm statistics from random images: see bench_spectra.py), 4096 wide (stage 3) and, with
  ``--wide``, 8192 wide (stage 2): products, Gram and eigensolve.

Every (work, policy, condition) runs in one process after the other in this run, so the ratios
compare like with like. Usage: python benchmarks/bench_threads.py [--images 5] [--wide]
[--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from resdyn import load_data, load_model  # noqa: E402
from resdyn._threads import CORES  # noqa: E402
from resdyn.operators import unit_jacobian  # noqa: E402
from resdyn.runs import RunContext  # noqa: E402
from resdyn.runs.context import using  # noqa: E402
from resdyn.spectra import singular_values  # noqa: E402
from resdyn.studies import STABILITY, StabilityConfig, run_study  # noqa: E402

COMPETITOR = ("import numpy as np\n"
              "a = np.random.default_rng(0).random((1500, 1500))\n"
              "while True:\n"
              "    a @ a\n")


def competitor() -> subprocess.Popen:
    """One competing job: a 2-thread BLAS matrix product loop."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2",
           "MKL_NUM_THREADS": "2"}
    proc = subprocess.Popen([sys.executable, "-c", COMPETITOR], env=env)
    time.sleep(1.0)  # let it start
    return proc


def digits(threads: int | None, images: int) -> float:
    model, data = load_model("digits-resnet56"), load_data("digits")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_study(STABILITY, model, data, StabilityConfig(images=images), Path(tmp) / "run",
                  model_name="digits-resnet56", threads=threads)
        return time.perf_counter() - t0


def cifar_units(wide: bool) -> list[tuple[str, object, torch.Tensor]]:
    from bench_spectra import calibrated_resnet56, unit_of_width  # as part (d)

    model = calibrated_resnet56()
    picks = [unit_of_width(model, w) for w in ((4096, 8192) if wide else (4096,))]
    return [(u.name, u, x) for u, x in picks]


def cifar(threads: int | None, unit, x: torch.Tensor) -> float:
    with using(RunContext(threads=threads)):
        t0 = time.perf_counter()
        singular_values(unit_jacobian(unit, x), method="dense")
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5)
    ap.add_argument("--wide", action="store_true", help="also the 8192-wide CIFAR unit")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--work", default="digits,cifar")
    args = ap.parse_args()
    policies = {"auto": None, "1": 1, str(CORES): CORES}
    work = args.work.split(",")
    cases = []
    if "digits" in work:
        cases.append((f"digits stability, {args.images} images",
                      lambda t: digits(t, args.images)))
    if "cifar" in work:
        for name, unit, x in cifar_units(args.wide):
            cases.append((f"CIFAR {name} ({unit.n_in} wide), all values",
                          lambda t, unit=unit, x=x: cifar(t, unit, x)))
    rows = []
    if "digits" in work:
        digits(None, 2)  # warm-up: imports, the first load of the model, the first JVPs
    for label, fn in cases:
        for condition in ("quiet", "beside a 2-thread BLAS job"):
            proc = competitor() if condition != "quiet" else None
            try:
                for policy, threads in policies.items():
                    seconds = fn(threads)
                    rows.append({"work": label, "condition": condition, "policy": policy,
                                 "seconds": seconds})
                    print(f"{label} | {condition} | threads {policy}: {seconds:.1f} s",
                          flush=True)
            finally:
                if proc is not None:
                    proc.kill()
                    proc.wait()
                    time.sleep(1.5)  # the automatic policy looks at the last second
    print("\n| work | policy | quiet s | loaded s | loaded / quiet | quiet / best quiet |")
    print("|---|---|---:|---:|---:|---:|")
    for label, _ in cases:
        quiet = {r["policy"]: r["seconds"] for r in rows
                 if r["work"] == label and r["condition"] == "quiet"}
        loaded = {r["policy"]: r["seconds"] for r in rows
                  if r["work"] == label and r["condition"] != "quiet"}
        best = min(quiet.values())
        for policy in policies:
            print(f"| {label} | {policy} | {quiet[policy]:.1f} | {loaded[policy]:.1f} | "
                  f"{loaded[policy] / quiet[policy]:.2f}× | {quiet[policy] / best:.2f}× |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
