"""What a model request may say beyond a zoo name, and the error when it names nothing: shared
by the zoo (:mod:`resdyn.models.zoo`) and the loaders of causal LMs
(:mod:`resdyn.models.language`)."""

from __future__ import annotations

#: ``weights=RANDOM`` (``--weights random``): a reproducible random initialisation (seed 0).
RANDOM = "random"


class UnknownModel(ValueError):
    """A model spec that names nothing in the zoo.

    Example:
        >>> from resdyn import load_model
        >>> load_model("resnet-9000")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        resdyn.models.naming.UnknownModel: unknown model 'resnet-9000'; valid models: cifar-resnet20, ...
    """
