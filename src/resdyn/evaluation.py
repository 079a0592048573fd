"""How well a model does on a data set's test split, said in one sentence (``resdyn evaluate``):
test accuracy and mean loss of an image classifier, next-token accuracy of a language model,
beside what its checkpoint recorded at training."""

from __future__ import annotations

from torch import nn

from .data import Dataset


def evaluation_text(model: nn.Module, data: Dataset, name: str, data_name: str,
                    device: str = "cpu") -> str:
    """One sentence: ``model``'s accuracy and mean loss on ``data`` (a test split), and the
    accuracy its checkpoint recorded at training, where it recorded one.

    A causal LM (a model with an ``embed``) is evaluated on the token data of ``data_name``
    made for it: accuracy at the last position, over all positions and over the in-context
    ones.

    Example:
        >>> from resdyn import load_model
        >>> from resdyn.data import load_data
        >>> evaluation_text(load_model("digits-resnet20"), load_data("digits", split="test"),
        ...                 "digits-resnet20", "digits")  # doctest: +ELLIPSIS
        'digits-resnet20 on digits test split (450 images): accuracy 0.9... (recorded at training: 0.9...)'
    """
    from .models import model_card
    from .train import evaluate

    card = model_card(model)
    info = card.info if card else {}
    if hasattr(model, "embed"):
        return _lm_text(model, name, data_name, device, info)
    result = evaluate(model, data, device=device)
    recorded = info.get("test_accuracy")
    return (f"{name} on {data_name} test split ({len(data.y)} images): accuracy "
            f"{result.accuracy:.4f}, mean loss {result.loss:.4f}"
            + (f" (recorded at training: {float(recorded):.4f})"
               if isinstance(recorded, int | float) else ""))


def _lm_text(model, name: str, data_name: str, device: str, info: dict) -> str:
    from ._torch import resolve_device
    from .data import TokenData, load_data
    from .data.specs import token_options
    from .train_lm import evaluate_lm

    tokens = load_data(data_name, split="test", **token_options(model))
    assert isinstance(tokens, TokenData)
    ev = evaluate_lm(model.to(resolve_device(device)), tokens)
    recorded = {k: info.get(f"test_accuracy{k}") for k in ("", "_all", "_in_context")}
    said = (f" (recorded at training: {recorded['']:.4f} last, {recorded['_all']:.4f} all, "
            f"{recorded['_in_context']:.4f} in context)"
            if all(isinstance(v, int | float) for v in recorded.values()) else "")
    return (f"{name} on {data_name} test split ({len(tokens)} sequences of {tokens.context} "
            f"tokens): next-token accuracy {ev.accuracy:.4f} at the last position, "
            f"{ev.accuracy_all:.4f} over all positions, {ev.accuracy_in_context:.4f} over the "
            f"in-context positions; mean loss {ev.loss:.4f}{said}")
