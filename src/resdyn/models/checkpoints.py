"""Safe loading and saving of weights: resdyn safetensors with metadata, foreign state dicts."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .language import CausalLM, config_dict, from_config
from .resnets import Arch, ResNet
from .stable import STABLE_FAMILIES, StableNet
from .vit import ViT


def build_network(arch: Arch) -> nn.Module:
    """A resdyn network of architecture ``arch`` (random weights)."""
    if arch.family == "vit":
        return ViT(arch)
    return StableNet(arch) if arch.family in STABLE_FAMILIES else ResNet(arch)


class CheckpointError(ValueError):
    """A weights file that cannot be read or does not fit the model.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from resdyn import load_model
        >>> bad = Path(tempfile.mkdtemp()) / "bad.safetensors"
        >>> _ = bad.write_bytes(b"not a checkpoint")
        >>> load_model(str(bad))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        resdyn.models.checkpoints.CheckpointError: ...bad.safetensors: not a readable safetensors file ...
    """


def save_checkpoint(model: nn.Module, path: str | Path, info: dict[str, object] | None = None,
                    dtype: torch.dtype = torch.float16) -> None:
    """Write a resdyn network's weights and architecture (``model.arch``) and ``info`` (e.g.
    accuracy) to safetensors.

    Floating tensors are stored as ``dtype`` (float16 keeps shipped files small); load them
    back with :func:`load_checkpoint`, which returns float32 weights.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from resdyn.models import preresnet
        >>> path = Path(tempfile.mkdtemp()) / "net.safetensors"
        >>> save_checkpoint(preresnet(1, in_channels=1), path, info={"note": "demo"})
        >>> from safetensors.torch import load_file
        >>> load_file(path)["fc.weight"].dtype  # stored as float16
        torch.float16
    """
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous().cpu()
               for k, v in _untied(model).items()}
    meta = {"format": "resdyn", "arch": json.dumps(_arch_dict(model)),
            "info": json.dumps(info or {})}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata header of a safetensors file (no tensors loaded)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # noqa: BLE001 - any failure of the header parser means a bad file
        raise CheckpointError(f"{path}: not a readable safetensors file ({_reason(e)}); expected "
                              "one written by `resdyn train` or save_checkpoint") from None


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, object]]:
    """Rebuild a resdyn network from a file written by :func:`save_checkpoint`.

    Returns:
        (model in eval mode, float32; info dict stored with it)

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from resdyn.models import preresnet
        >>> path = Path(tempfile.mkdtemp()) / "net.safetensors"
        >>> save_checkpoint(preresnet(1, in_channels=1), path, info={"note": "demo"})
        >>> model, info = load_checkpoint(path)
        >>> model.arch.family, model.arch.in_channels, info
        ('preresnet', 1, {'note': 'demo'})
        >>> next(model.parameters()).dtype, model.training
        (torch.float32, False)
    """
    meta = read_metadata(path)
    if meta.get("format") != "resdyn" or "arch" not in meta:
        raise CheckpointError(f"{path}: a safetensors file without resdyn architecture metadata; "
                              "load it into a model with --weights instead of --model")
    recorded = json.loads(meta["arch"])
    if recorded.get("family") == LM_FAMILY:
        model: nn.Module = from_config(recorded["config"])
        load_state(model, read_state(path), path, tied=_tied(model))
    else:
        model = build_network(Arch.from_dict(recorded))
        load_state(model, read_state(path), path)
    return model.float().eval(), json.loads(meta.get("info", "{}"))


#: The family recorded for a causal language model (its transformers config beside it).
LM_FAMILY = "causal-lm"


def _arch_dict(model: nn.Module) -> dict:
    if isinstance(model, CausalLM):
        return {"family": LM_FAMILY, "config": config_dict(model)}
    arch: Arch = model.arch  # type: ignore[assignment]  # resdyn's networks carry their Arch
    return arch.to_dict()


def _tied(model: nn.Module) -> set[str]:
    """State-dict keys whose tensor is an earlier key's (tied weights: GPT-2's output layer is
    its token embedding), which a file stores once."""
    seen: set[int] = set()
    tied = set()
    for k, v in model.state_dict(keep_vars=True).items():
        if id(v) in seen:
            tied.add(k)
        seen.add(id(v))
    return tied


def _untied(model: nn.Module) -> dict[str, torch.Tensor]:
    tied = _tied(model)
    return {k: v for k, v in model.state_dict().items() if k not in tied}


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or ``.pth``/``.pt`` (tensors only, never pickled code).

    Raises:
        CheckpointError: no such file, or a file that is not a valid state dict of tensors
            (corrupt, truncated, another format, or pickled Python objects); the message names
            the file.
    """
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"weights file {p} is a folder; expected a state dict file "
                              "(.pth/.pt or .safetensors)")
    if not p.is_file():
        raise CheckpointError(f"weights file {p} does not exist")
    expected = ("Expected a state dict of tensors saved with torch.save(model.state_dict(), "
                "FILE) or a .safetensors file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p} is not a valid state dict: the file is empty. {expected}")
    try:
        if p.suffix == ".safetensors":
            return _tensors_only(p, load_file(str(p)), expected)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol notice says nothing useful here
            state = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{p} is not a valid state dict: torch's safe loader refused it "
                              "(corrupt, or Python objects besides tensors, which are never "
                              "unpickled). Re-save it with torch.save(model.state_dict(), FILE) "
                              "or as .safetensors") from None
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt file fails anywhere in the unpickler
        raise CheckpointError(f"{p} is not a valid state dict (corrupt, truncated or another "
                              f"format; the loader said: {_reason(e)}). "
                              f"{expected}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return _tensors_only(p, state, expected)


def _tensors_only(p: Path, state: object, expected: str) -> dict[str, torch.Tensor]:
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{p} is not a valid state dict: it holds a {type(state).__name__}, "
                              f"not a dict of tensors. {expected}")
    return state


def _reason(e: Exception) -> str:
    """The first sentence of an exception's message, with its type when the message says little."""
    first = str(e).strip().splitlines()[0].split(". ")[0].rstrip(".") if str(e).strip() else ""
    return f"{type(e).__name__}: {first}" if len(first) < 12 else first


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path,
               tied: frozenset[str] | set[str] = frozenset()) -> None:
    """Load ``state`` into ``model`` strictly, naming the file and the mismatched keys on failure
    (``tied``: keys that may be missing because they share an earlier key's tensor)."""
    own = model.state_dict()
    state = {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel checkpoints
    missing = sorted(set(own) - set(state) - set(tied))
    unexpected = sorted(set(state) - set(own))
    bad_shape = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or bad_shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}")
        if bad_shape:
            parts.append(f"{len(bad_shape)} shape mismatch(es), e.g. {bad_shape[:2]}")
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=not tied)
