"""Benchmark: the stiffness study serial against a Dask cluster whose client is reused, side by
side in one run, and what a Dask task costs beyond its computation.

(a) ``stiffness`` on ``--model`` (digits-resnet56) with ``--images`` N (one task per image):
    the serial run (this process, one torch thread) and the run on a local cluster of
    ``--workers`` processes (one thread each) through one ``dask.distributed.Client`` made
    beforehand and passed as ``executor=client``. The cluster's start is timed apart; a
    one-image run on the client warms its workers first (what every later run of a notebook
    finds), so the timed run pays neither. Prints both walls and serial / dask.
(b) Per-task overhead: ``--trivial`` tasks that do nothing (a one-row table) through
    ``run_tasks``, serial and on the same client: seconds per task of each. The serial figure
    is resdyn's own bookkeeping per task (storing the row as a Parquet file with its proof,
    progress); the Dask figure adds shipping, scheduling and the return trip.
(c) Wall minus compute of run (a): the tasks' own seconds (``seconds`` column of the table,
    summed) divided by the workers, against the wall: the part of the wall that is not
    computation, per task.

Usage:
    python benchmarks/bench_dask.py [--images 48] [--workers 2] [--model digits-resnet56]
                                    [--trivial 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import pandas as pd


def nothing(i: int) -> pd.DataFrame:
    """A task that computes nothing: what is left of its time is overhead."""
    return pd.DataFrame({"i": [i]})


def _trivial(n: int, executor) -> float:
    from resdyn.runs import Task, TaskStore, run_tasks

    tasks = [Task("nothing", f"t{i}", nothing, {"i": i}) for i in range(n)]
    store = TaskStore(tempfile.mkdtemp(prefix="bench-dask-"))
    t0 = time.perf_counter()
    stats = run_tasks(tasks, store, executor)
    wall = time.perf_counter() - t0
    assert stats.ran == n, stats
    return wall / n


def _stiffness(model, data, images: int, executor, threads: int = 1):
    from resdyn.studies import STIFFNESS, StiffnessConfig, run_study

    t0 = time.perf_counter()
    r = run_study(STIFFNESS, model, data, StiffnessConfig(images=images), None,
                  executor=executor, threads=threads)
    wall = time.perf_counter() - t0
    assert r.failed == 0, r.errors["message"].tolist()
    return r, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default="digits-resnet56")
    parser.add_argument("--trivial", type=int, default=200)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import shutil

    import torch
    from dask.distributed import Client

    from resdyn import load_data, load_model
    from resdyn.runs import local_cluster
    from resdyn.runs.compare import table_differences

    torch.set_num_threads(1)
    model, data = load_model(args.model), load_data("digits")
    serial, t_serial = _stiffness(model, data, args.images, "serial")

    t0 = time.perf_counter()
    cluster = local_cluster(args.workers)  # as resdyn starts one
    client = Client(cluster)
    t_start = time.perf_counter() - t0
    try:
        warm, t_warm = _stiffness(model, data, 2, client)  # the workers' first tasks
        dask, t_dask = _stiffness(model, data, args.images, client)
        per_serial = _trivial(args.trivial, "serial")
        per_dask = _trivial(args.trivial, client)
    finally:
        client.close()
        cluster.close()

    table = "stiffness"
    same = table_differences(serial.tables[table], dask.tables[table]) == []
    compute = float(dask.tables[table]["seconds"].sum()) if "seconds" in dask.tables[table] \
        else float("nan")
    tasks = dask.stats.total
    ideal = compute / args.workers
    result = {
        "model": args.model, "images": args.images, "workers": args.workers, "tasks": tasks,
        "cpus": os.cpu_count(), "serial_s": round(t_serial, 2), "dask_s": round(t_dask, 2),
        "speedup": round(t_serial / t_dask, 2), "cluster_start_s": round(t_start, 2),
        "warm_up_run_s": round(t_warm, 2), "tables_equal": same,
        "trivial_tasks": args.trivial, "per_task_serial_ms": round(1e3 * per_serial, 2),
        "per_task_dask_ms": round(1e3 * per_dask, 2),
        "task_compute_s": round(compute, 2),
        "serial_task_compute_s": round(float(serial.tables[table]["seconds"].sum()), 2),
        "wall_minus_compute_per_worker_s": round(t_dask - ideal, 2),
        "overhead_per_task_ms": round(1e3 * (t_dask - ideal) * args.workers / tasks, 1),
    }
    print(f"stiffness on {args.model}, {args.images} images ({tasks} tasks), "
          f"{os.cpu_count()} CPUs, one torch thread per process")
    print(f"  serial                      {t_serial:8.2f} s")
    print(f"  dask, {args.workers} workers, reused client {t_dask:8.2f} s   "
          f"(cluster start {t_start:.2f} s and a warm-up run {t_warm:.2f} s not counted)")
    print(f"  serial / dask               {t_serial / t_dask:8.2f} x   tables equal: {same}")
    print(f"  trivial task: serial {1e3 * per_serial:.2f} ms, dask {1e3 * per_dask:.2f} ms "
          f"per task ({args.trivial} tasks)")
    print(f"  tasks' own compute {compute:.2f} s, /{args.workers} = {ideal:.2f} s; wall minus "
          f"that: {t_dask - ideal:.2f} s ({result['overhead_per_task_ms']} ms per task and "
          "worker)")
    print(f"  the same tasks' compute in the serial run: {result['serial_task_compute_s']:.2f} s "
          "(more on the workers: they share the cores with each other and anything else)")
    for r in (serial, warm, dask):
        shutil.rmtree(r.out, ignore_errors=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
