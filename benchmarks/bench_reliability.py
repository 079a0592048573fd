"""Benchmark: runs lose nothing and never mix, measured on every study of the demo.

For each study of ``resdyn demo --quick`` (stability, identity, identity sweep, stiffness, ODE
examples, stable comparison), in its own process with one torch thread:

1. **reference**: one uninterrupted serial run; its wall time.
2. **kills**: runs killed with SIGKILL at a random moment (uniform over the reference's wall
   time, so anywhere from model loading to the last task), ``--kills`` times in a row, then run
   to the end by the same call; the tables must equal the reference's (bit for bit, timings
   left out: :mod:`resdyn.runs.compare`).
3. **a failing task**: one task of N made to raise: the run must keep the N−1 others, record
   the one in ``errors.parquet`` and exit 1; the next run (no failure) must run only that task
   and end with the reference's tables.
4. **Dask**: the same study on a LocalCluster of 2 one-thread workers: the same tables; its wall
   time.
5. **two writers**: a second run started into the folder while the first runs must be refused
   at once (exit 2, the folder's lock names the first); the first must end with the
   reference's tables.

After every resumed run, the folder must hold no leftovers: no half-written temporary file and
no lock still held.

Usage:
    python benchmarks/bench_reliability.py [--kills 4] [--studies 000-stability,...] [--seed 0]
                                           [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

# ---------------------------------------------------------------- the child: one study run


def child(folder: str, out: str, executor: str, fail: str | None) -> int:
    """Run one quick demo part into ``out``; exit 0, 1 when tasks failed, 2 when refused.

    ``fail``: the id of a task made to raise, or ``"slow"``: the first task sleeps 15 s first
    (a writer that surely still runs when a second one starts; its results are unchanged)."""
    import torch

    torch.set_num_threads(1)
    from resdyn.data import load_data
    from resdyn.models import load_model
    from resdyn.runs import Executor
    from resdyn.studies import run_study
    from resdyn.studies.demo import parts

    part = next(p for p in parts(quick=True) if p.folder == folder)
    study = part.study
    if fail is not None:  # the task with this key raises (or, "slow", the first one sleeps)
        def plan(ctx, original=study.plan):
            p = original(ctx)
            if fail == "slow":
                first = p.tasks[0]
                tasks = [replace(first, fn=_slow, kwargs={"fn": first.fn, **first.kwargs}),
                         *p.tasks[1:]]
            else:
                tasks = [replace(t, fn=_fail) if t.id == fail else t for t in p.tasks]
            return replace(p, tasks=tasks)

        study = replace(study, plan=plan)
    model = load_model(part.model) if part.model else None
    data = load_data(part.data, split="test") if part.data else None
    ex = Executor("dask", workers=2) if executor == "dask" else Executor("serial")
    from resdyn.runs import RunFolderError

    try:
        result = run_study(study, model, data, part.config, out, model_name=part.model,
                           executor=ex)
    except RunFolderError as e:
        print(e, file=sys.stderr)
        return 2
    return 1 if result.failed else 0


def _fail(**kwargs):
    raise RuntimeError("made to fail by bench_reliability")


def _slow(fn, **kwargs):
    time.sleep(15)
    return fn(**kwargs)


# ---------------------------------------------------------------- the parent: the measurements

def _start(folder: str, out: Path, executor: str = "serial", fail: str | None = None,
           ) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--child", folder, str(out), executor, fail or ""]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _run(folder: str, out: Path, executor: str = "serial", fail: str | None = None,
         kill_after: float | None = None) -> tuple[int | None, float]:
    """Start a child; kill it with SIGKILL after ``kill_after`` s (None: let it finish).

    Returns (exit status, or None when killed; wall seconds).
    """
    start = time.perf_counter()
    proc = _start(folder, out, executor, fail)
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child and any Dask workers it started
        proc.wait()
        return None, time.perf_counter() - start
    if proc.returncode not in (0, 1, 2):  # 2: refused (a second writer)
        raise RuntimeError(f"{folder}: the run failed ({proc.returncode}):\n{proc.stderr.read()}")
    return proc.returncode, time.perf_counter() - start


def _tasks(out: Path) -> list[str]:
    """Ids (analysis/key) of the tasks stored in a run folder."""
    return sorted(f"{p.parent.name}/{p.stem}" for p in (out / "tasks").rglob("*.parquet"))


def _leftovers(out: Path) -> list[str]:
    """Half-written temporary files, and the folder's lock if a process still holds it."""
    from resdyn.runs import RunFolderError
    from resdyn.runs.folder import locked

    found = [str(p.relative_to(out)) for p in out.rglob(".*.tmp")]
    try:
        with locked(out):
            pass
    except RunFolderError:
        found.append("run.lock (held)")
    return found


