"""Tasks name their model by reference: a small picklable handle a worker turns into the model.

A study saves its model once in the run folder (``model.pth``: the state dict of a zoo model,
rebuilt from its spec; ``model.pt``: the whole module of a user's own network) and gives every
task a :class:`ModelRef`. A process loads each model once and keeps it (and its units), so a
task costs a dictionary lookup, not a pickled network; the serial executor hands the caller's
own model object over without any file round trip.

A process holds at most: the models its run shipped to it (:func:`ship`, what a Dask worker
plugin sends: the run's model and the checkpoints its tasks trained so far, one CPU copy each,
never evicted, since a worker may have no other way to get them), plus the :data:`KEEP` newest
models it loaded from files or copied to a GPU.
"""

from __future__ import annotations

import copy
import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .context import current
from .store import atomic_write_bytes

_MODELS: dict[str, nn.Module] = {}
_SHIPPED: dict[str, nn.Module] = {}  # the models this process's run sent it: never evicted
_UNITS: dict[tuple[str, tuple[int, ...]], list] = {}
KEEP = 4  # models a process keeps loaded (a demo analyses a few; a worker serves one run)


@dataclass(frozen=True)
class ModelRef:
    """Which model a task analyses.

    Attributes:
        sha256: the model's identity (:func:`resdyn.runs.identity.model_digest`); empty for a
            checkpoint a task of the same run writes (see :meth:`checkpoint`).
        path: its saved form in the run folder.
        spec: zoo spec it is rebuilt from with the saved state dict (None: a whole saved module).
        options: build options of the spec (e.g. in_channels, num_classes).
        file_sha256: digest of the saved file, checked before a whole module is unpickled.

    Example:
        A task carries the reference and loads the model where it runs (once per process):

        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from resdyn.runs.identity import model_digest
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Tanh())
        >>> ref = save_model(net, model_digest(net), Path(tempfile.mkdtemp()))
        >>> ref.spec is None, Path(ref.path).name, ref.sha256 == model_digest(net)
        (True, 'model.pt', True)
        >>> ref.load() is net  # this process made it: no file round trip
        True

        A network a task of the same run trains is named by its checkpoint's path:

        >>> ckpt = ModelRef.checkpoint(Path(tempfile.mkdtemp()) / "preresnet2.safetensors")
        >>> ckpt.is_checkpoint, ckpt.sha256
        (True, '')
    """

    sha256: str
    path: str
    spec: str | None = None
    options: dict = field(default_factory=dict)
    file_sha256: str = ""

    @classmethod
    def checkpoint(cls, path: str | Path) -> ModelRef:
        """A resdyn checkpoint that a task of the run writes (a trained network of a sweep)."""
        path = str(Path(path).resolve())
        return cls("", path, spec=path)

    @property
    def is_checkpoint(self) -> bool:
        """A checkpoint a task of the run writes, not yet named by its digest."""
        return not self.sha256 and self.spec == self.path

    def pinned(self) -> tuple[ModelRef, nn.Module]:
        """This checkpoint loaded (here, where the run folder is) and the reference that names
        it by its digest, which a worker finds in its model cache without the file."""
        from .identity import model_digest

        model = self._read()
        ref = ModelRef(model_digest(model), self.path, spec=self.path)
        remember(ref.key, model)
        return ref, model

    @property
    def key(self) -> str:
        """What identifies the loaded model in this process: its hash, or its file's state."""
        if self.sha256:
            return self.sha256
        stat = Path(self.path).stat()
        return f"{self.path}:{stat.st_mtime_ns}:{stat.st_size}"

    def load(self) -> nn.Module:
        """The model in eval mode on the run context's device (:func:`resdyn.runs.current`),
        loaded at most once per process and device; a model handed over on another device
        is copied there, never moved."""
        device = current().device
        model = _MODELS.get(self._on(device))
        if model is None:
            model = _MODELS.get(self.key)
            if model is None:
                model = _SHIPPED.get(self.key)
                if model is None:
                    model = self._read()
                remember(self.key, model)
            if _device_of(model) != torch.device(device):
                model = copy.deepcopy(model).to(device)
                remember(self._on(device), model)
        return model

    def units(self, input_shape: tuple[int, ...]) -> list:
        """The residual units of :meth:`load`'s model for ``input_shape``, found at most once
        per process and device."""
        from ..models import units

        model = self.load()
        key = (self._on(current().device), tuple(input_shape))
        if key not in _UNITS:
            _UNITS[key] = units(model, tuple(input_shape))
        return _UNITS[key]

    def _on(self, device: str) -> str:
        """The cache key of this model on ``device`` (the plain key on the CPU)."""
        return self.key if device == "cpu" else f"{self.key}@{device}"

    def _read(self) -> nn.Module:
        from ..models import load_model
        from .identity import model_digest

        if not self.path:
            raise ValueError("this model reference was made by local_ref and lives only in the "
                             "process that made it; run the study through run_study to use workers")
        path = Path(self.path)
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} is not visible from this process and the "
                                    "model was not sent here: run tasks through run_tasks or "
                                    "run_study, which send a run's models to its workers")
        if self.spec == self.path:
            return load_model(self.spec)  # a checkpoint of this run: nothing to verify against
        if self.spec is not None:
            model = load_model(self.spec, path, **self.options)
        else:
            data = path.read_bytes()  # read once: what is checked is what is unpickled
            if hashlib.sha256(data).hexdigest() != self.file_sha256:
                raise ValueError(f"{path} was changed after the run saved it (its SHA-256 is "
                                 "not the one the run recorded); rerun with --fresh")
            # Unpickling runs code, and a whole user module has no safer form. It is sound
            # here: file_sha256 is the digest of the bytes save_model serialized from the
            # caller's own in-memory model (never of a file found in the folder), so only those
            # very bytes are unpickled.
            model = torch.load(io.BytesIO(data), weights_only=False).eval()
        if model_digest(model) != self.sha256:
            raise ValueError(f"the model rebuilt from {path} differs from the one the run "
                             "started with; rerun with --fresh")
        return model


