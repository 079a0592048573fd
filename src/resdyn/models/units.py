"""Residual-unit discovery: which modules are residual units, their stages, kinds and shapes."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from math import prod

import torch
from torch import Tensor, nn

from .._torch import eval_mode
from .adapters import FOUND, known, recognise
from .discover import Report, discover
from .parts import UnitParts
from .probe import natural_input_shape, positive_ints, probe


@dataclass(frozen=True, eq=False)
class Unit:
    """One residual unit of a model, in forward order.

    A unit is a module whose forward is one residual map σ(α·S(x) + R(x)) (a ResNet block), or
    one step of such maps inside a module's forward (a transformer block is two: attention, then
    MLP). Shapes are any: (C, H, W) for a convolutional unit, (tokens, dim) for a transformer's.

    Attributes:
        name: the unit's name: its module's path inside the model (``model.get_submodule``),
            with ``.<step>`` appended for a step (``"encoder.layers.encoder_layer_0.mlp"``).
        module: the module that computes the unit (for a step: the block it is a step of).
        stage: 0-based stage index; a stage is the group of units under one parent container.
        position: 0-based position inside its stage.
        kind: ``"downsampling"`` (projection shortcut or changed shape) or ``"regular"``.
        in_shape, out_shape: activation shapes without the batch dimension.
        parts: shortcut / residual branch / activation split, or None for units named by the
            user in a family resdyn does not know (then only the whole unit can be analysed).
        path: the module's path (equal to ``name`` unless the unit is a step).
        step: the step's index inside its module's forward (0 for a whole-module unit).

    Example:
        >>> from resdyn import load_model, units
        >>> unit = units(load_model("cifar-resnet20", in_channels=1), (1, 8, 8))[3]
        >>> unit
        Unit('stages.1.0', stage=1, position=0, kind='downsampling', (16, 8, 8)->(32, 4, 4))
        >>> unit.in_shape, unit.out_shape, unit.parts.projection
        ((16, 8, 8), (32, 4, 4), True)
    """

    name: str
    module: nn.Module
    stage: int
    position: int
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    parts: UnitParts | None
    path: str = ""
    step: int = 0

    @property
    def n_in(self) -> int:
        return prod(self.in_shape)

    @property
    def n_out(self) -> int:
        return prod(self.out_shape)

    def forward(self, x: Tensor, alpha: float = 1.0) -> Tensor:
        """activation(alpha * shortcut(x) + residual(x)); alpha = 1 is the unit itself.

        Raises:
            ValueError: alpha not finite, or alpha != 1 on a unit whose shortcut resdyn cannot
                separate.
        """
        if not math.isfinite(alpha):
            raise ValueError(f"alpha must be a finite number (1 is the unit itself); got {alpha}")
        if self.parts is None:
            if alpha != 1.0:
                raise ValueError(f"unit {self.name!r} ({type(self.module).__name__}) has no known "
                                 "shortcut/residual split, so its skip connection cannot be scaled")
            return self.module(x)
        return self.parts(x, alpha)

    def __repr__(self) -> str:
        return (f"Unit({self.name!r}, stage={self.stage}, position={self.position}, kind={self.kind!r}, "
                f"{self.in_shape}->{self.out_shape})")


class NoUnitsFound(ValueError):
    """The model has no residual units: no addition x + f(x) of a module's input in its forward.

    Example:
        >>> from torch import nn
        >>> from resdyn import units
        >>> units(nn.Sequential(nn.Linear(2, 2)), (2,))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        resdyn.models.units.NoUnitsFound: no residual units found in Sequential: its forward pass adds no ...
    """


def _input_shape(model: nn.Module, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    """``input_shape`` checked, or the model's natural one when None."""
    if input_shape is None:
        shape = natural_input_shape(model)
        if shape is None:
            raise ValueError(
                f"units() needs the input shape of {type(model).__name__}: it carries no resdyn "
                "model card, is not a resdyn ResNet and has no pytorchcv-style in_size. Pass "
                "it, e.g. units(model, (3, 32, 32)) for CIFAR-sized images or (3, 224, 224) "
                "for ImageNet-sized ones")
        return shape
    try:
        given: tuple[int, ...] = tuple(operator.index(s) for s in input_shape)
    except TypeError:
        given = ()
    if not given or not positive_ints(given):
        raise ValueError(f"input_shape must be the shape of one input without the batch "
                         f"dimension, positive integers such as (C, H, W); got {input_shape!r}. "
                         "E.g. units(model, (3, 32, 32))")
    return given


