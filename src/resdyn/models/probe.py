"""The first forward pass of a model on an input shape, with its failure explained.

Where resdyn first runs a model on inputs of some shape (unit discovery, the data check), a
model that cannot take that shape fails in its own words (torchvision's ViT: ``AssertionError:
Wrong image height!``); :func:`probe` turns any such failure into one ValueError that names the
model, the shape it got, the shape it takes, its own message, and the way out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.vision_transformer import VisionTransformer

from .._torch import eval_mode
from .resnets import ResNet
from .zoo import model_card


def probe(model: nn.Module, x: Tensor, *, data: str | None = None, note: str = "") -> Any:
    """``model(x)`` in eval mode without gradients (train/eval state restored).

    Args:
        model: the network.
        x: a batch (B, *shape).
        data: the name of the data ``x`` comes from, for the message.
        note: a sentence added to the message before the fix.

    Returns:
        whatever the model returns.

    Raises:
        ValueError: the forward pass raised, whatever the exception: the message names the
            model, the shape it got, the shape it takes (:func:`~resdyn.models.natural_input_shape`,
            when it states one), the model's own message and the fix.

    Example:
        >>> from resdyn import load_model
        >>> vit16 = load_model("vit(size=16)", in_channels=1)
        >>> probe(vit16, torch.zeros(1, 1, 8, 8))  # doctest: +ELLIPSIS, +NORMALIZE_WHITESPACE
        Traceback (most recent call last):
            ...
        ValueError: model 'vit(size=16)' does not take inputs of shape (1, 8, 8): its forward
        pass failed (AssertionError: Wrong image height! Expected 16 but got 8!); it expects
        input shape (1, 16, 16). ... Fix: give data of size 16 x 16, or a model built for 8 x 8
        inputs
    """
    try:
        with eval_mode(model), torch.no_grad():
            return model(x)
    except Exception as e:  # whatever the model's own code raises on this shape
        raise input_error(model, tuple(x.shape[1:]), e, data, note) from e


def input_error(model: nn.Module, shape: tuple[int, ...], error: BaseException,
                data: str | None = None, note: str = "") -> ValueError:
    """The ValueError of :func:`probe` for ``model`` whose forward pass on inputs of ``shape``
    raised ``error``."""
    card = model_card(model)
    who = f"model {card.spec!r}" if card is not None else f"model {type(model).__name__}"
    text = str(error).strip()
    own = f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__
    msg = (f"data {data!r} has input shape {shape}, which {who} does not take" if data else
           f"{who} does not take inputs of shape {shape}") + f": its forward pass failed ({own})"
    takes = natural_input_shape(model)
    if takes is None or takes == shape:
        return ValueError(f"{msg}. {note}Fix: give inputs of the shape the model was built for, "
                          f"or a model built for {shape}")
    vit = isinstance(model, VisionTransformer) and takes[1:] != shape[1:]  # another size
    if vit:
        note = (f"A ViT takes its own image size only (its position embedding fixes the number "
                f"of tokens). {note}")
    if len(takes) == len(shape) == 3 and takes[0] == shape[0]:  # images, channels agree
        want, have = (" x ".join(map(str, s[1:])) for s in (takes, shape))
        fix = f"give data of size {want}, or a model built for {have} inputs"
    else:
        fix = f"give data of shape {takes}, or a model built for {shape} inputs"
        if card is not None and len(shape) == 3 and not vit:
            fix += f" (e.g. load_model({card.spec!r}, in_channels={shape[0]}))"
    return ValueError(f"{msg}; it expects input shape {takes}. {note}Fix: {fix}")


def natural_input_shape(model: nn.Module) -> tuple[int, int, int] | None:
    """The (C, H, W) input shape ``model`` states, or None when it states none.

    Looked up in this order: the card :func:`resdyn.load_model` attached
    (``model_card(model).input_shape``); resdyn's own :class:`~resdyn.models.ResNet`
    (``arch.in_channels`` at CIFAR's 32 x 32); a pytorchcv-style ``in_size`` attribute (H, W)
    or a torchvision ViT's ``image_size`` (an int), with the channels from an ``in_channels``
    attribute or else from the first convolution.

    Example:
        >>> from resdyn.models import cifar_resnet
        >>> natural_input_shape(cifar_resnet(20, in_channels=1))
        (1, 32, 32)
    """
    card = model_card(model)
    if card is not None:
        return tuple(card.input_shape)  # type: ignore[return-value]
    if isinstance(model, ResNet):
        return (model.arch.in_channels, 32, 32)
    size = getattr(model, "in_size", None)
    if positive_ints([getattr(model, "image_size", None)]):
        size = (model.image_size, model.image_size)
    if not (isinstance(size, tuple | list) and len(size) == 2 and positive_ints(size)):
        return None
    channels = getattr(model, "in_channels", None)
    if not positive_ints([channels]):
        conv = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
        if conv is None:
            return None
        channels = conv.in_channels
    return (int(channels), int(size[0]), int(size[1]))  # type: ignore[arg-type]  # checked above


def positive_ints(values: Sequence[object]) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)


def input_shape(model: nn.Module, given: str | None = None) -> tuple[int, ...]:
    """The input shape a user gives as text ("C,H,W" or "CxHxW"), else the one ``model``
    states.

    Raises:
        ValueError: text that is not three integers; no shape given for a model that states
            none.

    Example:
        >>> from resdyn.models import cifar_resnet
        >>> input_shape(cifar_resnet(20), "1,8,8"), input_shape(cifar_resnet(20))
        ((1, 8, 8), (3, 32, 32))
    """
    if given is not None:
        try:
            shape = tuple(int(s) for s in given.replace("x", ",").split(","))
        except ValueError:
            raise ValueError(f"--input-shape: expected C,H,W such as 3,32,32; got {given!r}") from None
        if len(shape) != 3:
            raise ValueError(f"--input-shape: expected three numbers C,H,W; got {given!r}")
        return shape
    stated = natural_input_shape(model)
    if stated is None:
        raise ValueError(f"{type(model).__name__} states no input shape: give --input-shape C,H,W")
    return stated