def local_ref(model: nn.Module) -> ModelRef:
    """A reference to ``model`` valid in this process only (no file): for notebooks and tests
    that call a task function directly.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(3, 3)
        >>> ref = local_ref(net)
        >>> ref.path, len(ref.sha256), ref.load() is net
        ('', 64, True)
    """
    from .identity import model_digest

    sha256 = model_digest(model)
    remember(sha256, model)
    return ModelRef(sha256, "")


def save_model(model: nn.Module, sha256: str, folder: Path) -> ModelRef:
    """Save ``model`` into ``folder`` (once) and return the reference tasks carry.

    The caller's model object is remembered in this process, so serial runs never reload it.

    Example:
        A zoo model is saved as its state dict and rebuilt from its spec; any other module is
        saved whole (``model.pt``, see :class:`ModelRef`):

        >>> import os, tempfile
        >>> from pathlib import Path
        >>> from resdyn import load_model
        >>> from resdyn.runs.identity import model_digest
        >>> model = load_model("digits-resnet20")
        >>> folder = Path(tempfile.mkdtemp())
        >>> ref = save_model(model, model_digest(model), folder)
        >>> ref.spec, os.listdir(folder)
        ('digits-resnet20', ['model.pth'])
        >>> save_model(model, model_digest(model), folder) == ref  # saved once
        True
    """
    from ..models import model_card

    card = model_card(model)
    if card is not None:
        path, spec, options = folder / "model.pth", card.spec, dict(card.options)
        if spec.endswith(".safetensors") and Path(spec).is_file():
            spec = str(Path(spec).resolve())  # a worker may run in another directory
        if not path.is_file():
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            atomic_write_bytes(path, _torch_bytes(state))
        ref = ModelRef(sha256, str(path.resolve()), spec, options)
    else:
        # the digest tasks trust is that of the bytes serialized here from ``model``; a file
        # already in the folder is kept only if it holds exactly those bytes (a file planted
        # before the run, or left by another model, is replaced, never trusted)
        data = _torch_bytes(model)
        digest = hashlib.sha256(data).hexdigest()
        path = folder / "model.pt"
        if not path.is_file() or _file_digest(path) != digest:
            atomic_write_bytes(path, data)
        ref = ModelRef(sha256, str(path.resolve()), None, {}, digest)
    remember(sha256, model)
    return ref


def _torch_bytes(obj: object) -> bytes:
    """torch.save into memory: the bytes are then written as a plain file, so a full disk
    raises OSError (which names the file and the fix, see :func:`resdyn.runs.store.writing`),
    not torch's zip writer's "unexpected pos" RuntimeError."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def remember(key: str, model: nn.Module) -> None:
    """Keep ``model`` as the one loaded for ``key`` (the newest KEEP models stay)."""
    _MODELS.pop(key, None)
    _MODELS[key] = model
    while len(_MODELS) > KEEP:
        del _MODELS[next(iter(_MODELS))]
    for k in [k for k in _UNITS if k[0] == key or k[0] not in _MODELS]:
        del _UNITS[k]


def ship(models: Mapping[str, nn.Module]) -> None:
    """Make ``models`` (cache key -> model) the ones this process's run sent it, replacing
    those of before; unlike :func:`remember`'s, they are never evicted.

    A Dask worker plugin (:class:`resdyn.runs.dask_models.ModelCache`) calls it: a worker
    without the run folder has no other way to get them. Memory is the run's models, once each
    (the plugin holds them anyway); ``ship({})`` lets them go.

    Args:
        models: cache key (:attr:`ModelRef.key`) -> model.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(2, 2)
        >>> ship({"a-digest": net})
        >>> ModelRef("a-digest", "/not/on/this/machine.pt").load() is net
        True
        >>> ship({})
    """
    _SHIPPED.clear()
    _SHIPPED.update(models)


def _device_of(model: nn.Module) -> torch.device:
    t: torch.Tensor | None = next(model.parameters(), None)
    if t is None:
        t = next(model.buffers(), None)
    return t.device if t is not None else torch.device("cpu")


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
