"""The model zoo: turn a spec string (or an nn.Module) into an eval-mode network."""

from __future__ import annotations

import copy
import difflib
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .checkpoints import CheckpointError, load_checkpoint, load_state, read_state
from .naming import RANDOM, UnknownModel
from .resnets import CIFAR_DEPTHS, Arch, cifar_resnet, preresnet
from .stable import StableNet
from .vit import ViT

SHIPPED = Path(__file__).parent / "shipped"
DIGITS_DEPTHS = (20, 32, 44, 56, 110)
#: Checkpoints shipped in ``models/shipped`` (``NAME.safetensors``), loaded by name.
SHIPPED_NAMES = (*(f"digits-resnet{d}" for d in DIGITS_DEPTHS), "digits-vit", "induction-gpt2")
#: Shipped checkpoints named after their data set, by the prefix of the name.
SHIPPED_PREFIXES = ("digits-", "induction-")
TORCHVISION_EXAMPLES = ("resnet50", "vit_b_16", "efficientnet_b3", "convnext_tiny")
TIMM_EXAMPLES = ("resnet50", "vit_base_patch16_224", "convnext_tiny", "test_vit")
_TORCHVISION_ALL = ("python -c 'import torchvision as tv; "
                    "print(tv.models.list_models(module=tv.models))'")
_TIMM_ALL = ("python -c 'import timm; print(timm.list_models())' "
             "(a filter: timm.list_models(\"*vit*\"))")
