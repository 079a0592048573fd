"""Activations entering and leaving every residual unit for a batch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._torch import eval_mode
from .models.adapters import recognise
from .models.units import Unit


@dataclass(frozen=True)
class Activations:
    """Detached activations of one forward pass.

    Attributes:
        inputs: unit name -> (B, *unit.in_shape) tensor entering the unit.
        outputs: unit name -> (B, *unit.out_shape) tensor leaving the unit. A unit that is a
            step inside its module's forward (a transformer's attention or MLP) is replayed
            from the module's input through its parts.
        logits: (B, num_classes) network output.

    Example:
        >>> import torch
        >>> from resdyn import load_model, units
        >>> model = load_model("digits-resnet20"); us = units(model)
        >>> acts = capture(model, torch.zeros(2, 1, 8, 8), us)
        >>> len(acts.inputs), acts.outputs[us[-1].name].shape, acts.logits.shape
        (9, torch.Size([2, 64, 2, 2]), torch.Size([2, 10]))
    """

    inputs: dict[str, Tensor]
    outputs: dict[str, Tensor]
    logits: Tensor


@contextmanager
def _hooks(units: Sequence[Unit], inputs: dict[str, Tensor], outputs: dict[str, Tensor],
           ) -> Iterator[None]:
    by_module: dict[int, list[Unit]] = {}
    for u in units:
        by_module.setdefault(id(u.module), []).append(u)

    def make(group: list[Unit]):
        def hook(m: nn.Module, args: tuple, out: Tensor) -> None:
            # clone: a later in-place op (ReLU(inplace=True)) must not rewrite what we recorded
            if all(not (u.parts and u.parts.step) for u in group):  # whole-module units
                for u in group:
                    inputs[u.name] = args[0].detach().clone()
                    outputs[u.name] = out.detach().clone()
                return
            # steps of one module: replay them from the module's input
            x, want = args[0].detach(), {u.step: u.name for u in group}
            for step, parts in enumerate(recognise(m) or ()):
                y = parts(x)
                if step in want:
                    inputs[want[step]], outputs[want[step]] = x.clone(), y.detach().clone()
                x = y
        return hook

    handles = [group[0].module.register_forward_hook(make(group))
               for group in by_module.values()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def capture(model: nn.Module, x: Tensor, units: Sequence[Unit]) -> Activations:
    """Run ``model`` on a batch ``x`` (B, ...), e.g. images (B, C, H, W), in eval mode and record
    every unit's input and output.

    The model's train/eval state is restored afterwards; no hook outlives the call.

    Example:
        >>> import torch
        >>> from resdyn import load_model, units, capture
        >>> m = load_model("cifar-resnet20"); us = units(m, (3, 32, 32))
        >>> acts = capture(m, torch.randn(2, 3, 32, 32), us)
        >>> acts.inputs[us[0].name].shape
        torch.Size([2, 16, 32, 32])
    """
    if x.dim() < 2:
        raise ValueError(f"capture expects a batch (B, ...) such as images (B, C, H, W); got shape "
                         f"{tuple(x.shape)}")
    inputs: dict[str, Tensor] = {}
    outputs: dict[str, Tensor] = {}
    with eval_mode(model), _hooks(units, inputs, outputs), torch.no_grad():
        logits = model(x)
    return Activations(inputs, outputs, logits.detach())