PARTS = ("kills", "failing", "dask", "writers")


def measure(folder: str, root: Path, kills: int, rng: random.Random,
            parts: tuple[str, ...] = PARTS) -> dict:
    ref = root / folder / "reference"
    status, ref_s = _run(folder, ref)
    assert status == 0, f"{folder}: the reference run failed"
    tasks = _tasks(ref)
    row = {"study": folder, "tasks": len(tasks), "reference_s": round(ref_s, 1)}

    if "kills" in parts:
        row.update(_kills(folder, root, ref, ref_s, kills, rng))
    if "failing" in parts:
        row.update(_failing(folder, root, ref, tasks, rng))
    if "dask" in parts:
        row.update(_dask(folder, root, ref))
    if "writers" in parts:
        row.update(_writers(folder, root, ref))
    return row


def _kills(folder: str, root: Path, ref: Path, ref_s: float, kills: int,
           rng: random.Random) -> dict:
    """Kills at random moments, then the same call to the end."""
    from resdyn.runs.compare import folder_differences

    killed, attempts, same, stored = 0, 0, True, []
    out = root / folder / "killed"
    while killed < kills and attempts < 4 * kills:
        attempts += 1
        status, _ = _run(folder, out, kill_after=rng.uniform(0.05, 1.0) * ref_s)
        if status is None:
            killed += 1
            stored.append(len(_tasks(out)) if (out / "tasks").is_dir() else 0)
            continue
        # finished before the kill: compare, and start the next round from scratch
        same &= folder_differences(ref, out) == {}
        shutil.rmtree(out)
    status, _ = _run(folder, out)
    same &= status == 0 and folder_differences(ref, out) == {}
    return dict(kills=killed, stored_at_kills="/".join(map(str, stored)),
                killed_then_same=same, leftovers=len(_leftovers(out)))


def _failing(folder: str, root: Path, ref: Path, tasks: list[str], rng: random.Random) -> dict:
    """One task of N fails, the others are kept; the next run runs only that one (the victim
    is not a training task: the analyses of its network would rightly not run)."""
    import pandas as pd

    from resdyn.runs.compare import folder_differences

    victim = rng.choice([t for t in tasks if not t.startswith("training/")])
    out = root / folder / "failing"
    status, _ = _run(folder, out, fail=victim)
    kept = len(_tasks(out))
    errors = pd.read_parquet(out / "errors.parquet") if (out / "errors.parquet").is_file() else []
    status_after, _ = _run(folder, out)
    return dict(failing_exit=status, kept=kept, errors=len(errors),
                after_retry_same=status_after == 0 and folder_differences(ref, out) == {})


def _dask(folder: str, root: Path, ref: Path) -> dict:
    """A LocalCluster of 2 one-thread workers against the serial reference."""
    from resdyn.runs.compare import folder_differences

    out = root / folder / "dask"
    status, dask_s = _run(folder, out, executor="dask")
    return dict(dask_s=round(dask_s, 1),
                dask_same=status == 0 and folder_differences(ref, out) == {})


def _writers(folder: str, root: Path, ref: Path) -> dict:
    """A second writer while the first (slowed, see child) runs: refused at once; the first
    ends with the reference's tables."""
    from resdyn.runs.compare import folder_differences

    out = root / folder / "two-writers"
    first = _start(folder, out, fail="slow")
    while not (out / "run.json").is_file() and first.poll() is None:
        time.sleep(0.02)
    start = time.perf_counter()
    second, _ = _run(folder, out)
    refused_s = time.perf_counter() - start
    first.wait()
    return dict(second_writer_exit=second, refused_in_s=round(refused_s, 1),
                first_writer_same=first.returncode == 0 and folder_differences(ref, out) == {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=4, help="SIGKILLs per study")
    parser.add_argument("--studies", default=None, help="demo folders (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    parser.add_argument("--parts", default=",".join(PARTS), help="of " + ", ".join(PARTS))
    args = parser.parse_args()
    from resdyn.studies.demo import parts

    folders = args.studies.split(",") if args.studies else [p.folder for p in parts(quick=True)]
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for folder in folders:
            rows.append(measure(folder, Path(tmp), args.kills, rng,
                                tuple(args.parts.split(","))))
            print(json.dumps(rows[-1]), flush=True)
    cols = ["study", "tasks", "reference_s", "kills", "stored_at_kills", "killed_then_same",
            "leftovers", "failing_exit", "kept", "errors", "after_retry_same", "dask_s",
            "dask_same", "second_writer_exit", "refused_in_s", "first_writer_same"]
    cols = [c for c in cols if any(c in r for r in rows)]
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    print(f"\nkills in all: {sum(r.get('kills', 0) for r in rows)}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] or None))
    main()
