"""Interventions on a network that never touch the original: scaled skips, interpolated weights.

Both functions return a deep copy. For spectra of one unit with a scaled skip no copy is needed:
``unit.forward(x, alpha)`` computes the same thing on the fly.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .adapters import recognise


class SkipScaled(nn.Module):
    """A residual unit whose shortcut is scaled: activation(α·shortcut(x) + residual(x)).

    The wrapped unit is kept whole as ``.unit`` (its parameters are shared with nothing outside
    the copy :func:`with_skip_scale` made); its parts are looked up on every call, so deep copies
    of the wrapper stay self-contained.
    """

    def __init__(self, unit: nn.Module, alpha: float):
        super().__init__()
        self.unit = unit
        self.alpha = float(alpha)

    def forward(self, x: Tensor) -> Tensor:
        parts = recognise(self.unit)
        if parts is None:  # checked by with_skip_scale; guards hand-made wrappers
            raise ValueError(f"{type(self.unit).__name__} has no known shortcut/residual split")
        return parts.activation(self.alpha * parts.shortcut(x) + parts.residual(x))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


def _unit_names(model: nn.Module) -> list[str]:
    """Paths of the outermost recognised residual units, as :func:`resdyn.units` finds them."""
    found = [n for n, m in model.named_modules() if n and recognise(m) is not None]
    return [n for n in found if not any(n.startswith(o + ".") for o in found if o != n)]


def _names_list(names: str | Sequence[str], what: str) -> list[str]:
    if isinstance(names, str):
        names = [names]
    out = list(dict.fromkeys(names))
    if not out or not all(isinstance(n, str) for n in out):
        raise ValueError(f"{what} must be a non-empty list of module names, e.g. ['stages.0.1']; "
                         f"got {names!r}")
    return out


def _check_present(model: nn.Module, names: list[str]) -> dict[str, nn.Module]:
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise KeyError(f"{type(model).__name__} has no submodule(s) {missing}; list the units with "
                       "[u.name for u in resdyn.units(model, input_shape)]")
    return modules


def with_skip_scale(model: nn.Module, alpha: float, names: str | Sequence[str] | None = None,
                    ) -> nn.Module:
    """A deep copy of ``model`` whose chosen units compute activation(α·S(x) + R(x)).

    Each chosen unit is wrapped in :class:`SkipScaled` at the same path (so its parameters move
    one level down: ``stages.0.1.residual.0.weight`` becomes ``stages.0.1.unit.residual.0.weight``).
    The original model is not modified.

    Args:
        model: any network whose units resdyn recognises (see :func:`resdyn.units`).
        alpha: skip scale α (a finite float); α = 1 reproduces the model.
        names: module paths of the units to scale; None scales every recognised unit.

    Returns:
        nn.Module, a copy with the same train/eval state as ``model``.

    Raises:
        KeyError: a name is not a submodule.
        ValueError: a named module has no known shortcut/residual split, names are nested, the
            model is already skip-scaled, alpha is not finite, or nothing is recognised.

    Example:
        >>> import torch
        >>> from resdyn import load_model
        >>> m = load_model("cifar-resnet20", in_channels=1)
        >>> half = with_skip_scale(m, 0.5, names=["stages.0.0"])
        >>> type(half.stages[0][0]).__name__, type(m.stages[0][0]).__name__
        ('SkipScaled', 'ResidualUnit')
    """
    alpha = float(alpha)
    if not torch.isfinite(torch.tensor(alpha)):
        raise ValueError(f"alpha must be finite; got {alpha}")
    if any(isinstance(m, SkipScaled) for m in model.modules()):
        raise ValueError("model already has skip-scaled units; scale the original model instead")
    if names is None:
        chosen = _unit_names(model)
        if not chosen:
            raise ValueError(f"no residual units recognised in {type(model).__name__}; pass names= "
                             "of units resdyn can split into shortcut and residual")
    else:
        chosen = _names_list(names, "names")
        modules = _check_present(model, chosen)
        unknown = [f"{n} ({type(modules[n]).__name__})" for n in chosen
                   if recognise(modules[n]) is None]
        if unknown:
            raise ValueError(f"cannot scale the skip of {unknown}: resdyn knows no "
                             "shortcut/residual split for these modules (resdyn ResidualUnit, "
                             "pytorchcv ResUnit/PreResUnit, torchvision-style BasicBlock/"
                             "Bottleneck are supported)")
        nested = [n for n in chosen if any(n.startswith(o + ".") for o in chosen if o != n)]
        if nested:
            raise ValueError(f"units {nested} lie inside other chosen units; name each unit once")
    new = copy.deepcopy(model)
    if chosen == [""]:
        return SkipScaled(new, alpha).train(new.training)
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = new.get_submodule(parent_name)
        unit = parent.get_submodule(child)
        setattr(parent, child, SkipScaled(unit, alpha).train(unit.training))
    return new


def _weights(module: nn.Module) -> list[nn.Parameter]:
    """Weight tensors of the conv and linear layers inside ``module``, in registration order."""
    kinds = (nn.modules.conv._ConvNd, nn.Linear, nn.Bilinear)
    return [m.weight for m in module.modules()
            if isinstance(m, kinds) and isinstance(getattr(m, "weight", None), Tensor)]


def _generator(seed: int | torch.Generator) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or a torch.Generator; got {type(seed).__name__}")
    return torch.Generator().manual_seed(seed)


def interpolate_weights(model: nn.Module, unit_names: str | Sequence[str], t: float, *,
                        seed: int | torch.Generator) -> nn.Module:
    """A deep copy where each named unit's weights are θ̂(t) = tθ + (1 − t)η (paper 000, eq. 3).

    What is interpolated: the ``weight`` tensor of every convolution and linear layer inside each
    named unit (shortcut projections included). Each noise tensor η is drawn N(0, 1) and rescaled
    to the Frobenius norm of its own θ tensor (‖η‖ = ‖θ‖ per tensor, so every layer keeps its
    scale). Biases and BatchNorm affine parameters and running statistics are left as they are:
    the paper varies "the weights of the convolution operators"; BN then still normalises.

    η is drawn in float64 on the CPU in the order (unit_names order, then module order), so the
    same seed gives the same η on any device and for every t: a sweep over t with one seed moves
    along one straight line from η (t = 0) to θ (t = 1). t = 1 returns the weights unchanged.

    Args:
        model: the network; not modified.
        unit_names: module paths (e.g. ``[u.name for u in units(model, shape)][:1]``) or one path.
        t: interpolation weight in [0, 1].
        seed: int or torch.Generator (a Generator is advanced).

    Returns:
        nn.Module, the modified copy (same train/eval state as ``model``).

    Raises:
        KeyError: a name is not a submodule.
        ValueError: t outside [0, 1], or a named module holds no conv/linear weight.

    Example:
        >>> from resdyn import load_model
        >>> m = load_model("cifar-resnet20", in_channels=1)
        >>> noisy = interpolate_weights(m, ["stages.0.1"], 0.0, seed=0)
        >>> w, w0 = noisy.stages[0][1].residual[0].weight, m.stages[0][1].residual[0].weight
        >>> bool(abs(w.norm() - w0.norm()) < 1e-4), bool((w != w0).any())
        (True, True)
    """
    chosen = _names_list(unit_names, "unit_names")
    t = float(t)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must lie in [0, 1] (t = 1 is the trained weights); got {t}")
    _check_present(model, chosen)
    gen = _generator(seed)
    new = copy.deepcopy(model)
    done: set[int] = set()
    with torch.no_grad():
        for name in chosen:
            ws = _weights(new.get_submodule(name))
            if not ws:
                raise ValueError(f"module {name!r} holds no convolution or linear weight to "
                                 "interpolate")
            for w in ws:
                if id(w) in done:  # shared or nested: interpolate each tensor once
                    continue
                done.add(id(w))
                eta = torch.randn(w.shape, generator=gen, dtype=torch.float64)
                theta = w.detach().to(dtype=torch.float64, device="cpu")
                eta = eta * (theta.norm() / eta.norm().clamp_min(torch.finfo(eta.dtype).tiny))
                w.copy_((t * theta + (1.0 - t) * eta).to(dtype=w.dtype, device=w.device))
    return new
