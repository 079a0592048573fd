"""Interventions on a network that never touch the original: interpolated weights.

:func:`interpolate_weights` returns a deep copy. Skip scaling needs no copy at all: a unit with
its shortcut scaled by α is ``unit.forward(x, alpha)``, and its Jacobian is
``unit_jacobian(unit, x, alpha=alpha)`` (see :mod:`resdyn.operators.jacobian`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .._torch import generator


def _names_list(names: str | Sequence[str], what: str) -> list[str]:
    if isinstance(names, str):
        names = [names]
    out = list(dict.fromkeys(names))
    if not out or not all(isinstance(n, str) for n in out):
        raise ValueError(f"{what} must be a non-empty list of module names, e.g. ['stages.0.1']; "
                         f"got {names!r}")
    return out


def _check_present(model: nn.Module, names: list[str]) -> None:
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise KeyError(f"{type(model).__name__} has no submodule(s) {missing}; list the units with "
                       "[u.name for u in resdyn.units(model)]")


def _linear_like(m: nn.Module) -> bool:
    """transformers' ``Conv1D`` (GPT-2's linear layers, weight stored transposed)."""
    return type(m).__name__ == "Conv1D" and type(m).__module__.startswith("transformers")


def _weights(module: nn.Module) -> list[Tensor]:
    """Weight tensors of the conv, linear and attention layers inside ``module``, in
    registration order (an attention's input projections before its output projection)."""
    kinds = (nn.modules.conv._ConvNd, nn.Linear, nn.Bilinear)
    out: list[Tensor] = []
    for m in module.modules():
        if isinstance(m, nn.MultiheadAttention):
            out += [w for w in (m.in_proj_weight, m.q_proj_weight, m.k_proj_weight,
                                m.v_proj_weight) if isinstance(w, Tensor)]
        elif (isinstance(m, kinds) or _linear_like(m)) and isinstance(
                w := getattr(m, "weight", None), Tensor):
            out.append(w)
    return out


def interpolate_weights(model: nn.Module, unit_names: str | Sequence[str], t: float, *,
                        seed: int | torch.Generator) -> nn.Module:
    """A deep copy where each named unit's weights are θ̂(t) = tθ + (1 − t)η (paper 000, eq. 3).

    What is interpolated: the ``weight`` tensor of every convolution and linear layer inside each
    named unit (shortcut projections included), and an attention's query/key/value projections.
    A transformer's sub-layer is named by its step's module (``"...encoder_layer_0.mlp"``): its
    LayerNorm, like a BatchNorm, is left as it is. Each noise tensor η is drawn N(0, 1) and rescaled
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
    gen = generator(seed)
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


def calibrate_batchnorm(model: nn.Module, input_shape: Sequence[int], *, batches: int = 8,
                        batch: int = 64, seed: int = 0) -> nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are those of random images.

    A network with random weights (``load_model("cifar-resnet56")`` without a checkpoint) has
    running statistics of 0 and 1, so in eval mode its ReLUs keep or kill outputs unlike any
    trained network. This sets them to the cumulative averages over ``batches`` batches of
    standard normal images (train-mode forward passes on a copy; the original is untouched),
    which gives a realistic share of killed outputs (34-38 % on CIFAR-shaped ResNet-56).

    Args:
        model: any network with BatchNorm layers.
        input_shape: (C, H, W) of one image.
        batches: how many batches.
        batch: how many images in each.
        seed: the images' seed.

    Returns:
        the calibrated copy, in eval mode.

    Example:
        >>> from resdyn.models import cifar_resnet
        >>> m = cifar_resnet(8, in_channels=1).eval()
        >>> cal = calibrate_batchnorm(m, (1, 8, 8), batches=2, batch=4, seed=0)
        >>> bn, bn0 = cal.stem[1], m.stem[1]  # the stem's BatchNorm in the copy and the original
        >>> cal.training, bool((bn.running_var != 1).all()), bool((bn0.running_var == 1).all())
        (False, True, True)
    """
    clone = copy.deepcopy(model)
    for m in clone.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    g = generator(seed)
    clone.train()
    with torch.no_grad():
        for _ in range(batches):
            clone(torch.randn(batch, *input_shape, generator=g))
    return clone.eval()
