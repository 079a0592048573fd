"""Adversarial (FGSM, PGD) and matched random perturbations of a batch of images.

All perturbations live in the model's *input* space: the already-normalised tensors the network
sees, ``(pixel - mean) / std``. A pixel-space budget ε_pix therefore becomes ε_c = ε_pix / std_c per
channel; pass such a per-channel ``eps`` where it matters. Input bounds are given in the same space
as ``(lo, hi)`` tensors broadcastable to (C, H, W), or ``None`` for an unbounded input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._torch import Seed, eval_mode, generator

Bounds = tuple[Tensor | float, Tensor | float]


@dataclass(frozen=True, eq=False)
class Attack:
    """An adversarial perturbation of a batch and what it did to the predictions.

    Attributes:
        delta: (B, C, H, W) perturbation actually applied, ``x_adv - x`` (after clipping to bounds).
        x_adv: (B, C, H, W) perturbed images.
        y: (B,) labels the loss was taken against.
        pred_clean, pred_adv: (B,) predicted classes on ``x`` and ``x_adv``.
        flipped: (B,) bool, ``pred_adv != pred_clean``.
        eps: the budget in input (normalised) space, one float or one per channel.
        method: ``"fgsm"``, ``"pgd-linf"`` or ``"pgd-l2"``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> a = fgsm(model, torch.zeros(2, 1, 2, 2), torch.tensor([0, 1]), 0.1)
        >>> isinstance(a, Attack), a.method, a.eps, a.delta.shape, a.flipped.dtype
        (True, 'fgsm', 0.1, torch.Size([2, 1, 2, 2]), torch.bool)
        >>> torch.equal(a.flipped, a.pred_adv != a.pred_clean), a.fooled.shape
        (True, torch.Size([2]))
    """

    delta: Tensor
    x_adv: Tensor
    y: Tensor
    pred_clean: Tensor
    pred_adv: Tensor
    flipped: Tensor
    eps: float | tuple[float, ...]
    method: str

    @property
    def fooled(self) -> Tensor:
        """(B,) bool: the perturbed image is misclassified (``pred_adv != y``)."""
        return self.pred_adv != self.y

    @property
    def l2(self) -> Tensor:
        """(B,) ℓ2 norm of each sample's ``delta``."""
        return self.delta.flatten(1).norm(dim=1)

    @property
    def linf(self) -> Tensor:
        """(B,) ℓ∞ norm of each sample's ``delta``."""
        return self.delta.flatten(1).abs().amax(dim=1)


# --------------------------------------------------------------------------- helpers


def _check_batch(x: object, y: object) -> None:
    if not isinstance(x, Tensor) or x.dim() < 2 or not x.is_floating_point():
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a floating batch of inputs (B, ...), e.g. images (B, C, H, "
                         f"W) or embedded contexts (B, T, d); got {got}")
    if not isinstance(y, Tensor) or y.shape != x.shape[:1] or y.is_floating_point():
        got = str((tuple(y.shape), y.dtype)) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(f"y must be integer class labels of shape ({x.shape[0]},) for a batch of "
                         f"{x.shape[0]}; got {got}. Pass torch.tensor(labels, dtype=torch.long).")


def _eps_tensor(eps: float | Sequence[float] | Tensor, x: Tensor,
                ) -> tuple[Tensor, float | tuple[float, ...]]:
    """eps as a (1, C, 1, 1) or scalar tensor of x's dtype, and as plain numbers for the record."""
    values = torch.as_tensor(eps, dtype=torch.float64).detach().cpu()
    channels = x.shape[1] if x.dim() == 4 else 0  # one budget per channel: images only
    if values.dim() == 0:
        record: float | tuple[float, ...] = float(values)
        shaped = values
    elif values.dim() == 1 and values.numel() == channels:
        record = tuple(float(v) for v in values)
        shaped = values.view(1, channels, 1, 1)
    else:
        raise ValueError(f"eps must be one number or one per channel ({channels}); "
                         f"got shape {tuple(values.shape)}")
    if not torch.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"eps must be finite and >= 0; got {record}")
    return shaped.to(dtype=x.dtype, device=x.device), record


def _bounds(bounds: Bounds | None, x: Tensor) -> tuple[Tensor, Tensor] | None:
    """(lo, hi) as tensors broadcast against x; checks lo <= hi and that x lies inside."""
    if bounds is None:
        return None
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError("bounds must be a pair (lo, hi) of tensors broadcastable to (C, H, W), "
                         f"or None for unbounded input; got {bounds!r}")
    lo, hi = (torch.as_tensor(b, dtype=x.dtype, device=x.device) for b in bounds)
    try:
        torch.broadcast_shapes(lo.shape, hi.shape, x.shape[1:])
    except RuntimeError as err:
        raise ValueError(f"bounds of shapes {tuple(lo.shape)}, {tuple(hi.shape)} do not broadcast "
                         f"to the image shape {tuple(x.shape[1:])}; use e.g. shape (C, 1, 1)"
                         ) from err
    if (lo > hi).any():
        raise ValueError("bounds must satisfy lo <= hi everywhere")
    scale = max(1.0, float(lo.abs().max()), float(hi.abs().max()))
    tol = 1e-5 * scale
    if (x < lo - tol).any() or (x > hi + tol).any():
        raise ValueError("x lies outside bounds (lo, hi): the images must already be inside the "
                         "valid input range (normalised space); clamp them first or pass "
                         "bounds=None")
    return lo, hi