def _parent(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def units(model: nn.Module, input_shape: Sequence[int] | None = None,
          names: Sequence[str] | None = None) -> list[Unit]:
    """The residual units of ``model`` in forward order.

    Args:
        model: any nn.Module; recognised families are resdyn's own networks, pytorchcv ResUnit /
            PreResUnit, torchvision BasicBlock / Bottleneck and look-alikes, torchvision's ViT
            ``EncoderBlock`` and timm's ``Block`` (two units each: attention, MLP), and blocks
            declared with :func:`resdyn.declare_unit`.
        input_shape: shape of one input without the batch dimension, e.g. (C, H, W) of an
            image; used to record each unit's shapes. None: the shape the model states (see
            :func:`natural_input_shape`).
        names: module paths to treat as units, for models whose units resdyn does not recognise
            (a recognised module named here gives all its units).

    Returns:
        list of :class:`Unit`; stages are the groups of units sharing a parent module.

    Raises:
        NoUnitsFound: nothing recognisable and no ``names`` given.
        KeyError: a name in ``names`` is not a submodule.
        ValueError: no ``input_shape`` given and the model states none, a shape that is not
            positive integers, a model whose forward fails on ``input_shape`` (the message
            gives the shape it takes and its own error), or declared parts that do not
            reproduce their module's forward.

    Example:
        >>> from resdyn import load_model, units
        >>> us = units(load_model("cifar-resnet20"))
        >>> len(us), us[3].kind, us[0].in_shape
        (9, 'downsampling', (16, 32, 32))
    """
    shape = _input_shape(model, input_shape)
    reports = _discover(model, shape)
    if names is None:
        found = [(n, m) for n, m in model.named_modules() if n and recognise(m) is not None]
        # a step nested in another's branch (ConvNeXt-V2's GRN inside its block) is part of it
        found = [(n, m) for n, m in found
                 if not any(n.startswith(o + ".") for o, _ in found if o != n)]
        if not found:
            raise NoUnitsFound(
                f"no residual units found in {type(model).__name__}: {_saw(reports)}. If it "
                "has some, declare your block by its parts with resdyn.declare_unit(BlockClass, "
                "lambda m: UnitParts(...)), or pass the unit module names, e.g. units(model, "
                "shape, names=['layer1.0', ...]) or --units layer1.0,layer1.1 on the command "
                "line (then each is analysed as a whole map)")
    else:
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise KeyError(f"{type(model).__name__} has no submodule(s) {missing}; "
                           f"top-level children are {[n for n, _ in model.named_children()]}")
        found = [(n, modules[n]) for n in names]

    entries = [(n, m, i, steps[i] if steps else None)
               for n, m in found for steps in [recognise(m)]
               for i in range(len(steps) if steps else 1)]
    shapes = _shapes(model, shape, entries)
    result: list[Unit] = []
    stage_of: dict[str, int] = {}
    count: dict[str, int] = {}
    for i in sorted(range(len(entries)), key=lambda i: shapes[i][2]):
        path, module, step, parts = entries[i]
        in_shape, out_shape, _ = shapes[i]
        parent = _parent(path)
        stage = stage_of.setdefault(parent, len(stage_of))
        position = count.get(parent, 0)
        count[parent] = position + 1
        down = in_shape != out_shape or (parts is not None and parts.projection)
        name = f"{path}.{parts.step}" if parts is not None and parts.step else path
        result.append(Unit(name, module, stage, position, "downsampling" if down else "regular",
                           in_shape, out_shape, parts, path, step))
    return result


def _sample(model: nn.Module, input_shape: Sequence[int]) -> Tensor:
    """A seeded random batch of one input, in the model's dtype and on its device."""
    p = next(model.parameters(), None)
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, *input_shape, generator=g).to(
        dtype=p.dtype if p is not None else torch.float32,
        device=p.device if p is not None else "cpu")


_NOTE = ("input_shape is the shape of one input without the batch dimension, e.g. "
         "units(model, (3, 32, 32)). ")


def _discover(model: nn.Module, input_shape: Sequence[int]) -> tuple[Report, ...]:
    """Find the residual steps of every module no adapter knows from one recorded forward pass
    (:mod:`resdyn.models.discover`), and keep them for :func:`recognise`."""
    found = discover(model, _sample(model, input_shape), skip=known, note=_NOTE)
    for m in model.modules():
        FOUND.pop(m, None)
    for m, recipe in found.recipes.items():
        FOUND[m] = recipe
    return found.reports


def _saw(reports: Sequence[Report]) -> str:
    """What the recorded forward pass showed, for NoUnitsFound."""
    adds = [r for r in reports if r.adds]
    if not adds:
        return ("its forward pass adds no two tensors computed from a module's input, so it has "
                "no x + f(x) step")
    shown = "; ".join(f"{r.path or '(the model)'} ({r.cls}): {r.why}" for r in adds[:3])
    more = f"; and {len(adds) - 3} more modules" if len(adds) > 3 else ""
    return (f"its forward pass adds two computed tensors {sum(r.adds for r in adds)} time(s) in "
            f"{len(adds)} module(s), none an x + f(x) step of its module's input: {shown}{more}")


