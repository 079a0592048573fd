"""Module surgery for analysis: private copies of modules and units that resdyn can change
freely (dtype, eval mode, frozen parameters) while the user's model stays untouched."""

from __future__ import annotations

import copy
import warnings
from dataclasses import replace

import torch
from torch import nn

from .adapters import inherit, recognise
from .units import Unit


def analysis_copy(module: nn.Module, dtype: torch.dtype = torch.float64) -> nn.Module:
    """A deep copy of ``module`` in ``dtype`` and eval mode with frozen parameters.

    Warns (UserWarning) when a BatchNorm of the original is in train mode: the analysis uses
    running statistics, so the network is a fixed function of its input.

    Example:
        >>> from torch import nn
        >>> m = analysis_copy(nn.Linear(2, 2))
        >>> p = next(m.parameters())
        >>> p.dtype, m.training, p.requires_grad
        (torch.float64, False, False)
    """
    bn = nn.modules.batchnorm._BatchNorm
    if any(isinstance(m, bn) and m.training for m in module.modules()):
        warnings.warn(f"{type(module).__name__} has BatchNorm in train mode; resdyn analyses an "
                      "eval-mode copy (running statistics). Call model.eval() to silence this.",
                      UserWarning, stacklevel=3)
    clone = copy.deepcopy(module).to(dtype).eval()
    inherit(clone, module)  # the steps discovery found in the original's forward
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone


def copy_unit(unit: Unit, dtype: torch.dtype = torch.float64) -> Unit:
    """The unit with its module replaced by an :func:`analysis_copy` and parts re-derived.

    Raises:
        ValueError: the unit has parts but resdyn cannot re-derive them on a copy.

    Example:
        >>> from resdyn import load_model, units
        >>> unit = units(load_model("cifar-resnet20", in_channels=1), (1, 8, 8))[1]
        >>> copy = copy_unit(unit)
        >>> copy.name, next(copy.module.parameters()).dtype, next(unit.module.parameters()).dtype
        ('stages.0.1', torch.float64, torch.float32)
    """
    clone = analysis_copy(unit.module, dtype)
    steps = recognise(clone) if unit.parts is not None else None
    if unit.parts is not None and (steps is None or len(steps) <= unit.step):
        raise ValueError(f"unit {unit.name!r}: its shortcut/residual split was given by hand and "
                         "cannot be rebuilt on a float64 copy; declare its class with "
                         "resdyn.declare_unit, or use function_jacobian instead")
    return replace(unit, module=clone, parts=steps[unit.step] if steps else None)