def _clip(x: Tensor, bounds: tuple[Tensor, Tensor] | None) -> Tensor:
    if bounds is None:
        return x
    return torch.maximum(torch.minimum(x, bounds[1]), bounds[0])


def _loss_grad(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """∇ₓ Σ_b CE(model(x)_b, y_b), (B, C, H, W); parameter ``.grad`` fields are left untouched."""
    xr = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(xr), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, xr)
    return g


def _predict(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


def _per_sample(v: Tensor, like: Tensor) -> Tensor:
    """(B,) values viewed as (B, 1, ..., 1) for broadcasting against a batch ``like``."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def _finish(model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor, eps_record: float | tuple,
            method: str) -> Attack:
    pred_clean, pred_adv = _predict(model, x), _predict(model, x_adv)
    return Attack(x_adv - x, x_adv, y, pred_clean, pred_adv, pred_adv != pred_clean, eps_record,
                  method)


# --------------------------------------------------------------------------- FGSM


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float | Sequence[float] | Tensor, *,
         bounds: Bounds | None = None) -> Attack:
    """Fast gradient sign method: x_adv = clip(x + ε·sign(∇ₓ CE(model(x), y))).

    Args:
        model: classifier returning (B, num_classes) logits; run in eval mode, not mutated (its
            train/eval flags are restored and no parameter gradient is accumulated).
        x: (B, C, H, W) normalised images, inside ``bounds``.
        y: (B,) integer labels.
        eps: budget in the model's input (normalised) space: one number, or one per channel
            (ε_pix / std_c to express a pixel budget).
        bounds: (lo, hi) broadcastable to (C, H, W) in normalised space, or None (unbounded).

    Returns:
        :class:`Attack` with ``method="fgsm"``; ``delta`` is the step after clipping to bounds.

    Raises:
        ValueError: bad shapes, negative eps, or x outside bounds.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> x, y = torch.zeros(2, 1, 2, 2), torch.tensor([0, 1])
        >>> a = fgsm(model, x, y, 0.1, bounds=(-1.0, 1.0))
        >>> bool(a.linf.max() <= 0.1 + 1e-7), a.delta.shape
        (True, torch.Size([2, 1, 2, 2]))
    """
    _check_batch(x, y)
    eps_t, record = _eps_tensor(eps, x)
    box = _bounds(bounds, x)
    x = x.detach()
    with eval_mode(model):
        g = _loss_grad(model, x, y)
        x_adv = _clip(x + eps_t * g.sign(), box)
        return _finish(model, x, y, x_adv, record, "fgsm")


# --------------------------------------------------------------------------- PGD


@dataclass(frozen=True)
class _Ball:
    """One norm ball: a random start inside it, an ascent direction, and the projection."""

    start: Callable[[Tensor, Tensor, torch.Generator], Tensor]
    direction: Callable[[Tensor], Tensor]
    project: Callable[[Tensor, Tensor], Tensor]


def _linf_start(delta: Tensor, eps: Tensor, gen: torch.Generator) -> Tensor:
    u = torch.rand(delta.shape, generator=gen, dtype=delta.dtype)
    return (2 * u - 1).to(delta.device) * eps


def _l2_norm(v: Tensor) -> Tensor:
    return _per_sample(v.flatten(1).norm(dim=1), v)


def _l2_start(delta: Tensor, eps: Tensor, gen: torch.Generator) -> Tensor:
    # uniform in the ball: Gaussian direction, radius eps * U^(1/n)
    z = torch.randn(delta.shape, generator=gen, dtype=delta.dtype)
    u = torch.rand(delta.shape[0], generator=gen, dtype=delta.dtype)
    radius = _per_sample(u ** (1.0 / delta[0].numel()), delta)
    z = z / _l2_norm(z).clamp_min(torch.finfo(z.dtype).tiny)
    return (z * radius).to(delta.device) * eps


def _l2_direction(g: Tensor) -> Tensor:
    return g / _l2_norm(g).clamp_min(torch.finfo(g.dtype).tiny)


def _l2_project(delta: Tensor, eps: Tensor) -> Tensor:
    n = _l2_norm(delta)
    return delta * torch.where(n > eps, eps / n.clamp_min(torch.finfo(n.dtype).tiny),
                               torch.ones_like(n))


BALLS: dict[str, _Ball] = {
    "linf": _Ball(_linf_start, torch.sign, lambda d, e: torch.maximum(torch.minimum(d, e), -e)),
    "l2": _Ball(_l2_start, _l2_direction, _l2_project),
}


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float | Sequence[float] | Tensor, *,
        steps: int = 10, step_size: float | Sequence[float] | Tensor | None = None,
        bounds: Bounds | None = None, norm: str = "linf", seed: Seed | None = None) -> Attack:
    """Projected gradient ascent on CE(model(x + δ), y) over the ε-ball intersected with bounds.

    Each step: δ ← Proj_ε(δ + s·d(∇)), with d = sign for ``"linf"`` and d = ∇/‖∇‖₂ (per sample)
    for ``"l2"``; then x + δ is clipped to ``bounds``. The final iterate is returned.

    Args:
        model: as in :func:`fgsm`.
        x: as in :func:`fgsm`.
        y: as in :func:`fgsm`.
        eps: ball radius in the model's input (normalised) space; per channel allowed for ``"linf"``
            only (an ℓ2 radius is one number per sample).
        steps: number of ascent steps (>= 1).
        step_size: s; default 2.5·ε/steps.
        bounds: as in :func:`fgsm`.
        norm: ``"linf"`` or ``"l2"``.
        seed: int or torch.Generator for a uniform random start inside the ball; ``None`` starts
            from δ = 0 (no random start, i.e. iterated FGSM). With steps=1, step_size=eps and
            seed=None, ``"linf"`` PGD is exactly :func:`fgsm`.

    Returns:
        :class:`Attack` with ``method="pgd-linf"`` or ``"pgd-l2"``.

    Raises:
        ValueError: unknown norm (the valid names are listed), steps < 1, per-channel eps with
            ``"l2"``, or the checks of :func:`fgsm`.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> x, y = torch.zeros(2, 1, 2, 2), torch.tensor([0, 1])
        >>> a = pgd(model, x, y, 0.1, steps=5, seed=0)
        >>> bool(a.linf.max() <= 0.1 + 1e-7), a.method
        (True, 'pgd-linf')
    """
    if norm not in BALLS:
        raise ValueError(f"unknown norm {norm!r}; valid norms are {sorted(BALLS)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1; got {steps!r}")
    _check_batch(x, y)
    eps_t, record = _eps_tensor(eps, x)
    if norm == "l2" and eps_t.dim() > 0:
        raise ValueError("an l2 ball has one radius per sample: pass eps as a single number")
    if step_size is None:
        step_t = eps_t * (2.5 / steps)
    else:
        step_t, _ = _eps_tensor(step_size, x)
    box = _bounds(bounds, x)
    ball = BALLS[norm]
    x = x.detach()
    delta = torch.zeros_like(x)
    if seed is not None:
        delta = ball.start(delta, eps_t, generator(seed))
        delta = _clip(x + delta, box) - x
    with eval_mode(model):
        for _ in range(steps):
            g = _loss_grad(model, x + delta, y)
            delta = ball.project(delta + step_t * ball.direction(g), eps_t)
            delta = _clip(x + delta, box) - x
        return _finish(model, x, y, x + delta, record, f"pgd-{norm}")


# --------------------------------------------------------------------------- random


def random_like(delta: Tensor, *, seed: Seed) -> Tensor:
    """Uniform noise U(−1, 1) rescaled per sample to the ℓ2 norm of ``delta``.

    The paper's random perturbation "with the same magnitude as the adversarial one". The result is
    not clipped to input bounds (clipping would change its norm); a zero sample gives zero noise.

    Args:
        delta: (B, ...) reference perturbations, e.g. ``Attack.delta``.
        seed: int or torch.Generator (a Generator is advanced).

    Returns:
        (B, ...) tensor of delta's dtype and device with ‖r_b‖₂ = ‖δ_b‖₂ for every b.

    Example:
        >>> import torch
        >>> d = torch.full((2, 1, 3, 3), 0.1)
        >>> r = random_like(d, seed=0)
        >>> torch.allclose(r.flatten(1).norm(dim=1), d.flatten(1).norm(dim=1))
        True
    """
    if not isinstance(delta, Tensor) or delta.dim() < 1 or not delta.is_floating_point():
        raise ValueError("delta must be a floating tensor with a leading batch dimension (B, ...)")
    gen = generator(seed)
    noise = (2 * torch.rand(delta.shape, generator=gen, dtype=delta.dtype) - 1).to(delta.device)
    target = delta.detach().reshape(delta.shape[0], -1).norm(dim=1)
    have = noise.reshape(delta.shape[0], -1).norm(dim=1).clamp_min(torch.finfo(delta.dtype).tiny)
    return noise * (target / have).view(-1, *[1] * (delta.dim() - 1))
