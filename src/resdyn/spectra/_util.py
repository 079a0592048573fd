"""Shared helpers of the spectral solvers: product counting and exact-zero-row deflation."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..operators.base import LinearOperator, restrict


class Counted(LinearOperator):
    """Wraps an operator and counts products (one per vector; a block of k counts k).

    A solver makes its own instance for one solve; the count is what it reports as matvecs.
    """

    def __init__(self, op: LinearOperator):
        self.op, self.count = op, 0
        self.shape, self.dtype, self.device = op.shape, op.dtype, op.device
        self.zero_rows = op.zero_rows

    def matmat(self, v: Tensor) -> Tensor:
        self.count += v.shape[1]
        return self.op.matmat(v)

    def rmatmat(self, w: Tensor) -> Tensor:
        self.count += w.shape[1]
        return self.op.rmatmat(w)

    def matvec(self, v: Tensor) -> Tensor:
        self.count += 1
        return self.op.matvec(v)

    def rmatvec(self, w: Tensor) -> Tensor:
        self.count += 1
        return self.op.rmatvec(w)

    def chunk_size(self) -> int:
        return self.op.chunk_size()


def drop_zero_rows(op: LinearOperator) -> tuple[LinearOperator, int]:
    """(J restricted to the rows not known to be zero, number of rows dropped)."""
    if op.zero_rows is None:
        return op, 0
    killed = int(op.zero_rows.sum())
    if killed == 0:
        return op, 0
    return restrict(op, rows=~op.zero_rows.to(op.device)), killed


def check_which(which: str, valid: tuple[str, ...]) -> None:
    if which not in valid:
        raise ValueError(f"unknown which={which!r}; valid: {', '.join(valid)}")


def select_singular(values: np.ndarray, k: int | None, which: str) -> np.ndarray:
    """Top-k ('largest') or bottom-k ('smallest') of descending values, kept descending."""
    if k is None or k >= len(values):
        return values
    return values[:k] if which == "largest" else values[len(values) - k:]


def as_numpy(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu").numpy()


def seeded_generator(seed: int | torch.Generator | None) -> np.random.Generator:
    """A numpy Generator from an int seed, a torch.Generator (its initial seed) or None (0)."""
    if isinstance(seed, torch.Generator):
        seed = seed.initial_seed()
    return np.random.default_rng(0 if seed is None else seed)
