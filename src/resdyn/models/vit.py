"""A small Vision Transformer: torchvision's, with a patch embedding for any number of channels.

The network is torchvision's :class:`~torchvision.models.vision_transformer.VisionTransformer`
(class token, learned position embedding, pre-LN encoder blocks, final LayerNorm, linear head on
the class token) with two changes: the patch embedding ``conv_proj`` takes ``in_channels``
channels (1 for digits) instead of 3, and dropout is 0. Its encoder blocks are torchvision's
``EncoderBlock`` unchanged, so each is two residual units on the token stream (tokens × width):
x ← x + Attn(LN₁ x), then x ← x + MLP(LN₂ x).

An image of size × size with patches of patch × patch gives (size / patch)² tokens plus the class
token: 8 × 8 digits in 2 × 2 patches are 17 tokens, so a sub-layer's Jacobian is 17·width wide.
"""

from __future__ import annotations

import math

from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from .resnets import Arch


class ViT(VisionTransformer):
    """torchvision's Vision Transformer built from an :class:`Arch` of family "vit".

    ``arch.blocks`` encoder blocks of hidden dimension ``arch.width`` with ``arch.heads`` heads
    and MLP dimension ``arch.mlp``, on ``arch.size`` × ``arch.size`` images cut into
    ``arch.patch`` × ``arch.patch`` patches. Takes (B, in_channels, size, size) only (the
    position embedding fixes the number of tokens). ``in_channels`` and ``in_size`` state the
    natural input shape for callers that have no model card.

    Raises:
        ValueError: a family other than "vit", a non-positive size, or a size the patch does not
            divide, or a width the heads do not divide.

    Example:
        >>> import torch
        >>> model = ViT(Arch("vit", 2, 1, 10, width=16, heads=2, patch=2, mlp=32, size=8))
        >>> model(torch.zeros(3, 1, 8, 8)).shape
        torch.Size([3, 10])
    """

    def __init__(self, arch: Arch):
        _check(arch)
        super().__init__(image_size=arch.size, patch_size=arch.patch, num_layers=arch.blocks,
                         num_heads=arch.heads, hidden_dim=arch.width, mlp_dim=arch.mlp,
                         dropout=0.0, attention_dropout=0.0, num_classes=arch.num_classes)
        self.arch = arch
        self.conv_proj = nn.Conv2d(arch.in_channels, arch.width, arch.patch, stride=arch.patch)
        # torchvision's initialisation of its own patch embedding, for the new fan-in
        nn.init.trunc_normal_(self.conv_proj.weight,
                              std=math.sqrt(1 / (arch.in_channels * arch.patch ** 2)))
        assert self.conv_proj.bias is not None
        nn.init.zeros_(self.conv_proj.bias)
        self.in_channels = arch.in_channels
        self.in_size = (arch.size, arch.size)


def _check(arch: Arch) -> None:
    if arch.family != "vit":
        raise ValueError(f"ViT builds family 'vit'; got {arch.family!r}")
    named = {"blocks": arch.blocks, "width": arch.width, "heads": arch.heads,
             "patch": arch.patch, "mlp": arch.mlp, "size": arch.size,
             "in_channels": arch.in_channels, "num_classes": arch.num_classes}
    if bad := [f"{k}={v}" for k, v in named.items() if v < 1]:
        raise ValueError(f"a ViT needs every one of {', '.join(named)} >= 1; got "
                         f"{', '.join(bad)}")
    if arch.size % arch.patch:
        fit = next(p for p in range(arch.patch, 0, -1) if arch.size % p == 0)
        raise ValueError(f"the patch must divide the image size; got patch={arch.patch}, "
                         f"size={arch.size}. Fix: a patch that divides {arch.size}, e.g. "
                         f"patch={fit}")
    if arch.width % arch.heads:
        raise ValueError(f"the heads ({arch.heads}) must divide the width ({arch.width})")
