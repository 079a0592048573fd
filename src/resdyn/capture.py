"""Activations entering and leaving every residual unit for a batch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._torch import eval_mode
from .models.units import Unit


@dataclass(frozen=True)
class Activations:
    """Detached activations of one forward pass.

    Attributes:
        inputs: unit name -> (B, *unit.in_shape) tensor entering the unit.
        outputs: unit name -> (B, *unit.out_shape) tensor leaving the unit.
        logits: (B, num_classes) network output.
    """

    inputs: dict[str, Tensor]
    outputs: dict[str, Tensor]
    logits: Tensor


@contextmanager
def _hooks(units: Sequence[Unit], inputs: dict[str, Tensor], outputs: dict[str, Tensor],
           ) -> Iterator[None]:
    def make(name: str):
        def hook(m: nn.Module, args: tuple, out: Tensor) -> None:
            # clone: a later in-place op (ReLU(inplace=True)) must not rewrite what we recorded
            inputs[name] = args[0].detach().clone()
            outputs[name] = out.detach().clone()
        return hook

    handles = [u.module.register_forward_hook(make(u.name)) for u in units]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def capture(model: nn.Module, x: Tensor, units: Sequence[Unit]) -> Activations:
    """Run ``model`` on ``x`` (B, C, H, W) in eval mode and record every unit's input and output.

    The model's train/eval state is restored afterwards; no hook outlives the call.

    Example:
        >>> import torch
        >>> from resdyn import load_model, units, capture
        >>> m = load_model("cifar-resnet20"); us = units(m, (3, 32, 32))
        >>> acts = capture(m, torch.randn(2, 3, 32, 32), us)
        >>> acts.inputs[us[0].name].shape
        torch.Size([2, 16, 32, 32])
    """
    if x.dim() != 4:
        raise ValueError(f"capture expects a batch (B, C, H, W); got shape {tuple(x.shape)}")
    inputs: dict[str, Tensor] = {}
    outputs: dict[str, Tensor] = {}
    with eval_mode(model), _hooks(units, inputs, outputs), torch.no_grad():
        logits = model(x)
    return Activations(inputs, outputs, logits.detach())
