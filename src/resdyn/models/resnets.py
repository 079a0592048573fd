"""resdyn's own CIFAR-style residual networks (post- and pre-activation)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from .blocks import ResidualUnit, basic_unit, conv3x3, preact_unit

WIDTHS = (16, 32, 64)
CIFAR_DEPTHS = (20, 32, 44, 56, 110)


@dataclass(frozen=True)
class Arch:
    """Architecture of a resdyn network: enough to rebuild it from a checkpoint.

    family: "cifar-resnet" (post-activation, paper 000), "preresnet" (paper 002), one of
        paper 004's "euler", "antisymmetric", "hamiltonian" (:mod:`resdyn.models.stable`), or
        "vit" (a Vision Transformer, :mod:`resdyn.models.vit`).
    blocks: units per stage (CIFAR-style: depth = 6 * blocks + 2; paper 004's: one stage); a
        ViT's number of encoder blocks.
    width, kernel, h, gamma: paper 004's networks: channels, kernel size, step, damping; a ViT
        uses ``width`` as its hidden (token) dimension.
    heads, patch, mlp, size: a ViT's attention heads, patch side, MLP hidden dimension and
        input height and width (0 for the other families).

    Example:
        >>> arch = Arch("preresnet", 2, in_channels=1)
        >>> arch.depth, arch.num_classes, Arch.from_dict(arch.to_dict()) == arch
        (14, 10, True)
    """

    family: str
    blocks: int
    in_channels: int = 3
    num_classes: int = 10
    width: int = 0
    kernel: int = 3
    h: float = 0.1
    gamma: float = 0.0
    heads: int = 0
    patch: int = 0
    mlp: int = 0
    size: int = 0

    @property
    def depth(self) -> int:
        return 6 * self.blocks + 2

    def to_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, str]) -> Arch:
        # fields added after the first checkpoints were written take their defaults when absent
        extra = {k: t(d[k]) for k, t in (("width", int), ("kernel", int), ("h", float),
                                          ("gamma", float), ("heads", int), ("patch", int),
                                          ("mlp", int), ("size", int)) if k in d}
        return cls(d["family"], int(d["blocks"]), int(d["in_channels"]), int(d["num_classes"]),
                   **extra)  # type: ignore[arg-type]  # each extra converted by its own type


class ResNet(nn.Module):
    """Stem conv, three stages of residual units (16/32/64 channels), global pool, linear head.

    Any input size works (global average pooling). The stages are ``stages[0..2]``; each stage
    is an ``nn.Sequential`` of :class:`ResidualUnit`.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> net = ResNet(Arch("cifar-resnet", 1, in_channels=1, num_classes=3))
        >>> net(torch.zeros(2, 1, 8, 8)).shape, [len(stage) for stage in net.stages]
        (torch.Size([2, 3]), [1, 1, 1])
    """

    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch
        make: Callable[[int, int, int], ResidualUnit]
        self.stem: nn.Module
        self.head_act: nn.Module
        if arch.family == "cifar-resnet":
            make = basic_unit
            self.stem = nn.Sequential(conv3x3(arch.in_channels, WIDTHS[0]),
                                      nn.BatchNorm2d(WIDTHS[0]), nn.ReLU())
            self.head_act = nn.Identity()
        elif arch.family == "preresnet":
            make = preact_unit
            self.stem = conv3x3(arch.in_channels, WIDTHS[0])
            self.head_act = nn.Sequential(nn.BatchNorm2d(WIDTHS[-1]), nn.ReLU())
        else:
            raise ValueError(f"unknown family {arch.family!r}; expected 'cifar-resnet' or 'preresnet'")
        stages, cin = [], WIDTHS[0]
        for s, cout in enumerate(WIDTHS):
            units = [make(cin if b == 0 else cout, cout, 2 if (s > 0 and b == 0) else 1)
                     for b in range(arch.blocks)]
            stages.append(nn.Sequential(*units))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(WIDTHS[-1], arch.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.head_act(self.stages(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def cifar_resnet(depth: int, in_channels: int = 3, num_classes: int = 10) -> ResNet:
    """Post-activation CIFAR ResNet-``depth`` (depth = 6n + 2) as analysed in paper 000.

    Example:
        >>> import torch
        >>> m = cifar_resnet(20, in_channels=1)
        >>> m.arch.blocks, m.arch.depth, m(torch.zeros(1, 1, 8, 8)).shape
        (3, 20, torch.Size([1, 10]))
        >>> cifar_resnet(21)
        Traceback (most recent call last):
            ...
        ValueError: CIFAR ResNet depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110); got 21
    """
    if (depth - 2) % 6 or depth < 8:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110); got {depth}")
    return ResNet(Arch("cifar-resnet", (depth - 2) // 6, in_channels, num_classes))


def preresnet(blocks: int, in_channels: int = 3, num_classes: int = 10) -> ResNet:
    """Pre-activation ResNet of paper 002 with ``blocks`` units per section (any blocks >= 1).

    Example:
        >>> import torch
        >>> m = preresnet(1, in_channels=1, num_classes=4)
        >>> m.arch.family, m.arch.depth, m(torch.zeros(1, 1, 8, 8)).shape
        ('preresnet', 8, torch.Size([1, 4]))
    """
    if blocks < 1:
        raise ValueError(f"preresnet needs at least one block per section; got {blocks}")
    return ResNet(Arch("preresnet", blocks, in_channels, num_classes))
