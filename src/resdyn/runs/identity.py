"""What a run's results depend on, as JSON: the resolved configuration, the model, the data.

A run folder stores this identity (``run.json``) when it is created; a later run into the same
folder must have the same identity (then it resumes) or is refused with the fields that differ.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data import Dataset


def model_digest(model: nn.Module) -> str:
    """SHA-256 of a model's architecture (its module tree as printed) and every state tensor."""
    h = hashlib.sha256()
    h.update(type(model).__qualname__.encode())
    h.update(repr(model).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def data_digest(data: Dataset) -> str:
    """SHA-256 of a data set's images, labels, normalisation and pixel range."""
    h = hashlib.sha256()
    for t in (data.x, data.y):
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(json.dumps([data.mean, data.std, list(data.pixel_range), data.classes]).encode())
    return h.hexdigest()


def plain(value: Any) -> Any:
    """A config value as JSON-comparable data (dataclasses -> dicts, tuples -> lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return str(value)


def run_identity(study: str, config: Any, model_name: str, model_hash: str | None,
                 data: Dataset | None, data_hash: str | None) -> dict[str, Any]:
    """The identity of a run: study, resolved config, model (name, hash), data (spec, split, hash)."""
    return {"study": study, "config": plain(config),
            "model": {"name": model_name, "sha256": model_hash},
            "data": ({"name": data.name, "split": data.split, "sha256": data_hash}
                     if data is not None else None)}


@dataclass(frozen=True)
class Difference:
    """One field where two identities differ (``"<absent>"`` where one lacks it)."""

    path: str
    old: Any
    new: Any

    def __str__(self) -> str:
        show = [v[:12] if isinstance(v, str) and len(v) == 64 else v for v in (self.old, self.new)]
        return f"{self.path}: {show[0]!r} -> {show[1]!r}"


def differences(old: Any, new: Any, prefix: str = "") -> list[Difference]:
    """The fields where two identities differ (``str()`` of each: 'path: old -> new'); a table
    on one side only differs in each of its fields (absent on the other)."""
    old = {} if old == "<absent>" and isinstance(new, dict) else old
    new = {} if new == "<absent>" and isinstance(old, dict) else new
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in list(old) + [k for k in new if k not in old]:
            out += differences(old.get(k, "<absent>"), new.get(k, "<absent>"),
                               f"{prefix}.{k}" if prefix else k)
        return out
    if old == new:
        return []
    return [Difference(prefix, old, new)]