_TIMM_TAGS = "python -c 'import timm; print(timm.list_models(pretrained=True))'"
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
            None for randomly initialised zoo models, also when given a ``weights`` file, and
            for ``weights="random"`` (then ``info`` is ``{"weights": "random"}``).
        options: the build keywords of :func:`load_model` this model needs, so that
            ``load_model(card.spec, weights=FILE, **card.options)`` rebuilds the same
            architecture (e.g. in a worker process, from a saved state dict).

    Example:
        >>> card = model_card(load_model("digits-resnet20"))  # a shipped, trained checkpoint
        >>> isinstance(card, ModelCard), card.input_shape, card.trained_shape, card.info["classes"]
        (True, (1, 8, 8), (1, 8, 8), 10)
    """

    spec: str
    input_shape: tuple[int, ...]
    info: dict[str, object] = field(default_factory=dict)
    trained_shape: tuple[int, ...] | None = None
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
        ("gpt2(blocks=4,width=64,heads=4,mlp=256,context=32,vocab=64)",
         "causal language model (transformers' GPT-2), random init"),
        ("induction-gpt2", "GPT-2 trained on the embedded token language 'induction', shipped "
                           "with resdyn"),
        ("hf:FOLDER", "a transformers causal LM saved by save_pretrained (GPT-2, Llama, Qwen2, "
                      "Mistral, GPT-NeoX/Pythia), loaded offline"),
        ("pytorchcv:NAME", "pytorchcv model with its pretrained weights, e.g. "
         + ", ".join(f"pytorchcv:{n}" for n in PYTORCHCV_EXAMPLES[:3])),
        ("torchvision:NAME", _library_row("torchvision", _torchvision_names(),
                                           TORCHVISION_EXAMPLES, "classification models")),
        ("timm:NAME", _library_row("timm", _timm_names(), TIMM_EXAMPLES, "models")),
        ("PATH.safetensors", "a checkpoint written by `resdyn train`"),
    ]


def load_model(spec: str | Path | nn.Module, weights: str | Path | None = None, *,
               in_channels: int | None = None, num_classes: int | None = None) -> nn.Module:
    """Build or load a network and put it in eval mode.

    Args:
        spec: a zoo name (see ``resdyn models``): resdyn's own architectures, ``pytorchcv:NAME``,
            ``torchvision:NAME`` (any classification model torchvision lists), ``timm:NAME``
            (any model ``timm.list_models()`` lists, or a ``NAME.TAG`` of
            ``timm.list_models(pretrained=True)``); a ``.safetensors`` checkpoint of resdyn's
            (str or Path); or an nn.Module (a copy of it is returned, in eval mode, with
            ``weights`` loaded; the module passed in is never changed).
        weights: a local state dict (``.pth`` read with ``weights_only=True``, or ``.safetensors``)
            loaded strictly into the built model instead of any pretrained download; or
            :data:`RANDOM` (``"random"``, also as a Path: a file of that name must be given by
            another path): the architecture's random initialisation drawn with seed 0, so two
            loads give identical weights (the card's ``info["weights"]`` says ``"random"``).
            None: pytorchcv, torchvision and timm models download their pretrained weights;
            resdyn's own architectures are randomly initialised from the global RNG.
        in_channels: for resdyn's own architectures (default 3).
        num_classes: for resdyn's own architectures (default 10).

    Returns:
        the model in eval mode with a :class:`ModelCard` (see :func:`model_card`): its natural
        input shape (torchvision: its weights' crop size, timm: its default config's
        ``input_size``), the shape its weights were trained on when known, and its build
        options, so that ``load_model(card.spec, weights=FILE, **card.options)`` rebuilds the
        same architecture.

    Raises:
        UnknownModel: the spec names nothing; the message lists the valid names (for
            torchvision and timm: close matches and how to list all).
        CheckpointError: a weights file that is unreadable or does not fit.
        RuntimeError: pretrained weights needed a download and the network is unreachable, or
            ``timm:NAME`` without timm installed.
        ValueError: ``weights="random"`` for a trained checkpoint or a module, or a pretrained
            download asked of a model that has no pretrained weights.

    Example:
        >>> model = load_model("cifar-resnet20")
        >>> card = model_card(model)
        >>> card.input_shape, card.trained_shape, card.options
        ((3, 32, 32), None, {'in_channels': 3, 'num_classes': 10})
        >>> card = model_card(load_model("timm:test_vit", weights="random"))
        >>> card.input_shape, card.trained_shape, card.info
        ((3, 160, 160), None, {'weights': 'random'})
    """
    if isinstance(spec, nn.Module):  # a copy: the caller's module keeps its mode and weights
        if _is_random(weights):
            raise ValueError("weights='random' needs a zoo spec to initialise; a module keeps "
                             "its own weights (pass a weights file, or none)")
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
    if own := _own_architecture(spec, cin, ncls):
        build, shape = own
        with _seeded(weights):
            model = build()
        return _with_weights(model, weights), _card(spec, shape, weights, options=options)
    if spec.startswith("hf:"):
        return _hugging_face(spec, weights)
    if m := re.fullmatch(r"gpt2\((.*)\)", spec):
        return _gpt2(spec, m.group(1), weights, num_classes)
    if spec.startswith(SHIPPED_PREFIXES):
        path = SHIPPED / f"{spec}.safetensors"
        if spec not in SHIPPED_NAMES or not path.is_file():
            raise UnknownModel(f"no shipped model {spec!r}; shipped: {list(SHIPPED_NAMES)}")
        return _checkpoint(spec, path, weights)
    if spec.endswith(".safetensors"):
        return _checkpoint(spec, spec, weights)
    # pretrained weights, downloaded or passed as a file (the offline route), were trained at
    # the family's natural size
    library, _, name = spec.partition(":")
    if library in _LIBRARIES and name:
        model, shape = _LIBRARIES[library](name, weights)
        return model, _card(spec, shape, weights, pretrained=True)
    if spec.lower().endswith(STATE_DICT_SUFFIXES):
        raise UnknownModel(
            f"--model {spec!r} is a state dict (weights without an architecture), not a model: "
            f"pass it with --weights alongside an architecture --model, e.g. --model "
            f"cifar-resnet20 --weights {spec} (Python: load_model('cifar-resnet20', "
            f"weights={spec!r})); only a .safetensors written by `resdyn train` is a model")
    valid = ", ".join(n for n, _ in zoo_names())
    raise UnknownModel(f"unknown model {spec!r}; valid models: {valid}{_prefix_hint(spec)}")


def _own_architecture(spec: str, cin: int, ncls: int
                      ) -> tuple[Callable[[], nn.Module], tuple[int, int, int]] | None:
    """(builder, natural input shape) of resdyn's own architecture ``spec``, None for others."""
    if m := re.fullmatch(r"cifar-resnet(\d+)", spec):
        depth = int(m.group(1))
        if depth not in CIFAR_DEPTHS:
            raise UnknownModel(f"cifar-resnet depth {depth} not in {CIFAR_DEPTHS}")
        return (lambda: cifar_resnet(depth, cin, ncls)), (cin, 32, 32)
    if m := re.fullmatch(r"preresnet(?:\((\d+)\)|-?(\d+))", spec):
        blocks = int(m.group(1) or m.group(2))
        return (lambda: preresnet(blocks, cin, ncls)), (cin, 32, 32)
    if m := re.fullmatch(r"(euler|antisymmetric|hamiltonian)-resnet(?:\((.*)\))?", spec):
        arch, size = stable_arch(m.group(1), m.group(2) or "", cin, ncls)
        return (lambda: StableNet(arch)), (cin, size, size)
    if m := re.fullmatch(r"vit(?:\((.*)\))?", spec):
        vit = vit_arch(m.group(1) or "", cin, ncls)
        return (lambda: ViT(vit)), (cin, vit.size, vit.size)
    return None


def _gpt2(spec: str, params: str, weights, vocab: int | None) -> tuple[nn.Module, ModelCard]:
    """``gpt2(key=value,...)``: resdyn's small GPT-2 over :data:`GPT2_DEFAULTS`, random init;
    ``vocab`` (the data's, given as num_classes) unless the spec sets it."""
    from transformers import GPT2LMHeadModel

    from .language import CausalLM, gpt2_config

    given = parse_options("gpt2", params, GPT2_DEFAULTS)
    options = {k: int(v) for k, v in given.items()}
    if vocab is not None and "vocab=" not in params.replace(" ", ""):
        options["vocab"] = vocab
    if options["width"] % options["heads"]:
        raise UnknownModel(f"gpt2 width {options['width']} is not a multiple of heads "
                           f"{options['heads']}")
    with _seeded(weights):
        model = CausalLM(GPT2LMHeadModel(gpt2_config(options)))
    return model, _card(spec, (options["context"], options["width"]), weights,
                        options={"num_classes": options["vocab"]})


def _hugging_face(spec: str, weights) -> tuple[nn.Module, ModelCard]:
    """``hf:FOLDER``: a transformers causal LM saved by save_pretrained, loaded offline."""
    from .language import DEFAULT_TOKENS, load_hf

    if weights is not None and not _is_random(weights):
        raise ValueError(f"{spec}: a Hugging Face folder holds its own weights; --weights takes "
                         "only 'random' there (the folder's architecture, initialised with "
                         "seed 0)")
    model = load_hf(spec[3:], RANDOM if _is_random(weights) else None)
    shape = (min(model.context, DEFAULT_TOKENS), model.width)
    return model, _card(spec, shape, weights)


def _card(spec: str, shape: tuple[int, ...], weights, *, pretrained: bool = False,
          options: dict[str, int] | None = None) -> ModelCard:
    """The card of a built architecture: random weights are trained on nothing and say so."""
    if _is_random(weights):
        return ModelCard(spec, shape, {"weights": RANDOM}, None, options or {})
    return ModelCard(spec, shape, trained_shape=shape if pretrained else None,
                     options=options or {})


def _prefix_hint(spec: str) -> str:
    """'; did you mean torchvision:NAME?' for a bare name that a library lists."""
    found = [f"{lib}:{spec}" for lib, names in (("torchvision", _torchvision_names()),
                                                ("timm", _timm_names()))
             if names is not None and spec in names]
    return f"; did you mean {' or '.join(found)}?" if found else ""


def _checkpoint(spec: str, path: str | Path, weights) -> tuple[nn.Module, ModelCard]:
    """A resdyn checkpoint: the architecture it stores, the shape it was trained on if recorded."""
    if _is_random(weights):
        raise ValueError(f"{spec} is a trained checkpoint: weights='random' applies to an "
                         "architecture (e.g. cifar-resnet56, vit(...)), not to a checkpoint")
    model, info = load_checkpoint(path)
    recorded = info.get("input_shape")
    trained = tuple(int(v) for v in recorded) if isinstance(recorded, list | tuple) else None
    arch = getattr(model, "arch", None)
    if arch is None:  # a causal LM: its context and width
        shape = trained or (model.context, model.width)  # type: ignore[assignment]
    else:  # a ViT takes its design size only; the ResNets take any size, designed for 32x32
        shape = trained or (arch.in_channels,
                            *((arch.size,) * 2 if arch.family == "vit" else (32, 32)))
    return _with_weights(model, weights), ModelCard(spec, shape, info, trained)  # type: ignore[arg-type]


STABLE_DEFAULTS: dict[str, int | float] = {"blocks": 8, "width": 8, "kernel": 3, "h": 0.2,
                                           "gamma": 0.0, "size": 32}
#: ``gpt2(...)``: resdyn's small GPT-2 (transformers' architecture) for token data; ``vocab``
#: is the data's vocabulary (``num_classes`` when given), ``context`` its longest context.
GPT2_DEFAULTS: dict[str, int | float] = {"blocks": 4, "width": 64, "heads": 4, "mlp": 256,
                                         "context": 32, "vocab": 64}
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


def _is_random(weights) -> bool:
    return weights is not None and str(weights) == RANDOM


@contextmanager
def _seeded(weights) -> Iterator[None]:
    """Build inside this for ``weights``: with RANDOM, under seed 0 and leaving the caller's RNG
    as it was (the run identity hashes the weights, so two loads must draw the same)."""
    if not _is_random(weights):
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(0)  # the CPU generator only: models build there
        yield


def _with_weights(model: nn.Module, weights) -> nn.Module:
    if weights is not None and not _is_random(weights):
        load_state(model, read_state(weights), weights)
    return model


def _pytorchcv_shape(spec: str) -> tuple[int, int, int]:
    return (3, 32, 32) if re.search(r"_(cifar10|cifar100|svhn)$", spec) else (3, 224, 224)


def _offline_error(what: str, e: Exception) -> RuntimeError:
    return RuntimeError(
        f"could not download the pretrained weights of {what} ({type(e).__name__}: {e}). "
        "This machine may be offline: download them on a connected machine and pass the file "
        "with --weights FILE (Python: load_model(spec, weights=FILE)), or analyse the "
        "architecture with random weights: --weights random (weights='random').")


def _network_failure(e: BaseException | None) -> bool:
    """Whether ``e`` (or what caused it) is a failed download: libraries wrap those in OSError
    (urllib, requests, huggingface_hub), httpx's own errors, or RuntimeErrors naming a url."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        module = type(e).__module__.split(".")[0]
        text = str(e).lower()
        if (isinstance(e, OSError) or module in ("httpx", "httpx2", "requests", "urllib3")
                or any(w in text for w in ("url", "connect", "resolve", "offline", "network"))):
            return True
        e = e.__cause__ or e.__context__
    return False


def _unknown(library: str, name: str, names: list[str], list_all: str) -> UnknownModel:
    close = difflib.get_close_matches(name, names, n=5)
    hint = (f"close matches: {', '.join(f'{library}:{c}' for c in close)}" if close
            else "no close match")
    return UnknownModel(f"{library} has no model {name!r}; {hint}; all {len(names)} names: "
                        f"{list_all}")


def _library_row(library: str, names: list[str] | None, examples: tuple[str, ...],
                 what: str) -> str:
    if names is None:
        return f"any of timm's {what} (timm is not installed: pip install timm)"
    return (f"any of the {len(names)} {what} {library} lists, e.g. "
            + ", ".join(f"{library}:{n}" for n in examples)
            + ": pretrained download, --weights FILE or --weights random")


def _pytorchcv(name: str, weights) -> tuple[nn.Module, tuple[int, int, int]]:
    from pytorchcv.model_provider import get_model

    try:
        with _seeded(weights):
            model = get_model(name, pretrained=False)
    except ValueError:
        raise UnknownModel(f"pytorchcv has no model {name!r}; e.g. "
                           + ", ".join(f"pytorchcv:{n}" for n in PYTORCHCV_EXAMPLES)) from None
    shape = _pytorchcv_shape(name)
    if weights is not None:
        return _with_weights(model, weights), shape
    try:
        return get_model(name, pretrained=True), shape
    except Exception as e:  # pytorchcv wraps network failures in several types
        if _network_failure(e):
            raise _offline_error(f"pytorchcv:{name}", e) from None
        raise


def _torchvision_names() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def _torchvision(name: str, weights) -> tuple[nn.Module, tuple[int, int, int]]:
    """Any classification model of torchvision; its input shape is its weights' crop size."""
    from torchvision import models

    names = _torchvision_names()
    if name not in names:
        raise _unknown("torchvision", name, names, _TORCHVISION_ALL)
    try:
        default = models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError):  # a builder without weights metadata
        default = None
    crop = getattr(default.transforms(), "crop_size", None) if default is not None else None
    size = (224, 224) if not crop else (int(crop[0]), int(crop[-1]))
    # what the builders set when they load pretrained weights, set on every route, so that a
    # state dict (a file, or a run's saved model) rebuilds the very network the download gives
    kwargs: dict[str, object] = {}
    if name in ("inception_v3", "googlenet"):
        kwargs = {"transform_input": True, "aux_logits": True, "init_weights": False}
    elif default is not None and name.startswith("vit_"):
        kwargs = {"image_size": default.meta["min_size"][0]}
    elif default is not None and name.startswith("maxvit"):
        kwargs = {"input_size": default.meta["min_size"]}
    if weights is not None:
        with _seeded(weights):
            model = models.get_model(name, weights=None, **kwargs)
        return _with_weights(model, weights), (3, *size)
    if default is None:
        raise ValueError(f"torchvision:{name} has no pretrained weights: pass --weights FILE or "
                         "--weights random")
    try:
        with warnings.catch_warnings():  # googlenet's aux heads, kept for the above, unused in eval
            warnings.filterwarnings("ignore", "auxiliary heads", UserWarning)
            return models.get_model(name, weights=default, **kwargs), (3, *size)
    except Exception as e:
        if _network_failure(e):
            raise _offline_error(f"torchvision:{name}", e) from None
        raise


