"""Training and evaluation: determinism, known-answer evaluation, the shipped checkpoints."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

from resdyn._torch import resolve_device
from resdyn.data import Dataset, load_data
from resdyn.models import cifar_resnet, load_model, model_card
from resdyn.train import (
    _shift,
    evaluate,
    train,
    train_and_save,
    zero_init_residuals,
)

pytestmark = pytest.mark.usefixtures("single_thread")  # conftest: one torch thread


@pytest.fixture(scope="module")
def digits_test() -> Dataset:
    return load_data("digits", split="test")


@pytest.fixture(scope="module")
def small_train() -> Dataset:
    return load_data("digits", split="train").subset(range(64))


def _tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return cifar_resnet(8, in_channels=1)


def test_training_is_deterministic_under_a_seed(small_train):
    init = _tiny_model()
    a, b, c = copy.deepcopy(init), copy.deepcopy(init), copy.deepcopy(init)
    ra = train(a, small_train, epochs=1, batch_size=16, seed=3)
    rb = train(b, small_train, epochs=1, batch_size=16, seed=3)
    train(c, small_train, epochs=1, batch_size=16, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert ra.train_loss == rb.train_loss
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)  # the seed does matter
    assert not torch.equal(sa["fc.weight"], init.state_dict()["fc.weight"])  # it trained


def test_train_reports_progress_history_and_leaves_eval_mode(small_train, digits_test):
    calls = []
    model = _tiny_model()
    result = train(model, small_train, epochs=2, batch_size=16, test_data=digits_test.subset(
        range(20)), progress=lambda *a: calls.append(a))
    assert [(e, s, t) for e, s, t, _ in calls] == [(1 + i // 4, i + 1, 8) for i in range(8)]
    assert all(math.isfinite(loss) for *_, loss in calls)
    assert model.training is False
    assert [h.epoch for h in result.history] == [1, 2]
    assert result.train_loss == result.history[-1].train_loss
    assert result.test_accuracy == result.history[-1].test_accuracy
    assert result.test_accuracy == evaluate(model, digits_test.subset(range(20))).accuracy
    assert result.history[0].lr == pytest.approx(0.1 / 4)  # first warm-up step of 4
    assert result.seconds > 0


def test_train_drops_a_last_batch_of_one(small_train):
    calls = []
    train(_tiny_model(), small_train.subset(range(33)), epochs=1, batch_size=16,
          progress=lambda *a: calls.append(a))
    assert [s for _, s, _, _ in calls] == [1, 2] and calls[-1][2] == 2


def test_train_rejects_bad_arguments(small_train):
    with pytest.raises(ValueError, match="epochs must be positive; got 0"):
        train(_tiny_model(), small_train, epochs=0)
    with pytest.raises(ValueError, match="lr must be positive; got -1"):
        train(_tiny_model(), small_train, epochs=1, lr=-1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is absent")
def test_cuda_requested_but_absent():
    with pytest.raises(ValueError, match="'cuda' requested but CUDA is not available.*'cpu'"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="not a torch device"):
        resolve_device("gpu0")


def test_shift_translates_by_at_most_one_pixel():
    x = torch.arange(2 * 16, dtype=torch.float32).view(2, 1, 4, 4) + 1
    lo = torch.zeros(1, 1, 1)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    out = _shift(x, lo, 1, torch.Generator().manual_seed(0))
    for i in range(2):
        shifts = [padded[i, :, dy:dy + 4, dx:dx + 4] for dy in range(3) for dx in range(3)]
        assert any(torch.equal(out[i], s) for s in shifts)
    outs = {tuple(_shift(x, lo, 1, torch.Generator().manual_seed(s))[0].flatten().tolist())
            for s in range(30)}
    assert len(outs) == 9  # all nine offsets occur


def test_evaluate_known_answer(digits_test):
    # constant logits favouring class 3: accuracy = share of label 3, loss from the softmax
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    nn.init.zeros_(model[1].weight)
    with torch.no_grad():
        model[1].bias.copy_(torch.tensor([0.0] * 3 + [1.0] + [0.0] * 6))
    model.train()
    ev = evaluate(model, digits_test, batch_size=100)
    assert ev.accuracy == int((digits_test.y == 3).sum()) / 450
    log_z = math.log(9 + math.e)
    n3 = int((digits_test.y == 3).sum())
    assert ev.loss == pytest.approx((n3 * (log_z - 1) + (450 - n3) * log_z) / 450, rel=1e-6)
    assert ev.losses.shape == (450,) and torch.equal(ev.predictions, torch.full((450,), 3))
    assert torch.equal(ev.correct, digits_test.y == 3)
    assert model.training is True  # state restored


def test_zero_init_residuals_makes_units_start_near_identity():
    model = _tiny_model()
    assert zero_init_residuals(model) == 3
    unit = model.stages[0][0]
    x = torch.rand(2, 16, 8, 8)  # non-negative, like the output of the stem's ReLU
    torch.testing.assert_close(unit.eval()(x), x)


def test_train_and_save_records_the_reloaded_accuracy(tmp_path):
    digits = load_data("digits", split="train")
    pixels = digits.to_pixels(digits.x).clamp(0, 1).numpy()
    y = digits.y.numpy()
    np.savez(tmp_path / "d.npz", x_train=pixels[:48], y_train=y[:48], x_test=pixels[48:80],
             y_test=y[48:80])
    out = tmp_path / "m.safetensors"
    result = train_and_save("preresnet(1)", str(tmp_path / "d.npz"), 1, out, seed=1)
    reloaded = load_model(str(out))
    info = model_card(reloaded).info
    ev = evaluate(reloaded, load_data(tmp_path / "d.npz", split="test"))
    assert info["test_accuracy"] == ev.accuracy == result.test_accuracy
    assert info["input_shape"] == [1, 8, 8] and info["epochs"] == 1 and info["seed"] == 1
    assert info["data"] == str(tmp_path / "d.npz") and len(info["mean"]) == 1
    with safe_open(str(out), framework="pt") as f:
        assert f.get_tensor("fc.weight").dtype == torch.float16


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_shipped_checkpoints_reproduce_their_accuracy(digits_test, depth):
    model = load_model(f"digits-resnet{depth}")
    info = model_card(model).info
    ev = evaluate(model, digits_test)
    assert ev.accuracy == pytest.approx(info["test_accuracy"], abs=1e-9)
    assert ev.accuracy >= 0.95
    assert info["data"] == "digits" and info["input_shape"] == [1, 8, 8]
    assert model.arch.depth == depth and model_card(model).input_shape == (1, 8, 8)
