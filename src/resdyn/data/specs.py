"""Turn a data spec string into a :class:`Dataset`, and check a model accepts it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from .dataset import DataError, Dataset, UnknownData, check_split
from .digits import load_digits_data
from .files import load_image_folder, load_npz
from .torchvision_sets import load_cifar10, load_mnist
from .toy import load_toy

Loader = Callable[[str, str | Path | None], Dataset]

NAMED: dict[str, tuple[Loader, str]] = {
    "digits": (lambda split, root: load_digits_data(split),
               "scikit-learn's 8x8 handwritten digits, (1, 8, 8), 1347 train / 450 test; "
               "embedded, no download"),
    "cifar10": (lambda split, root: load_cifar10(split, root),
                "CIFAR-10 via torchvision, (3, 32, 32), 50000 train / 10000 test; downloaded "
                "to ~/.cache/resdyn/data ($RESDYN_DATA)"),
    "mnist": (lambda split, root: load_mnist(split, root),
              "MNIST via torchvision, (1, 28, 28), 60000 train / 10000 test; downloaded "
              "to ~/.cache/resdyn/data ($RESDYN_DATA)"),
    "swissroll": (lambda split, root: load_toy("swissroll", split),
                  "two interleaved 2-D spirals (paper 004), 2 classes, points as (2, 1, 1), "
                  "1000 train / 500 test; generated"),
    "peaks": (lambda split, root: load_toy("peaks", split),
              "level sets of MATLAB's peaks on [-3, 3]^2 (paper 004), 5 classes, points as "
              "(2, 1, 1), 1000 train / 500 test; generated"),
}


def data_names() -> list[tuple[str, str]]:
    """(spec, description) of every kind of data spec :func:`load_data` accepts.

    Example:
        >>> [spec for spec, _ in data_names()]
        ['digits', 'cifar10', 'mnist', 'swissroll', 'peaks', 'PATH.npz', 'FOLDER']
    """
    return [*((name, desc) for name, (_, desc) in NAMED.items()),
            ("PATH.npz", "arrays x (N, C, H, W) in [0, 1] and y (N,) (or x_train, y_train, "
                         "x_test, y_test; optional mean, std)"),
            ("FOLDER", "images in one sub-folder per class (torchvision ImageFolder), "
                       "optionally under train/ and test/")]


def load_data(spec: str | Path, *, root: str | Path | None = None, split: str = "test",
              image_size: int | None = None) -> Dataset:
    """Load a data set by spec, normalised and in memory.

    Args:
        spec: ``"digits"``, ``"cifar10"``, ``"mnist"``, a ``PATH.npz`` or a folder of images
            (see :func:`data_names`).
        root: cache folder for cifar10/mnist (default $RESDYN_DATA or ~/.cache/resdyn/data).
        split: ``"train"`` or ``"test"``; a file or folder without a split returns all of it.
        image_size: image folders only: resize every image to image_size x image_size.

    Returns:
        :class:`Dataset` with x (N, C, H, W) float32 normalised and y (N,) int64.

    Raises:
        UnknownData: the spec is not a known name, an existing .npz file or a folder.
        DataError: a file or folder that does not hold usable images.
        DownloadError: cifar10/mnist are not on disk and cannot be downloaded.

    Example:
        >>> from resdyn.data import load_data
        >>> train = load_data("digits", split="train")
        >>> len(train), train.input_shape
        (1347, (1, 8, 8))
    """
    check_split(split)
    text = str(spec).strip()
    if text.lower() in NAMED:
        if image_size is not None:
            raise ValueError(f"image_size applies to image folders only, not to {text!r}")
        return NAMED[text.lower()][0](split, root)
    path = Path(text).expanduser()
    if text.endswith(".npz"):
        if not path.is_file():
            raise DataError(f"data file {path} does not exist; expected a .npz with "
                            "arrays x (N, C, H, W) and y (N,)")
        return load_npz(path, split)
    if path.is_dir():
        return load_image_folder(path, split, image_size)
    valid = "; ".join(f"{n} ({d})" for n, d in data_names())
    raise UnknownData(f"unknown data {text!r}: not a data set name, a .npz file or an existing "
                      f"folder. Valid data: {valid}")


def check_compatible(model: nn.Module, data: Dataset, *, any_input_size: bool = False) -> None:
    """Raise if ``model`` cannot take ``data``'s images, or was trained on another image size.

    Two checks: where the model records the input shape its weights were trained on
    (``model_card(model).trained_shape``: resdyn checkpoints, the shipped digits models,
    pretrained pytorchcv and torchvision weights), the data's shape must match it; then one
    image runs through the model (train/eval state restored, nothing changed), which must give
    at least ``data.classes`` outputs.

    Args:
        model: the network.
        data: the images it is to classify or be analysed on.
        any_input_size: accept another height and width than the trained one, for models that
            are size-agnostic by design (global average pooling); the channels must still match.

    Raises:
        DataError: the data's shape differs from the trained one (the message names both and
            the way out), the forward pass failed, whatever the model raised (the message
            gives the data's input shape, the model's expected one when known, its own error
            and the way out), the data has labels the model cannot
            predict (label >= its number of outputs), or fewer outputs than the data's classes.

    Example:
        >>> from resdyn import load_model
        >>> check_compatible(load_model("digits-resnet20"), load_data("digits"))
    """
    from ..models import model_card

    card = model_card(model)
    who = f"model {card.spec!r}" if card is not None else f"model {type(model).__name__}"
    if card is not None:
        _check_trained_shape(card.trained_shape, data, who, any_input_size)
    out = _forward_one(model, data, any_input_size)
    if out.ndim != 2:
        raise DataError(f"{who} gives outputs of shape {tuple(out.shape[1:])} per image; "
                        f"expected one score per class, ({data.classes},) for data "
                        f"{data.name!r}")
    outputs = int(out.shape[1])
    top = int(data.y.max()) if len(data.y) else -1
    if top >= outputs:
        raise DataError(f"data {data.name!r} has labels up to {top} but {who} has {outputs} "
                        f"outputs, so it predicts classes 0 to {outputs - 1} only: labels "
                        f"{outputs} to {top} are out of its range. Fix: give data labelled 0 "
                        f"to {outputs - 1}, or a model with at least {top + 1} outputs")
    if outputs < data.classes:
        raise DataError(f"data {data.name!r} declares {data.classes} classes but {who} has "
                        f"{outputs} outputs (classes 0 to {outputs - 1}). Fix: declare at most "
                        f"{outputs} classes, or use a model with {data.classes} outputs")


def _check_trained_shape(trained: tuple[int, ...] | None, data: Dataset, who: str,
                         any_input_size: bool) -> None:
    """Refuse data of another shape than the model's weights were trained on."""
    shape = tuple(data.input_shape)
    if trained is None or shape == tuple(trained):
        return
    c, h, w = trained
    if shape[0] != c:
        raise DataError(f"data {data.name!r} has input shape {shape} but {who} was trained on "
                        f"images of shape {tuple(trained)} ({c} channel(s)). Fix: pick data with "
                        f"{c} channel(s), or a model built for this data (e.g. load_model("
                        f"'cifar-resnet20', in_channels={shape[0]}, num_classes={data.classes}))")
    if not any_input_size:
        folders = f" (image folders: image_size={h})" if h == w else ""
        raise DataError(f"data {data.name!r} has input shape {shape} but {who} was trained on "
                        f"{tuple(trained)}: on another size its predictions mean little (a "
                        "network with global pooling runs, and reports a poor accuracy). Fix: "
                        f"use {h}x{w} images{folders}, or pass any_input_size=True (command "
                        "line: --any-input-size) if the model is meant to take any size")


def _forward_one(model: nn.Module, data: Dataset, any_input_size: bool) -> Tensor:
    """The model's output on the first image of ``data``; DataError if the forward pass fails."""
    from ..models.probe import probe

    p = next(model.parameters(), None)
    x = data.x[:1].to(device=p.device if p is not None else "cpu",
                      dtype=p.dtype if p is not None else torch.float32)
    note = ("--any-input-size (any_input_size=True) lets a model that runs on any size take "
            "another one, but this one does not run on this size. " if any_input_size else "")
    try:
        return probe(model, x, data=data.name, note=note)
    except ValueError as e:
        raise DataError(str(e)) from e.__cause__
