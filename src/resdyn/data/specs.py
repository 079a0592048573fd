"""Turn a data spec string into a :class:`Dataset` (or :class:`TokenData`), and check a model
accepts it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .dataset import DataError, Dataset, UnknownData, check_split
from .digits import load_digits_data
from .files import load_image_folder, load_npz
from .tokens import TokenData, is_token_npz, load_tokens, token_names
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
        >>> [spec for spec, _ in data_names()]  # doctest: +NORMALIZE_WHITESPACE
        ['digits', 'cifar10', 'mnist', 'swissroll', 'peaks', 'induction', 'PATH.npz', 'PATH.npy',
         'PATH.txt', 'FOLDER']
    """
    tokens = dict(token_names())
    return [*((name, desc) for name, (_, desc) in NAMED.items()),
            ("induction", tokens["induction"]),
            ("PATH.npz", "arrays x (N, C, H, W) in [0, 1] and y (N,) (or x_train, y_train, "
                         f"x_test, y_test; optional mean, std); or {tokens['PATH.npz']}"),
            ("PATH.npy", tokens["PATH.npy"]),
            ("PATH.txt", tokens["PATH.txt"]),
            ("FOLDER", "images in one sub-folder per class (torchvision ImageFolder), "
                       "optionally under train/ and test/")]


def load_data(spec: str | Path, *, root: str | Path | None = None, split: str = "test",
              image_size: int | None = None, tokenizer: str | Path | None = None,
              context: int | None = None) -> Dataset | TokenData:
    """Load a data set by spec, normalised and in memory.

    Args:
        spec: ``"digits"``, ``"cifar10"``, ``"mnist"``, ``"induction"``, a ``PATH.npz``, a
            ``PATH.npy`` or ``PATH.txt`` of tokens, or a folder of images (see :func:`data_names`).
        root: cache folder for cifar10/mnist (default $RESDYN_DATA or ~/.cache/resdyn/data).
        split: ``"train"`` or ``"test"``; a file or folder without a split returns all of it.
        image_size: image folders only: resize every image to image_size x image_size.
        tokenizer: token data (.txt) only: the folder holding the model's tokenizer.
        context: token data only: the most context tokens per sequence (e.g. the model's); a
            .txt is cut into sequences of context+1 tokens (see :func:`load_tokens`). Ignored for
            images.

    Returns:
        :class:`Dataset` with x (N, C, H, W) float32 normalised and y (N,) int64 for images;
        :class:`TokenData` for token specs (``induction``, .npy, .txt, a .npz with ``tokens``).

    Raises:
        UnknownData: the spec is not a known name, a .npz/.npy/.txt path or a folder.
        DataError: a file or folder that does not hold usable images or tokens.
        DownloadError: cifar10/mnist are not on disk and cannot be downloaded.

    Example:
        >>> from resdyn.data import load_data
        >>> train = load_data("digits", split="train")
        >>> len(train), train.input_shape
        (1347, (1, 8, 8))
        >>> load_data("induction")
        TokenData('induction', split='test', n=512, context=32, vocab=64)
    """
    check_split(split)
    text = str(spec).strip()
    path = Path(text).expanduser()
    tokens = (text.lower() == "induction" or path.suffix in (".npy", ".txt")
              or (path.suffix == ".npz" and is_token_npz(path)))
    if image_size is not None and (tokens or text.lower() in NAMED):
        raise ValueError(f"image_size applies to image folders only, not to {text!r}")
    if tokens:
        return load_tokens(text, split, tokenizer=tokenizer, context=context)
    if text.lower() in NAMED:
        return NAMED[text.lower()][0](split, root)
    if text.endswith(".npz"):
        if not path.is_file():
            raise DataError(f"data file {path} does not exist; expected a .npz with "
                            "arrays x (N, C, H, W) and y (N,), or tokens (N, L)")
        return load_npz(path, split)
    if path.is_dir():
        return load_image_folder(path, split, image_size)
    valid = "; ".join(f"{n} ({d})" for n, d in data_names())
    raise UnknownData(f"unknown data {text!r}: not a data set name, a .npz, .npy or .txt file or "
                      f"an existing folder. Valid data: {valid}")


def token_options(model: nn.Module) -> dict[str, Any]:
    """:func:`load_data`'s ``tokenizer`` and ``context`` for a causal LM: the tokenizer in its
    ``hf:`` folder, and its natural context length."""
    from ..models import model_card

    card = model_card(model)
    if card is None:
        return {}
    return {"tokenizer": card.spec[3:] if card.spec.startswith("hf:") else None,
            "context": int(card.input_shape[0])}


def load_for(model: nn.Module, spec: str | Path, *, split: str = "test",
             root: str | Path | None = None) -> Dataset:
    """``spec`` loaded as ``model`` takes it: images as they are; token data embedded by a causal
    language model (:func:`~resdyn.data.embedded`), a text file tokenised by the tokenizer saved
    in the model's folder (``hf:FOLDER``) into sequences of its natural context length.

    Raises:
        DataError: token data for a model that is not a causal LM, images for one that is, or as
            :func:`load_data`.

    Example:
        >>> from resdyn import load_model
        >>> load_for(load_model("induction-gpt2"), "induction").x.shape
        torch.Size([512, 32, 64])
    """
    from .tokens import embedded

    lm = hasattr(model, "embed") and hasattr(model, "vocab_size")
    data = load_data(spec, root=root, split=split, **(token_options(model) if lm else {}))
    if isinstance(data, TokenData):
        if not lm:
            raise DataError(f"data {str(spec)!r} is token data; it needs a causal language model "
                            f"(induction-gpt2, gpt2(...), hf:FOLDER), not {type(model).__name__}")
        return embedded(data, model)
    if lm:
        raise DataError(f"{type(model).__name__} is a causal language model; it reads token "
                        f"data (induction, PATH.npz with tokens, PATH.npy, PATH.txt), not the "
                        f"images of {str(spec)!r}")
    return data


def load_images(spec: str | Path, *, root: str | Path | None = None, split: str = "test",
                image_size: int | None = None) -> Dataset:
    """:func:`load_data` for callers that take images only: token data specs are refused.

    Raises:
        DataError: the spec names token data (the message says how to use it); else as
            :func:`load_data`.

    Example:
        >>> load_images("digits").input_shape
        (1, 8, 8)
        >>> load_images("induction")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        resdyn.data.dataset.DataError: data 'induction' is token data for causal language models...
    """
    data = load_data(spec, root=root, split=split, image_size=image_size)
    if isinstance(data, TokenData):
        raise DataError(f"data {str(spec)!r} is token data for causal language models, not images; "
                        "this takes images. Fix: give image data, or analyse a causal LM on it "
                        "(resdyn.data.embedded(data, model) gives its embedded inputs)")
    return data


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
    if len(trained) != 3 or len(shape) != 3:
        # token embeddings (T, d): any T works (embedded() checks the model's context); d must match
        if len(shape) != len(trained) or shape[-1] != trained[-1]:
            raise DataError(f"data {data.name!r} has input shape {shape} but {who} takes inputs "
                            f"of shape {tuple(trained)}. Fix: give token data embedded by this "
                            "model (resdyn.data.embedded(data, model)), or image data to an "
                            "image model")
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
