"""Stable architectures of paper 004 (Haber & Ruthotto) and the plain Euler ResNet they improve on.

Every network: an opening convolution to ``width`` channels, ``blocks`` residual units in one
stage, global average pooling and a linear classifier. A unit is a resdyn
:class:`~resdyn.models.blocks.ResidualUnit` (identity shortcut, no output activation), so unit
discovery, Jacobian operators, spectra and propagation take it unchanged:

- ``euler``: Y + h·σ(K Y + b), K any convolution (the standard ResNet as forward Euler);
- ``antisymmetric``: Y + h·σ(½(K − Kᵀ − γI) Y + b), Kᵀ the adjoint convolution (the transposed
  convolution with the same weights), so ½(K − Kᵀ − γI) has eigenvalues with real part −γ/2;
- ``hamiltonian``: two states integrated by Verlet, Z ← Z − h·σ(Kᵀ Y + b₁), Y ← Y + h·σ(K Z + b₂).
  A unit's input and output are the concatenated state [Y; Z] (2·width channels); the opening
  layer sets Y and Z = 0, the classifier reads both.

``kernel`` 1 on points stored as 1×1 images (the toy sets) is the dense form; 3 the convolutional
form for images. σ = tanh.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import ResidualUnit
from .resnets import Arch

STABLE_FAMILIES = ("euler", "antisymmetric", "hamiltonian")


class _Kernel(nn.Module):
    """K as a stride-1 'same' convolution, with its adjoint Kᵀ (transposed convolution)."""

    def __init__(self, width: int, kernel: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(width, width, kernel, kernel))
        nn.init.normal_(self.weight, std=(1.0 / (width * kernel * kernel)) ** 0.5)
        self.pad = kernel // 2

    def K(self, y: Tensor) -> Tensor:
        return F.conv2d(y, self.weight, padding=self.pad)

    def KT(self, y: Tensor) -> Tensor:
        return F.conv_transpose2d(y, self.weight, padding=self.pad)


class EulerBranch(_Kernel):
    """h·σ(K Y + b)."""

    def __init__(self, width: int, kernel: int, h: float):
        super().__init__(width, kernel)
        self.bias = nn.Parameter(torch.zeros(width, 1, 1))
        self.h = h

    def forward(self, y: Tensor) -> Tensor:
        return self.h * torch.tanh(self.K(y) + self.bias)


class AntisymmetricBranch(_Kernel):
    """h·σ(½(K − Kᵀ − γI) Y + b)."""

    def __init__(self, width: int, kernel: int, h: float, gamma: float):
        super().__init__(width, kernel)
        self.bias = nn.Parameter(torch.zeros(width, 1, 1))
        self.h, self.gamma = h, gamma

    def operator(self, y: Tensor) -> Tensor:
        """½(K − Kᵀ − γI) y."""
        return 0.5 * (self.K(y) - self.KT(y) - self.gamma * y)

    def forward(self, y: Tensor) -> Tensor:
        return self.h * torch.tanh(self.operator(y) + self.bias)


class HamiltonianBranch(_Kernel):
    """The Verlet step's increment on the state X = [Y; Z]: [Y' − Y; Z' − Z] with
    Z' = Z − h·σ(Kᵀ Y + b₁), Y' = Y + h·σ(K Z' + b₂)."""

    def __init__(self, width: int, kernel: int, h: float):
        super().__init__(width, kernel)
        self.b1 = nn.Parameter(torch.zeros(width, 1, 1))
        self.b2 = nn.Parameter(torch.zeros(width, 1, 1))
        self.h = h

    def forward(self, x: Tensor) -> Tensor:
        y, z = x.chunk(2, dim=1)
        dz = -self.h * torch.tanh(self.KT(y) + self.b1)
        dy = self.h * torch.tanh(self.K(z + dz) + self.b2)
        return torch.cat([dy, dz], dim=1)

    def inverse(self, x: Tensor) -> Tensor:
        """The state before the step: Y = Y' − h·σ(K Z' + b₂), Z = Z' + h·σ(Kᵀ Y + b₁)."""
        y, z = x.chunk(2, dim=1)
        y = y - self.h * torch.tanh(self.K(z) + self.b2)
        z = z + self.h * torch.tanh(self.KT(y) + self.b1)
        return torch.cat([y, z], dim=1)


class StableNet(nn.Module):
    """Opening convolution, ``arch.blocks`` units of ``arch.family``, pooling, linear head.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> arch = Arch("antisymmetric", 3, in_channels=2, num_classes=2, width=4, kernel=1, h=0.2)
        >>> net = StableNet(arch)  # the dense form, for 2-D points stored as 1x1 images
        >>> net(torch.zeros(5, 2, 1, 1)).shape, len(net.units)
        (torch.Size([5, 2]), 3)
    """

    def __init__(self, arch: Arch):
        super().__init__()
        if arch.family not in STABLE_FAMILIES:
            raise ValueError(f"unknown family {arch.family!r}; expected one of {STABLE_FAMILIES}")
        if arch.blocks < 1 or arch.width < 1 or arch.kernel < 1 or arch.kernel % 2 == 0:
            raise ValueError(f"need blocks >= 1, width >= 1 and an odd kernel; got {arch}")
        if not arch.h > 0 or arch.gamma < 0:
            raise ValueError(f"need h > 0 and gamma >= 0; got h = {arch.h}, gamma = {arch.gamma}")
        self.arch = arch
        w, k = arch.width, arch.kernel
        self.open = nn.Conv2d(arch.in_channels, w, k, padding=k // 2)
        make = {"euler": lambda: EulerBranch(w, k, arch.h),
                "antisymmetric": lambda: AntisymmetricBranch(w, k, arch.h, arch.gamma),
                "hamiltonian": lambda: HamiltonianBranch(w, k, arch.h)}[arch.family]
        self.units = nn.Sequential(*[ResidualUnit(make(), nn.Identity(), nn.Identity())
                                     for _ in range(arch.blocks)])
        states = 2 if arch.family == "hamiltonian" else 1
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(states * w, arch.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        y = self.open(x)
        if self.arch.family == "hamiltonian":
            y = torch.cat([y, torch.zeros_like(y)], dim=1)
        return self.fc(torch.flatten(self.pool(self.units(y)), 1))
