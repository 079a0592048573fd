"""What the model benchmarks (bench_vit.py, bench_lm.py) share: wall time synchronised with the
device, and the device, threads and banner of a run. Run the benchmarks as scripts
(``python benchmarks/bench_lm.py``): their folder is then on the import path."""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from typing import Any

import torch


def synced(device: torch.device) -> float:
    """time.perf_counter() once the device's queued work has finished."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def timed(device: torch.device, fn: Callable[..., Any], *args: Any,
          **kwargs: Any) -> tuple[float, Any]:
    """(seconds, result) of ``fn(*args, **kwargs)`` on ``device``, its queued work included."""
    t = synced(device)
    result = fn(*args, **kwargs)
    return synced(device) - t, result


def add_device_options(p: argparse.ArgumentParser) -> None:
    """--device and --threads."""
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


def device_of(args: argparse.Namespace) -> tuple[torch.device, str]:
    """The run's device and its name (the card, or the CPU), with --threads applied."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return device, name or "cpu"
