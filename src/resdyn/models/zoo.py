"""The model zoo: turn a spec string (or an nn.Module) into an eval-mode network."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from .checkpoints import CheckpointError, load_checkpoint, load_state, read_state
from .resnets import CIFAR_DEPTHS, Arch, cifar_resnet, preresnet
from .stable import StableNet
from .vit import ViT

SHIPPED = Path(__file__).parent / "shipped"
DIGITS_DEPTHS = (20, 56, 110)
#: Checkpoints shipped in ``models/shipped`` (``NAME.safetensors``), loaded by name.
SHIPPED_NAMES = (*(f"digits-resnet{d}" for d in DIGITS_DEPTHS), "digits-vit")
TORCHVISION = ("resnet18", "resnet34", "resnet50", "vit_b_16")
_TORCHVISION_KIND = {"vit_b_16": "ViT-B/16, 224×224 inputs only"}
#: Suffixes of files holding weights only (a state dict), which go with --weights, not --model.
STATE_DICT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl")
PYTORCHCV_EXAMPLES = ("resnet20_cifar10", "resnet56_cifar10", "resnet110_cifar10",
                      "preresnet56_cifar10", "preresnet110_cifar10")


@dataclass(frozen=True)
class ModelCard:
    """What resdyn knows about a loaded model.

    Attributes:
        spec: the spec it was loaded from (a zoo name or a checkpoint path).
        input_shape: its natural (C, H, W) input shape (the architecture's design size).
        info: what a resdyn checkpoint stored with it (accuracy, data, ...); empty otherwise.
        trained_shape: (C, H, W) of the images its weights were trained on, when known:
            recorded in a resdyn checkpoint, or the natural size of pytorchcv and torchvision
            models (whose weights are their pretrained ones, downloaded or given as a file).
            None for randomly initialised zoo models, also when given a ``weights`` file.
        options: the build keywords of :func:`load_model` this model needs, so that
            ``load_model(card.spec, weights=FILE, **card.options)`` rebuilds the same
            architecture (e.g. in a worker process, from a saved state dict).

    Example:
        >>> card = model_card(load_model("digits-resnet20"))  # a shipped, trained checkpoint
        >>> isinstance(card, ModelCard), card.input_shape, card.trained_shape, card.info["classes"]
        (True, (1, 8, 8), (1, 8, 8), 10)
    """

    spec: str
    input_shape: tuple[int, int, int]
    info: dict[str, object] = field(default_factory=dict)
    trained_shape: tuple[int, int, int] | None = None
    options: dict[str, int] = field(default_factory=dict)


def model_card(model: nn.Module) -> ModelCard | None:
    """The card :func:`load_model` attached to ``model``, or None for a user's own module.

    Example:
        >>> from torch import nn
        >>> model_card(load_model("digits-resnet20")).spec, model_card(nn.Linear(2, 2))
        ('digits-resnet20', None)
    """
    return getattr(model, "resdyn_card", None)


def zoo_names() -> list[tuple[str, str]]:
    """(spec pattern, description) of every model family in the zoo.

    Example:
        >>> zoo_names()[0]
        ('cifar-resnet20', 'post-activation CIFAR ResNet-20 (paper 000), random init')
    """
    return [
        *[(f"cifar-resnet{d}", f"post-activation CIFAR ResNet-{d} (paper 000), random init")
          for d in CIFAR_DEPTHS],
        ("preresnet(L)", "pre-activation ResNet of paper 002, L blocks per section, random init"),
        *[(f"{f}-resnet(blocks=8,width=8,kernel=3,h=0.2,gamma=..)",
           f"paper 004's {d} (kernel=1: dense form for points), random init")
          for f, d in (("euler", "standard ResNet Y + h·σ(KY + b)"),
                       ("antisymmetric", "Y + h·σ(½(K − Kᵀ − γI)Y + b)"),
                       ("hamiltonian", "Verlet network on the state [Y; Z]"))],
        ("vit(blocks=4,width=64,heads=4,patch=2,mlp=128,size=8)",
         "Vision Transformer (torchvision's encoder blocks), random init"),
        *[(f"digits-resnet{d}", "CIFAR-style ResNet trained on digits, shipped with resdyn")
          for d in DIGITS_DEPTHS],
        ("digits-vit", "Vision Transformer trained on digits, shipped with resdyn"),
        ("pytorchcv:NAME", "pytorchcv model with its pretrained weights, e.g. "
         + ", ".join(f"pytorchcv:{n}" for n in PYTORCHCV_EXAMPLES[:3])),
        *[(f"torchvision:{n}", f"torchvision ImageNet {_TORCHVISION_KIND.get(n, 'ResNet')} "
           "(pretrained download or --weights)") for n in TORCHVISION],
        ("PATH.safetensors", "a checkpoint written by `resdyn train`"),
    ]


class UnknownModel(ValueError):
    """A model spec that names nothing in the zoo.

    Example:
        >>> load_model("resnet-9000")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        resdyn.models.zoo.UnknownModel: unknown model 'resnet-9000'; valid models: cifar-resnet20, ...
    """


def load_model(spec: str | Path | nn.Module, weights: str | Path | None = None, *,
               in_channels: int | None = None, num_classes: int | None = None) -> nn.Module:
    """Build or load a network and put it in eval mode.

    Args:
        spec: a zoo name (see ``resdyn models``), a ``.safetensors`` checkpoint of resdyn's (str
            or Path), or an nn.Module (a copy of it is returned, in eval mode, with ``weights``
            loaded; the module passed in is never changed).
        weights: a local state dict (``.pth`` read with ``weights_only=True``, or ``.safetensors``)
            loaded strictly into the built model instead of any pretrained download.
        in_channels: for resdyn's own architectures (default 3).
        num_classes: for resdyn's own architectures (default 10).

    Returns:
        the model in eval mode with a :class:`ModelCard` (see :func:`model_card`): its natural
        input shape, the shape its weights were trained on when known, and its build options,
        so that ``load_model(card.spec, weights=FILE, **card.options)`` rebuilds the same
        architecture.

    Raises:
        UnknownModel: the spec names nothing; the message lists the valid names.
        CheckpointError: a weights file that is unreadable or does not fit.
        RuntimeError: pretrained weights needed a download and the network is unreachable.

    Example:
        >>> model = load_model("cifar-resnet20")
        >>> card = model_card(model)
        >>> card.input_shape, card.trained_shape, card.options
        ((3, 32, 32), None, {'in_channels': 3, 'num_classes': 10})
    """
    if isinstance(spec, nn.Module):  # a copy: the caller's module keeps its mode and weights
        model = copy.deepcopy(spec)
        if weights is not None:
            load_state(model, read_state(weights), weights)
        return model.eval()
    model, card = _build(str(spec).strip(), weights, in_channels, num_classes)
    model.resdyn_card = card  # type: ignore[assignment]  # a plain attribute, not a submodule
    return model.eval()


def _build(spec: str, weights, in_channels, num_classes) -> tuple[nn.Module, ModelCard]:
    cin, ncls = in_channels or 3, num_classes or 10
    options = {"in_channels": cin, "num_classes": ncls}
    if m := re.fullmatch(r"cifar-resnet(\d+)", spec):
        depth = int(m.group(1))
        if depth not in CIFAR_DEPTHS:
            raise UnknownModel(f"cifar-resnet depth {depth} not in {CIFAR_DEPTHS}")
        model = _with_weights(cifar_resnet(depth, cin, ncls), weights)
        return model, ModelCard(spec, (cin, 32, 32), options=options)
    if m := re.fullmatch(r"preresnet(?:\((\d+)\)|-?(\d+))", spec):
        blocks = int(m.group(1) or m.group(2))
        model = _with_weights(preresnet(blocks, cin, ncls), weights)
        return model, ModelCard(spec, (cin, 32, 32), options=options)
    if m := re.fullmatch(r"(euler|antisymmetric|hamiltonian)-resnet(?:\((.*)\))?", spec):
        arch, size = stable_arch(m.group(1), m.group(2) or "", cin, ncls)
        model = _with_weights(StableNet(arch), weights)
        return model, ModelCard(spec, (cin, size, size), options=options)
    if m := re.fullmatch(r"vit(?:\((.*)\))?", spec):
        arch = vit_arch(m.group(1) or "", cin, ncls)
        model = _with_weights(ViT(arch), weights)
        return model, ModelCard(spec, (cin, arch.size, arch.size), options=options)
    if spec.startswith("digits-"):
        path = SHIPPED / f"{spec}.safetensors"
        if spec not in SHIPPED_NAMES or not path.is_file():
            raise UnknownModel(f"no shipped model {spec!r}; shipped: {list(SHIPPED_NAMES)}")
        return _checkpoint(spec, path, weights)
    if spec.endswith(".safetensors"):
        return _checkpoint(spec, spec, weights)
    # pretrained weights, downloaded or passed as a file (the offline route), were trained at
    # the family's natural size
    if spec.startswith("pytorchcv:"):
        shape = _pytorchcv_shape(spec)
        return _pytorchcv(spec.split(":", 1)[1], weights), ModelCard(spec, shape, trained_shape=shape)
    if spec.startswith("torchvision:"):
        shape = (3, 224, 224)
        return (_torchvision(spec.split(":", 1)[1], weights),
                ModelCard(spec, shape, trained_shape=shape))
    if spec.lower().endswith(STATE_DICT_SUFFIXES):
        raise UnknownModel(
            f"--model {spec!r} is a state dict (weights without an architecture), not a model: "
            f"pass it with --weights alongside an architecture --model, e.g. --model "
            f"cifar-resnet20 --weights {spec} (Python: load_model('cifar-resnet20', "
            f"weights={spec!r})); only a .safetensors written by `resdyn train` is a model")
    valid = ", ".join(n for n, _ in zoo_names())
    raise UnknownModel(f"unknown model {spec!r}; valid models: {valid}")


def _checkpoint(spec: str, path: str | Path, weights) -> tuple[nn.Module, ModelCard]:
    """A resdyn checkpoint: the architecture it stores, the shape it was trained on if recorded."""
    model, info = load_checkpoint(path)
    recorded = info.get("input_shape")
    trained = tuple(int(v) for v in recorded) if isinstance(recorded, list | tuple) else None
    arch: Arch = model.arch  # type: ignore[assignment]
    # a ViT takes its design size only; the ResNets take any size and were designed for 32x32
    shape = trained or (arch.in_channels, *((arch.size,) * 2 if arch.family == "vit" else (32, 32)))
    return _with_weights(model, weights), ModelCard(spec, shape, info, trained)  # type: ignore[arg-type]


STABLE_DEFAULTS: dict[str, int | float] = {"blocks": 8, "width": 8, "kernel": 3, "h": 0.2,
                                           "gamma": 0.0, "size": 32}
VIT_DEFAULTS: dict[str, int | float] = {"blocks": 4, "width": 64, "heads": 4, "patch": 2,
                                        "mlp": 128, "size": 8}


def parse_options(name: str, params: str, defaults: dict[str, int | float]) -> dict[str, int | float]:
    """``defaults`` updated from 'key=value,...' (each value of its default's type).

    Raises:
        UnknownModel: an unknown key or an item without a value (the message lists the keys),
            or a value that is not a number of the key's type.
    """
    values = dict(defaults)
    for item in filter(None, (p.strip() for p in params.split(","))):
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in values or not value.strip():
            raise UnknownModel(f"{name} takes key=value options among "
                               f"{', '.join(values)}; got {item!r}")
        kind = type(defaults[key])
        try:
            values[key] = kind(value)
        except ValueError:
            raise UnknownModel(f"{name} option {key} must be "
                               f"{'an integer' if kind is int else 'a number'}; got "
                               f"{value!r}") from None
    return values


def stable_arch(family: str, params: str, cin: int, ncls: int) -> tuple[Arch, int]:
    """Paper 004's network from ``family`` and 'key=value,...' (blocks, width, kernel, h, gamma,
    size: the input's height and width for the model card); returns (arch, size)."""
    defaults = dict(STABLE_DEFAULTS, gamma=0.01 if family == "antisymmetric" else 0.0)
    values = parse_options(f"{family}-resnet", params, defaults)
    if values["blocks"] < 1:
        raise ValueError(f"{family}-resnet needs a depth (blocks) of at least 1; got "
                         f"{values['blocks']}")
    arch = Arch(family, int(values["blocks"]), cin, ncls, int(values["width"]),
                int(values["kernel"]), float(values["h"]), float(values["gamma"]))
    return arch, int(values["size"])


def vit_arch(params: str, cin: int, ncls: int) -> Arch:
    """A Vision Transformer's :class:`Arch` from 'key=value,...' over :data:`VIT_DEFAULTS`:
    blocks (encoder blocks), width (hidden dimension), heads, patch (side of a square patch),
    mlp (MLP hidden dimension), size (input height and width, which the patch must divide)."""
    v = {k: int(x) for k, x in parse_options("vit", params, VIT_DEFAULTS).items()}
    return Arch("vit", v["blocks"], cin, ncls, v["width"], heads=v["heads"], patch=v["patch"],
                mlp=v["mlp"], size=v["size"])


def _with_weights(model: nn.Module, weights) -> nn.Module:
    if weights is not None:
        load_state(model, read_state(weights), weights)
    return model


def _pytorchcv_shape(spec: str) -> tuple[int, int, int]:
    return (3, 32, 32) if re.search(r"_(cifar10|cifar100|svhn)$", spec) else (3, 224, 224)


def _offline_error(what: str, e: Exception) -> RuntimeError:
    return RuntimeError(
        f"could not download the pretrained weights of {what} ({type(e).__name__}: {e}). "
        "This machine may be offline: download them on a connected machine and pass the file "
        "with --weights FILE (Python: load_model(spec, weights=FILE)).")


def _pytorchcv(name: str, weights) -> nn.Module:
    from pytorchcv.model_provider import get_model

    try:
        model = get_model(name, pretrained=False)
    except ValueError:
        raise UnknownModel(f"pytorchcv has no model {name!r}; e.g. "
                           + ", ".join(f"pytorchcv:{n}" for n in PYTORCHCV_EXAMPLES)) from None
    if weights is not None:
        return _with_weights(model, weights)
    try:
        return get_model(name, pretrained=True)
    except (OSError, ConnectionError) as e:
        raise _offline_error(f"pytorchcv:{name}", e) from None
    except Exception as e:  # pytorchcv wraps network failures in several types
        if "url" in str(e).lower() or "connect" in str(e).lower() or "resolve" in str(e).lower():
            raise _offline_error(f"pytorchcv:{name}", e) from None
        raise


def _torchvision(name: str, weights) -> nn.Module:
    import torchvision

    if name not in TORCHVISION:
        raise UnknownModel(f"unknown torchvision model {name!r}; valid: "
                           + ", ".join(f"torchvision:{n}" for n in TORCHVISION))
    if weights is not None:
        return _with_weights(torchvision.models.get_model(name, weights=None), weights)
    try:
        return torchvision.models.get_model(name, weights="DEFAULT")
    except (OSError, ConnectionError) as e:
        raise _offline_error(f"torchvision:{name}", e) from None


__all__ = ["CheckpointError", "ModelCard", "UnknownModel", "load_model", "model_card", "zoo_names"]
