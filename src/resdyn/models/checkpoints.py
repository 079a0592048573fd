"""Safe loading and saving of weights: resdyn safetensors with metadata, foreign state dicts."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .resnets import Arch, ResNet
from .stable import STABLE_FAMILIES, StableNet


def build_network(arch: Arch) -> nn.Module:
    """A resdyn network of architecture ``arch`` (random weights)."""
    return StableNet(arch) if arch.family in STABLE_FAMILIES else ResNet(arch)


class CheckpointError(ValueError):
    """A weights file that cannot be read or does not fit the model."""


def save_checkpoint(model: nn.Module, path: str | Path, info: dict[str, object] | None = None,
                    dtype: torch.dtype = torch.float16) -> None:
    """Write a resdyn network's weights and architecture (``model.arch``) and ``info`` (e.g.
    accuracy) to safetensors.

    Floating tensors are stored as ``dtype`` (float16 keeps shipped files small); load them
    back with :func:`load_checkpoint`, which returns float32 weights.
    """
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous().cpu()
               for k, v in model.state_dict().items()}
    meta = {"format": "resdyn", "arch": json.dumps(model.arch.to_dict()),
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
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, object]]:
    """Rebuild a resdyn network from a file written by :func:`save_checkpoint`.

    Returns:
        (model in eval mode, float32; info dict stored with it)
    """
    meta = read_metadata(path)
    if meta.get("format") != "resdyn" or "arch" not in meta:
        raise CheckpointError(f"{path}: a safetensors file without resdyn architecture metadata; "
                              "load it into a model with --weights instead of --model")
    arch = Arch.from_dict(json.loads(meta["arch"]))
    model = build_network(arch)
    load_state(model, read_state(path), path)
    return model.float().eval(), json.loads(meta.get("info", "{}"))


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or ``.pth``/``.pt`` (tensors only, never pickled code)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"weights file {p} does not exist")
    try:
        if p.suffix == ".safetensors":
            return load_file(str(p))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol notice says nothing useful here
            state = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{p}: torch's safe loader refused it: corrupt, or not a plain state "
                              "dict of tensors (Python objects are never unpickled). Re-save it with "
                              "torch.save(model.state_dict(), FILE) or as .safetensors") from None
    except (SafetensorError, RuntimeError, OSError, EOFError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{p}: cannot read weights ({first}). Expected a state dict saved "
                              "with torch.save(model.state_dict()) or a .safetensors file") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{p}: holds a {type(state).__name__}, not a state dict of tensors")
    return state


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load ``state`` into ``model`` strictly, naming the file and the mismatched keys on failure."""
    own = model.state_dict()
    state = {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel checkpoints
    missing = sorted(set(own) - set(state))
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
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