def _shapes(model: nn.Module, input_shape: Sequence[int],
            entries: list[tuple[str, nn.Module, int, UnitParts | None]],
            ) -> list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, int]]]:
    """(in_shape, out_shape, call order) of each (path, module, step, parts) for one forward
    pass on a random input.

    Raises:
        ValueError: a module never called, or one whose parts (composed over its steps) do
            not reproduce its own forward.
    """
    record: dict[int, tuple[Tensor, Tensor, int]] = {}

    def hook(m: nn.Module, args: tuple, out: object) -> None:
        if id(m) not in record and isinstance(out, Tensor) and args and isinstance(args[0], Tensor):
            record[id(m)] = (args[0].detach().clone(), out.detach(), len(record))

    x = _sample(model, input_shape)
    modules = {id(m): m for _, m, _, _ in entries}
    handles = [m.register_forward_hook(hook) for m in modules.values()]
    try:
        probe(model, x, note=_NOTE)
    finally:
        for h in handles:
            h.remove()
    never = [path for path, m, step, _ in entries if id(m) not in record and step == 0]
    if never:
        raise ValueError(f"{len(never)} unit(s) were not called in a forward pass of "
                         f"{type(model).__name__} with input shape {tuple(input_shape)}: "
                         f"{never[:3]}")
    out: list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, int]]] = []
    replayed: dict[int, list[tuple[tuple[int, ...], tuple[int, ...]]]] = {}
    with eval_mode(model), torch.no_grad():
        for path, m, step, parts in entries:
            x_in, y, order = record[id(m)]
            if parts is None:
                out.append((tuple(x_in.shape[1:]), tuple(y.shape[1:]), (order, 0)))
                continue
            if id(m) not in replayed:  # every step of a module in one pass
                replayed[id(m)] = _replay(path, m, x_in, y)
            out.append((*replayed[id(m)][step], (order, step)))
    return out


def _replay(path: str, module: nn.Module, x: Tensor, own: Tensor,
            ) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(in_shape, out_shape) of each of the module's steps, run in turn from its input ``x``.

    Raises:
        ValueError: the steps composed do not reproduce the module's own output ``own``.
    """
    shapes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    for parts in recognise(module) or ():
        y = parts(x)
        shapes.append((tuple(x.shape[1:]), tuple(y.shape[1:])))
        x = y
    if x.shape == own.shape and torch.allclose(x, own, rtol=1e-4, atol=1e-5):
        return shapes
    err = ((x - own).abs().max().item() if x.shape == own.shape
           else f"shape {tuple(x.shape)} vs {tuple(own.shape)}")
    raise ValueError(f"the parts of unit {path!r} ({type(module).__name__}) do not reproduce its "
                     f"forward on a random input (largest difference {err}); check its "
                     "shortcut, residual and activation (declare_unit) against its forward")


def stages(unit_list: Sequence[Unit]) -> list[list[Unit]]:
    """Units grouped by stage, in order.

    Example:
        >>> from resdyn import load_model, units
        >>> us = units(load_model("cifar-resnet20", in_channels=1), (1, 8, 8))
        >>> [[u.name for u in stage] for stage in stages(us)][1]
        ['stages.1.0', 'stages.1.1', 'stages.1.2']
    """
    out: list[list[Unit]] = []
    for u in unit_list:
        if u.stage == len(out):
            out.append([])
        out[u.stage].append(u)
    return out


def stage_name(stage: Sequence[Unit]) -> str:
    """A stage's name: its units' parent module path ("stages.0", "layer1", "encoder.layers"),
    else "stage<i>".

    Example:
        >>> from resdyn.models import cifar_resnet
        >>> us = units(cifar_resnet(8, in_channels=1), (1, 8, 8))
        >>> [stage_name(stage) for stage in stages(us)]
        ['stages.0', 'stages.1', 'stages.2']
    """
    return _parent(stage[0].path or stage[0].name) or f"stage{stage[0].stage}"


def units_frame(unit_list: Sequence[Unit]):
    """Units as a table, one row each: name, stage, position, kind, shapes and widths.

    Example:
        >>> from resdyn.models import cifar_resnet
        >>> row = units_frame(units(cifar_resnet(20), (3, 32, 32))).iloc[3]
        >>> row.to_dict()  # doctest: +NORMALIZE_WHITESPACE
        {'name': 'stages.1.0', 'stage': 1, 'pos': 0, 'kind': 'downsampling', 'in': '16x32x32',
         'out': '32x16x16', 'n_in': 16384, 'n_out': 8192}
    """
    import pandas as pd

    def shape(s: Sequence[int]) -> str:
        return "x".join(map(str, s))

    return pd.DataFrame([(u.name, u.stage, u.position, u.kind, shape(u.in_shape),
                          shape(u.out_shape), u.n_in, u.n_out) for u in unit_list],
                        columns=["name", "stage", "pos", "kind", "in", "out", "n_in", "n_out"])
