"""Train and evaluate causal language models on :class:`~resdyn.data.TokenData`.

Recipe: AdamW (weight decay 0.01), linear warm-up then a cosine decay to zero (per step), the
next-token cross-entropy at every position of each sequence (teacher forcing), gradient norm
clipped at 1. :func:`evaluate_lm` scores next-token accuracy over all positions, over the
positions only in-context information predicts, and at the last position (the label resdyn's
analyses read), with :func:`resdyn.data.token_accuracy`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ._torch import eval_mode, generator, resolve_device
from .data import TokenData, token_accuracy
from .models.language import CausalLM
from .train_common import EpochRecord, Progress, TrainingDiverged, TrainResult, batches, warmup_cosine


@dataclass(frozen=True)
class LMRecipe:
    """Defaults of :func:`train_lm` (recorded in a trained checkpoint's info)."""

    optimizer: str = "adamw"
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 0.01
    warmup_epochs: int = 1


@dataclass(frozen=True, eq=False)
class LMEvaluation:
    """Next-token accuracy and loss of a causal LM on token data.

    Attributes:
        accuracy: at the last position, the label (what resdyn's analyses call correct).
        accuracy_all: over every target position. accuracy_in_context: over the positions only
            in-context information predicts (nan when the data does not mark them).
        loss: mean next-token cross-entropy over every position.
        predictions: (N, T) arg-max next token at every position.
    """

    accuracy: float
    accuracy_all: float
    accuracy_in_context: float
    loss: float
    predictions: Tensor = field(repr=False)


def _check(model: CausalLM, data: TokenData) -> None:
    if not isinstance(model, CausalLM):
        raise ValueError(f"token data {data.name!r} needs a causal language model (gpt2(...), "
                         f"hf:FOLDER, induction-gpt2); got {type(model).__name__}")
    if data.vocab > model.vocab_size or data.context > model.context:
        raise ValueError(f"data {data.name!r} has vocabulary {data.vocab} and context "
                         f"{data.context}; the model takes {model.vocab_size} and "
                         f"{model.context}. Fix: build the model for this data, e.g. "
                         f"gpt2(vocab={data.vocab},context={data.context})")


def evaluate_lm(model: CausalLM, data: TokenData, batch_size: int = 256) -> LMEvaluation:
    """Next-token accuracy and loss of ``model`` on ``data`` in eval mode, where its weights are.

    Example:
        >>> from resdyn import load_model
        >>> from resdyn.data import load_tokens
        >>> ev = evaluate_lm(load_model("induction-gpt2"), load_tokens("induction"))
        >>> ev.accuracy_in_context > 0.8  # the copied positions: 0.888 (bigram: 0.021)
        True
    """
    _check(model, data)
    dev = next(model.parameters()).device
    losses, preds = [], []
    with eval_mode(model), torch.no_grad():
        for xb, yb in zip(data.inputs.split(batch_size), data.targets.split(batch_size),
                          strict=True):
            logits = model.logits(model.embed(xb.to(dev))).float()
            losses.append(F.cross_entropy(logits.flatten(0, 1), yb.to(dev).flatten(),
                                          reduction="sum").double().cpu())
            preds.append(logits.argmax(-1).cpu())
    pred = torch.cat(preds)
    acc = token_accuracy(pred, data)
    return LMEvaluation(acc["last"], acc["all"], acc["in_context"],
                        float(sum(losses)) / data.targets.numel(), pred)


def train_lm(model: CausalLM, train_data: TokenData, *, epochs: int, recipe: LMRecipe = LMRecipe(),
             seed: int = 0, device: str | torch.device = "cpu", progress: Progress | None = None,
             test_data: TokenData | None = None) -> TrainResult:
    """Fit ``model`` to next-token prediction at every position of ``train_data``.

    Returns:
        :class:`~resdyn.train.TrainResult`; its test accuracy is the last position's, and each
        epoch's train accuracy is over every position.

    Raises:
        ValueError: a model that is not a causal LM, or data outside its vocabulary or context.
        TrainingDiverged: the loss stopped being finite.
    """
    _check(model, train_data)
    dev = resolve_device(device)
    model.to(dev)
    gen = generator(seed)
    steps_per_epoch = max(1, len(train_data) // recipe.batch_size)
    total = epochs * steps_per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    warmup = min(recipe.warmup_epochs * steps_per_epoch, total - 1)

    sched = warmup_cosine(opt, warmup, total)
    history: list[EpochRecord] = []
    start, step = time.perf_counter(), 0
    try:
        for epoch in range(1, epochs + 1):
            t0, loss_sum, hits, seen = time.perf_counter(), 0.0, 0, 0
            lr_now = opt.param_groups[0]["lr"]
            model.train()
            for idx in batches(len(train_data), recipe.batch_size, gen)[:steps_per_epoch]:
                xb, yb = train_data.inputs[idx].to(dev), train_data.targets[idx].to(dev)
                logits = model.logits(model.embed(xb))
                loss = F.cross_entropy(logits.flatten(0, 1), yb.flatten())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                step += 1
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise TrainingDiverged(value, epoch, epochs, recipe.lr)
                loss_sum += value * yb.numel()
                hits += int((logits.detach().argmax(-1) == yb).sum())
                seen += yb.numel()
                if progress is not None:
                    progress(epoch, step, total, value)
            test = evaluate_lm(model, test_data) if test_data is not None else None
            history.append(EpochRecord(epoch, loss_sum / seen, hits / seen, lr_now,
                                       test.accuracy if test else None,
                                       test.loss if test else None, time.perf_counter() - t0))
    finally:
        model.eval()
    last = history[-1]
    return TrainResult(last.train_loss, last.test_accuracy, last.test_loss,
                       time.perf_counter() - start, tuple(history))


def train_and_save_lm(model_spec: str, data_spec: str, epochs: int, out: str | Path,
                      seed: int = 0, device: str | torch.device = "cpu",
                      progress: Progress | None = None, *, batch_size: int | None = None,
                      lr: float | None = None) -> TrainResult:
    """:func:`resdyn.train.train_and_save` for a causal LM on token data: build ``model_spec``
    (``gpt2(...)``) for the data's vocabulary under ``torch.manual_seed(seed)``, train it, save
    it with its recipe, its accuracies (all positions, in-context positions, last position) and
    the unigram and bigram baselines in the info; reload the file and evaluate it on the test
    split on the CPU, and save again with those figures, so that ``info["test_accuracy"]`` is
    what ``evaluate_lm(load_model(out), load_tokens(data_spec))`` reproduces."""
    from .data import baselines, load_tokens
    from .models import load_model, save_checkpoint

    train_data, test_data = (load_tokens(data_spec, split=s) for s in ("train", "test"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = load_model(model_spec, num_classes=train_data.vocab)
    if not isinstance(model, CausalLM) or model_spec.startswith("hf:"):
        raise ValueError(f"token data {data_spec!r} trains resdyn's causal LM, gpt2(...); "
                         f"{model_spec!r} is not one")
    given: dict[str, Any] = {"batch_size": batch_size, "lr": lr}
    recipe = replace(LMRecipe(), **{k: v for k, v in given.items() if v is not None})
    result = train_lm(model, train_data, epochs=epochs, recipe=recipe, seed=seed, device=device,
                      progress=progress, test_data=test_data)
    info: dict[str, object] = {
        "model": model_spec, "data": data_spec, "input_shape": [train_data.context, model.width],
        "classes": model.vocab_size, "epochs": epochs, "seed": seed, **asdict(recipe),
        "train_loss": result.train_loss, "train_seconds": round(result.seconds, 1),
        "test_split": test_data.split, "test_accuracy_float32": result.test_accuracy,
        **{f"baseline_{k}": v for k, v in baselines(train_data, test_data).items()},
    }
    save_checkpoint(model, out, info=info)
    reloaded = load_model(str(out))
    ev = evaluate_lm(reloaded.cpu(), test_data)  # type: ignore[arg-type]
    save_checkpoint(reloaded, out, info={**info, "test_accuracy": ev.accuracy,
                                         "test_accuracy_all": ev.accuracy_all,
                                         "test_accuracy_in_context": ev.accuracy_in_context,
                                         "test_loss": ev.loss})
    return replace(result, test_accuracy=ev.accuracy, test_loss=ev.loss)
