"""Propagated perturbations: how far a perturbed image's activations drift from the clean ones.

For an image x, a perturbation δ and every residual unit k, the propagated perturbation is
δx_k = x_k(x + δ) − x_k(x). Its size is reported as an RMS, ‖δx_k‖₂ / sqrt(numel(x_k)), so that
activation maps of different stages (different C·H·W) compare (paper 000, §3.3, Figure 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import sqrt
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ..capture import capture
from ..models.units import Unit

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, eq=False)
class Propagation:
    """Sizes of the propagated perturbation at every unit, for every sample (CPU, float64).

    Attributes:
        names, stages, positions, kinds: per unit (K entries), from the :class:`Unit` list.
        in_sizes, out_sizes: per unit, numel of one sample's input / output activation map.
        delta_norm: (B,) RMS of δ itself, ‖δ_b‖₂ / sqrt(C·H·W).
        in_norm: (K, B) RMS of the perturbation entering unit k: ‖δx_k^in‖₂ / sqrt(in_size_k).
        out_norm: (K, B) RMS of the perturbation leaving unit k: ‖δx_k^out‖₂ / sqrt(out_size_k).
        growth: (K, B) ‖δx_k^out‖₂ / ‖δx_k^in‖₂ with *unnormalised* norms, the quantity a singular
            value of the unit's Jacobian bounds (for regular units it equals out_norm / in_norm);
            NaN where the incoming perturbation is exactly zero.
        pred_clean, pred_perturbed: (B,) predicted classes on x and on x + δ.

    Example:
        >>> import torch
        >>> from resdyn import units
        >>> from resdyn.models import cifar_resnet
        >>> m = cifar_resnet(8, in_channels=1).eval()
        >>> g = torch.Generator().manual_seed(0)
        >>> x, d = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
        >>> p = propagate(m, units(m, (1, 8, 8)), x, 1e-3 * d)
        >>> isinstance(p, Propagation), p.names, p.kinds
        (True, ('stages.0.0', 'stages.1.0', 'stages.2.0'), ('regular', 'downsampling', 'downsampling'))
        >>> p.in_sizes, p.out_norm.shape, p.growth.dtype
        ((1024, 1024, 512), torch.Size([3, 2]), torch.float64)
    """

    names: tuple[str, ...]
    stages: tuple[int, ...]
    positions: tuple[int, ...]
    kinds: tuple[str, ...]
    in_sizes: tuple[int, ...]
    out_sizes: tuple[int, ...]
    delta_norm: Tensor
    in_norm: Tensor
    out_norm: Tensor
    growth: Tensor
    pred_clean: Tensor
    pred_perturbed: Tensor

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per (unit, sample).

        Columns: unit, stage, position, kind, index (unit order), sample, in_norm, out_norm, growth,
        delta_norm, pred_clean, pred_perturbed.
        """
        import pandas as pd

        k, b = self.out_norm.shape
        rep = lambda seq: [v for v in seq for _ in range(b)]  # noqa: E731
        tile = lambda t: t.repeat(k).numpy()  # noqa: E731
        return pd.DataFrame({
            "unit": rep(self.names),
            "stage": rep(self.stages),
            "position": rep(self.positions),
            "kind": rep(self.kinds),
            "index": rep(range(k)),
            "sample": tile(torch.arange(b)),
            "in_norm": self.in_norm.reshape(-1).numpy(),
            "out_norm": self.out_norm.reshape(-1).numpy(),
            "growth": self.growth.reshape(-1).numpy(),
            "delta_norm": tile(self.delta_norm),
            "pred_clean": tile(self.pred_clean),
            "pred_perturbed": tile(self.pred_perturbed),
        })


def _norms(a: Tensor, b: Tensor) -> Tensor:
    """(B,) ℓ2 norm of a − b per sample, accumulated in float64."""
    return (a.double() - b.double()).flatten(1).norm(dim=1)


def propagate(model: nn.Module, unit_list: Sequence[Unit], x: Tensor, delta: Tensor,
              ) -> Propagation:
    """Record the perturbation δ as it travels through every unit of ``model``.

    Both x and x + δ go through the network in one eval-mode batch (BatchNorm uses running
    statistics, so samples do not interact); nothing is mutated.

    Args:
        model: the network the units belong to.
        unit_list: units from :func:`resdyn.units` on this model, in forward order.
        x: (B, C, H, W) clean images (normalised input space).
        delta: (B, C, H, W) perturbations, e.g. ``Attack.delta`` or :func:`random_like`.

    Returns:
        :class:`Propagation`; ``.to_frame()`` gives the tidy table.

    Raises:
        ValueError: shapes differ, empty unit list, or a unit that the forward pass never reached
            (units of a different model).

    Example:
        >>> import torch
        >>> from resdyn import load_model, units
        >>> m = load_model("cifar-resnet20", in_channels=1); us = units(m, (1, 8, 8))
        >>> x = torch.randn(2, 1, 8, 8)
        >>> p = propagate(m, us, x, 1e-3 * torch.randn(2, 1, 8, 8))
        >>> p.out_norm.shape, len(p.to_frame())
        (torch.Size([9, 2]), 18)
    """
    if not isinstance(x, Tensor) or x.dim() < 2:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a batch of inputs (B, ...), e.g. images (B, C, H, W); got "
                         f"{got}")
    if not isinstance(delta, Tensor) or delta.shape != x.shape:
        got = tuple(delta.shape) if isinstance(delta, Tensor) else type(delta).__name__
        raise ValueError(f"delta must have the shape of x {tuple(x.shape)}; got {got}")
    unit_list = list(unit_list)
    if not unit_list:
        raise ValueError("unit_list is empty: pass resdyn.units(model, input_shape)")
    x, delta = x.detach(), delta.detach().to(x.dtype)
    b = x.shape[0]
    acts = capture(model, torch.cat([x, x + delta]), unit_list)
    missing = [u.name for u in unit_list if u.name not in acts.outputs]
    if missing:
        raise ValueError(f"units {missing} were not reached by a forward pass of "
                         f"{type(model).__name__}: were they discovered on another model?")
    in_raw = torch.stack([_norms(acts.inputs[u.name][b:], acts.inputs[u.name][:b])
                          for u in unit_list]).cpu()
    out_raw = torch.stack([_norms(acts.outputs[u.name][b:], acts.outputs[u.name][:b])
                           for u in unit_list]).cpu()
    in_sizes = tuple(acts.inputs[u.name][0].numel() for u in unit_list)
    out_sizes = tuple(acts.outputs[u.name][0].numel() for u in unit_list)
    in_scale = torch.tensor([sqrt(n) for n in in_sizes], dtype=torch.float64).view(-1, 1)
    out_scale = torch.tensor([sqrt(n) for n in out_sizes], dtype=torch.float64).view(-1, 1)
    growth = torch.where(in_raw > 0, out_raw / in_raw.clamp_min(torch.finfo(torch.float64).tiny),
                         torch.full_like(in_raw, float("nan")))
    pred = acts.logits.argmax(dim=1).cpu()
    return Propagation(
        names=tuple(u.name for u in unit_list),
        stages=tuple(u.stage for u in unit_list),
        positions=tuple(u.position for u in unit_list),
        kinds=tuple(u.kind for u in unit_list),
        in_sizes=in_sizes,
        out_sizes=out_sizes,
        delta_norm=(delta.double().flatten(1).norm(dim=1) / sqrt(x[0].numel())).cpu(),
        in_norm=in_raw / in_scale,
        out_norm=out_raw / out_scale,
        growth=growth,
        pred_clean=pred[:b],
        pred_perturbed=pred[b:],
    )
