"""Recognise residual units of known families and split them into shortcut, branch, activation.

Each adapter takes a module and returns :class:`UnitParts` if it recognises it, else None.
Adding a family is one function and one line in ``ADAPTERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from .blocks import ResidualUnit

Fn = Callable[[Tensor], Tensor]


def _identity(x: Tensor) -> Tensor:
    return x


@dataclass(frozen=True)
class UnitParts:
    """A unit written as activation(shortcut(x) + residual(x)).

    projection: True when the shortcut is a learned map (1x1 conv + BN), False for the identity.
    split: (inner, outer) with residual(x) = outer(inner(x)) and inner ending in a ReLU, or None.
        The branch Jacobian then factors as J_outer·J_inner, of rank at most the number of that
        ReLU's active outputs; eigenvalue solvers use this (see ``resdyn.spectra.dense``).
    """

    family: str
    shortcut: Fn
    residual: Fn
    activation: Fn
    projection: bool
    split: tuple[Fn, Fn] | None = None


def resdyn_unit(m: nn.Module) -> UnitParts | None:
    if not isinstance(m, ResidualUnit):
        return None
    proj = not isinstance(m.shortcut, nn.Identity)
    act = _identity if isinstance(m.activation, nn.Identity) else m.activation
    return UnitParts("resdyn", m.shortcut, m.residual, act, proj, _sequential_split(m.residual))


def _sequential_split(branch: nn.Module) -> tuple[Fn, Fn] | None:
    """A Sequential branch cut after its last ReLU (that is not its last layer), else None."""
    if not isinstance(branch, nn.Sequential):
        return None
    layers = list(branch)
    cuts = [i for i, layer in enumerate(layers[:-1]) if isinstance(layer, nn.ReLU)]
    if not cuts:
        return None
    return nn.Sequential(*layers[:cuts[-1] + 1]), nn.Sequential(*layers[cuts[-1] + 1:])


def pytorchcv_unit(m: nn.Module) -> UnitParts | None:
    """pytorchcv ResUnit (post-activation) and PreResUnit (shortcut conv on the pre-activation)."""
    cls = type(m)
    if not cls.__module__.startswith("pytorchcv") or not hasattr(m, "resize_identity"):
        return None
    proj = bool(m.resize_identity)
    if cls.__name__ == "ResUnit":
        shortcut = m.identity_conv if proj else _identity
        return UnitParts("pytorchcv", shortcut, m.body, m.activ, proj, _pytorchcv_split(m.body))
    if cls.__name__ == "PreResUnit":
        body = m.body

        def residual(x: Tensor) -> Tensor:
            return body(x)[0]

        def preact_shortcut(x: Tensor) -> Tensor:
            # pytorchcv feeds BN+ReLU of x (the body's first pre-activation) to the projection.
            return m.identity_conv(body.conv1(x)[1])

        return UnitParts("pytorchcv-preact", preact_shortcut if proj else _identity,
                         residual, _identity, proj)
    return None


def _pytorchcv_split(body: nn.Module) -> tuple[Fn, Fn] | None:
    """ResBlock (conv1, conv2) or ResBottleneck (conv1..conv3) cut before its last ConvBlock."""
    convs = [getattr(body, f"conv{i}", None) for i in (1, 2, 3)]
    convs = [c for c in convs if c is not None]
    if len(convs) < 2 or not isinstance(getattr(convs[-2], "activ", None), nn.ReLU):
        return None
    return nn.Sequential(*convs[:-1]), convs[-1]


def torchvision_style_unit(m: nn.Module) -> UnitParts | None:
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
    return UnitParts("torchvision" if bottleneck else "basicblock",
                     ds if ds is not None else _identity, residual, m.relu, ds is not None,
                     (inner, outer) if isinstance(m.relu, nn.ReLU) else None)


ADAPTERS: tuple[Callable[[nn.Module], UnitParts | None], ...] = (
    resdyn_unit,
    pytorchcv_unit,
    torchvision_style_unit,
)


def recognise(m: nn.Module) -> UnitParts | None:
    """The parts of ``m`` if some adapter knows its family, else None."""
    for adapt in ADAPTERS:
        parts = adapt(m)
        if parts is not None:
            return parts
    return None
