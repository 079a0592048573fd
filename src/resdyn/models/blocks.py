"""Residual units of resdyn's own networks: x -> act(shortcut(x) + residual(x))."""

from __future__ import annotations

from torch import Tensor, nn


class ResidualUnit(nn.Module):
    """A residual unit with explicit shortcut, residual branch and output activation.

    forward(x) = activation(shortcut(x) + residual(x)); the three parts are separate
    submodules so analyses can scale the shortcut or linearize the branch alone.
    """

    def __init__(self, residual: nn.Module, shortcut: nn.Module, activation: nn.Module):
        super().__init__()
        self.residual = residual
        self.shortcut = shortcut
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.shortcut(x) + self.residual(x))


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def projection(cin: int, cout: int, stride: int) -> nn.Module:
    """1x1 conv + BN shortcut used where a unit changes shape; identity otherwise."""
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


def basic_unit(cin: int, cout: int, stride: int) -> ResidualUnit:
    """Post-activation BasicBlock: relu(S(x) + BN(conv(relu(BN(conv(x))))))."""
    residual = nn.Sequential(
        conv3x3(cin, cout, stride), nn.BatchNorm2d(cout), nn.ReLU(),
        conv3x3(cout, cout), nn.BatchNorm2d(cout),
    )
    return ResidualUnit(residual, projection(cin, cout, stride), nn.ReLU())


def preact_unit(cin: int, cout: int, stride: int) -> ResidualUnit:
    """Pre-activation unit (paper 002): S(x) + W2*ReLU(BN(W1*ReLU(BN(x)))), no output activation."""
    residual = nn.Sequential(
        nn.BatchNorm2d(cin), nn.ReLU(), conv3x3(cin, cout, stride),
        nn.BatchNorm2d(cout), nn.ReLU(), conv3x3(cout, cout),
    )
    return ResidualUnit(residual, projection(cin, cout, stride), nn.Identity())
