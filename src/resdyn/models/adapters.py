"""Recognise residual units of known families and split them into shortcut, branch, activation.

Each adapter takes a module (typed ``Any``: adapters read the attributes of foreign classes by
duck typing) and returns its :class:`UnitParts` if it recognises it, else None:
one for a module that is one unit, or a tuple for a module whose forward is several residual
steps in turn (a transformer block: attention, then MLP). Any other module's steps are found
from its forward by :mod:`resdyn.models.discover` (the last adapter reads what it found), so an
adapter is a shortcut that names parts better, not the gate; a user's own block may still be
declared with :func:`declare_unit`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from .blocks import ResidualUnit
from .decoders import gpt2_block, llama_layer, neox_layer
from .parts import Fn, UnitParts, identity

Adapter = Callable[[nn.Module], "UnitParts | tuple[UnitParts, ...] | None"]

#: Blocks declared by the user: class -> adapter (see :func:`declare_unit`).
DECLARED: dict[type, Adapter] = {}


def declare_unit(cls: type, parts: Adapter) -> None:
    """Declare a block class of your own as a residual unit, by its parts.

    ``parts(module)`` returns the :class:`UnitParts` of one instance, or a tuple of them when
    its forward is several residual steps in turn (each step's input is the previous step's
    output; every step must have a distinct ``step`` name). :func:`resdyn.units` then finds
    every instance of ``cls`` (subclasses too) and checks once, on a random input, that the
    parts reproduce the module's own forward. Declare at import time of the module that
    defines the class, so that worker processes (Dask) see the declaration too.

    Args:
        cls: the block's class.
        parts: module -> UnitParts | tuple[UnitParts, ...]. It is called again on every
            analysis copy of the module, so it must read the module it is given.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from resdyn import declare_unit, units
        >>> from resdyn.models import UnitParts
        >>> class PostLN(nn.Module):  # x -> LN(x + W x)
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.lin, self.ln = nn.Linear(8, 8), nn.LayerNorm(8)
        ...     def forward(self, x):
        ...         return self.ln(x + self.lin(x))
        >>> declare_unit(PostLN, lambda m: UnitParts(residual=m.lin, activation=m.ln))
        >>> net = nn.Sequential(PostLN(), PostLN())
        >>> [u.name for u in units(net, (4, 8))]
        ['0', '1']
    """
    if not isinstance(cls, type) or not callable(parts):
        raise TypeError(f"declare_unit(cls, parts) takes a class and a function module -> "
                        f"UnitParts; got {cls!r}, {parts!r}")
    DECLARED[cls] = parts


def declared_unit(m: nn.Module) -> UnitParts | tuple[UnitParts, ...] | None:
    for cls in type(m).__mro__:
        if cls in DECLARED:
            return DECLARED[cls](m)
    return None


def resdyn_unit(m: Any) -> UnitParts | None:
    if not isinstance(m, ResidualUnit):
        return None
    proj = not isinstance(m.shortcut, nn.Identity)
    act = identity if isinstance(m.activation, nn.Identity) else m.activation
    return UnitParts(m.shortcut, m.residual, act, proj, _sequential_split(m.residual), "resdyn")


def _sequential_split(branch: nn.Module) -> tuple[Fn, Fn] | None:
    """A Sequential branch cut after its last ReLU (that is not its last layer), else None."""
    if not isinstance(branch, nn.Sequential):
        return None
    layers = list(branch)
    cuts = [i for i, layer in enumerate(layers[:-1]) if isinstance(layer, nn.ReLU)]
    if not cuts:
        return None
    return nn.Sequential(*layers[:cuts[-1] + 1]), nn.Sequential(*layers[cuts[-1] + 1:])


def pytorchcv_unit(m: Any) -> UnitParts | None:
    """pytorchcv ResUnit (post-activation) and PreResUnit (shortcut conv on the pre-activation)."""
    cls = type(m)
    if not cls.__module__.startswith("pytorchcv") or not hasattr(m, "resize_identity"):
        return None
    proj = bool(m.resize_identity)
    if cls.__name__ == "ResUnit":
        shortcut = m.identity_conv if proj else identity
        return UnitParts(shortcut, m.body, m.activ, proj, _pytorchcv_split(m.body), "pytorchcv")
    if cls.__name__ == "PreResUnit":
        body = m.body

        def residual(x: Tensor) -> Tensor:
            return body(x)[0]

        def preact_shortcut(x: Tensor) -> Tensor:
            # pytorchcv feeds BN+ReLU of x (the body's first pre-activation) to the projection.
            return m.identity_conv(body.conv1(x)[1])

        return UnitParts(preact_shortcut if proj else identity, residual, identity, proj,
                         family="pytorchcv-preact")
    return None


def _pytorchcv_split(body: Any) -> tuple[Fn, Fn] | None:
    """ResBlock (conv1, conv2) or ResBottleneck (conv1..conv3) cut before its last ConvBlock."""
    convs: list[Any] = [c for c in (getattr(body, f"conv{i}", None) for i in (1, 2, 3))
                        if c is not None]
    if len(convs) < 2 or not isinstance(getattr(convs[-2], "activ", None), nn.ReLU):
        return None
    return nn.Sequential(*convs[:-1]), convs[-1]


def torchvision_style_unit(m: Any) -> UnitParts | None:
    """torchvision BasicBlock/Bottleneck and look-alikes (e.g. chenyaofo's CIFAR BasicBlock):
    conv1/bn1/conv2/bn2[/conv3/bn3], relu, optional ``downsample``."""
    if type(m).__name__ not in ("BasicBlock", "Bottleneck"):
        return None
    if not all(hasattr(m, a) for a in ("conv1", "bn1", "conv2", "bn2", "relu")):
        return None
    bottleneck = hasattr(m, "conv3") and hasattr(m, "bn3")

    def residual(x: Tensor) -> Tensor:
        out = m.relu(m.bn1(m.conv1(x)))
        out = m.bn2(m.conv2(out))
        if bottleneck:
            out = m.bn3(m.conv3(m.relu(out)))
        return out

    def inner(x: Tensor) -> Tensor:
        out = m.relu(m.bn1(m.conv1(x)))
        return m.relu(m.bn2(m.conv2(out))) if bottleneck else out

    def outer(z: Tensor) -> Tensor:
        return m.bn3(m.conv3(z)) if bottleneck else m.bn2(m.conv2(z))

    ds = getattr(m, "downsample", None)
    return UnitParts(ds if ds is not None else identity, residual, m.relu, ds is not None,
                     (inner, outer) if isinstance(m.relu, nn.ReLU) else None,
                     "torchvision" if bottleneck else "basicblock")


def torchvision_encoder_block(m: Any) -> tuple[UnitParts, ...] | None:
    """torchvision's ViT ``EncoderBlock`` (pre-LN): x + Attn(LN₁ x), then x + MLP(LN₂ x)."""
    if type(m).__name__ != "EncoderBlock" or not all(
            hasattr(m, a) for a in ("ln_1", "self_attention", "dropout", "ln_2", "mlp")):
        return None

    def attention(x: Tensor) -> Tensor:
        y = m.ln_1(x)
        return m.dropout(m.self_attention(y, y, y, need_weights=False)[0])

    def mlp(x: Tensor) -> Tensor:
        return m.mlp(m.ln_2(x))

    return (UnitParts(residual=attention, family="vit-torchvision", step="self_attention"),
            UnitParts(residual=mlp, family="vit-torchvision", step="mlp"))


def timm_block(m: Any) -> tuple[UnitParts, ...] | None:
    """timm's ViT ``Block`` (pre-LN, optional LayerScale and DropPath, identity in eval):
    x + ls₁(Attn(norm₁ x)), then x + ls₂(MLP(norm₂ x))."""
    cls = type(m)
    if not cls.__module__.startswith("timm") or cls.__name__ != "Block" or not all(
            hasattr(m, a) for a in ("norm1", "attn", "ls1", "drop_path1", "norm2", "mlp", "ls2",
                                    "drop_path2")):
        return None

    def attention(x: Tensor) -> Tensor:
        return m.drop_path1(m.ls1(m.attn(m.norm1(x))))

    def mlp(x: Tensor) -> Tensor:
        return m.drop_path2(m.ls2(m.mlp(m.norm2(x))))

    return (UnitParts(residual=attention, family="vit-timm", step="attn"),
            UnitParts(residual=mlp, family="vit-timm", step="mlp"))


#: Modules whose residual steps :func:`resdyn.models.discover.discover` found from their
#: forward: module -> its recipe (weakly held; a copy made for analysis inherits it).
FOUND: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def discovered_unit(m: nn.Module) -> tuple[UnitParts, ...] | None:
    """The steps discovery found in ``m``'s forward (:func:`resdyn.units` runs it)."""
    recipe = FOUND.get(m)
    return recipe.parts(m) if recipe is not None else None


def known(m: nn.Module) -> bool:
    """Whether an adapter of a known family (or a declaration) recognises ``m``."""
    return any(adapt(m) is not None for adapt in ADAPTERS if adapt is not discovered_unit)


def inherit(copy: nn.Module, original: nn.Module) -> None:
    """Let ``copy`` (a deep copy of ``original``) and its submodules keep what discovery found
    in the original's."""
    for a, b in zip(original.modules(), copy.modules(), strict=True):
        if a in FOUND:
            FOUND[b] = FOUND[a]


ADAPTERS: tuple[Adapter, ...] = (
    declared_unit,
    resdyn_unit,
    pytorchcv_unit,
    torchvision_style_unit,
    torchvision_encoder_block,
    timm_block,
    gpt2_block,
    llama_layer,
    neox_layer,
    discovered_unit,  # last: a known family's adapter names its parts better
)


def recognise(m: nn.Module) -> tuple[UnitParts, ...] | None:
    """The steps of ``m`` (one for a module that is one unit) if some adapter knows its
    family, else None.

    Raises:
        ValueError: a declared block whose parts are not UnitParts or whose steps are unnamed
            or named twice.
    """
    for adapt in ADAPTERS:
        parts = adapt(m)
        if parts is None:
            continue
        steps = (parts,) if isinstance(parts, UnitParts) else tuple(parts)
        names = [p.step for p in steps]
        if not steps or not all(isinstance(p, UnitParts) for p in steps) or (
                len(steps) > 1 and (not all(names) or len(set(names)) < len(names))):
            raise ValueError(f"the parts of {type(m).__name__} must be one UnitParts or a tuple "
                             f"of UnitParts with distinct step names; got {parts!r}")
        return steps
    return None