def _timm_names() -> list[str] | None:
    try:
        import timm
    except ImportError:
        return None
    return timm.list_models()


def _timm(name: str, weights) -> tuple[nn.Module, tuple[int, int, int]]:
    """Any model of timm (``NAME`` or ``NAME.TAG``); its input shape from its default config."""
    try:
        import timm
        from timm.data import resolve_model_data_config
    except ImportError:
        raise RuntimeError(f"timm:{name} needs timm, which is not installed: pip install timm "
                           "(or pip install 'resdyn[vit]')") from None
    names = timm.list_models()
    if name not in names and name not in timm.list_models(pretrained=True):
        if "." in name:  # NAME.TAG: a pretrained tag
            raise _unknown("timm", name, timm.list_models(pretrained=True), _TIMM_TAGS)
        raise _unknown("timm", name, names, _TIMM_ALL)
    if weights is not None:
        with _seeded(weights):
            model = timm.create_model(name, pretrained=False)
        model = _with_weights(model, weights)
    else:
        cfg = timm.models.get_pretrained_cfg(name)
        if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file or cfg.state_dict):
            raise ValueError(f"timm:{name} has no pretrained weights in timm: pass "
                             "--weights FILE or --weights random")
        try:
            model = timm.create_model(name, pretrained=True)
        except Exception as e:  # timm and huggingface_hub raise various errors offline
            if _network_failure(e):
                raise _offline_error(f"timm:{name}", e) from None
            raise
    c, h, w = resolve_model_data_config(model)["input_size"]
    return model, (int(c), int(h), int(w))


_LIBRARIES = {"pytorchcv": _pytorchcv, "torchvision": _torchvision, "timm": _timm}

__all__ = ["CheckpointError", "ModelCard", "RANDOM", "UnknownModel", "load_model", "model_card",
           "zoo_names"]
