"""What the image and the language-model training loops share (:mod:`resdyn.train`,
:mod:`resdyn.train_lm`): the progress callback, the records of a run, the divergence error,
the warm-up + cosine schedule and the shuffled batches."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

Progress = Callable[[int, int, int, float], None]
"""progress(epoch, step, total_steps, loss): epoch 1-based; step 1-based and counted over the
whole run (so step == total_steps at the end); loss of the batch just taken."""


class TrainingDiverged(ValueError):
    """Training stopped: the loss (or the weights) stopped being finite. Nothing is saved.

    Example:
        >>> str(TrainingDiverged(float("inf"), 3, 30, 1e12))  # doctest: +ELLIPSIS
        'training diverged: the loss is inf at epoch 3 of 30 (learning rate 1e+12)...'
    """

    def __init__(self, value: float, epoch: int, epochs: int, lr: float, what: str = "") -> None:
        what = what or f"the loss is {value}"
        super().__init__(f"training diverged: {what} at epoch {epoch} of {epochs} (learning "
                         f"rate {lr:g}); no checkpoint was written. Train with a smaller "
                         "learning rate (--lr)")


@dataclass(frozen=True)
class EpochRecord:
    """Statistics of one training epoch (test figures are None without test data)."""

    epoch: int
    train_loss: float
    train_accuracy: float
    lr: float
    test_accuracy: float | None
    test_loss: float | None
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`: final-epoch figures, wall time and the per-epoch history."""

    train_loss: float
    test_accuracy: float | None
    test_loss: float | None
    seconds: float
    history: tuple[EpochRecord, ...] = field(repr=False)


def warmup_cosine(opt: torch.optim.Optimizer, warmup: int, total: int
                  ) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step learning-rate factor: linear warm-up over ``warmup`` steps, then a cosine decay
    to zero at step ``total``."""
    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(opt, schedule)


def batches(n: int, batch_size: int, gen: torch.Generator) -> list[Tensor]:
    """Shuffled index batches of ``batch_size`` (``gen`` draws the order); a last batch of one
    example is dropped."""
    order = torch.randperm(n, generator=gen)
    parts = list(order.split(batch_size))
    if len(parts) > 1 and len(parts[-1]) < 2:  # BatchNorm cannot train on a single image
        parts.pop()
    return parts
