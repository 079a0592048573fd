"""The Vision Transformer in resdyn's zoo: architecture, checkpoints, training path, shipped file."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torchvision.models.vision_transformer import EncoderBlock

from resdyn import UnknownModel, evaluate, load_data, load_model, model_card, zoo_names
from resdyn.models import Arch, ViT, load_checkpoint, natural_input_shape, save_checkpoint
from resdyn.train import RECIPES, Recipe, default_recipe, train, train_and_save

TINY = "vit(blocks=2,width=16,heads=2,mlp=32)"


pytestmark = pytest.mark.usefixtures("single_thread")  # conftest: one torch thread


def _tiny(seed: int = 0) -> ViT:
    """A tiny ViT with every weight random (torchvision starts the head at zero, which would
    make every logit 0 and a round trip trivially exact)."""
    torch.manual_seed(seed)
    model = load_model(TINY, in_channels=1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def test_arch_round_trip_with_the_vit_fields():
    arch = Arch("vit", 3, 1, 10, width=32, heads=4, patch=2, mlp=64, size=8)
    assert Arch.from_dict(arch.to_dict()) == arch
    # a checkpoint written before the ViT fields existed keeps loading, with them at 0
    old = Arch.from_dict({"family": "cifar-resnet", "blocks": "9", "in_channels": "1",
                          "num_classes": "10"})
    assert old == Arch("cifar-resnet", 9, 1, 10)
    assert (old.heads, old.patch, old.mlp, old.size) == (0, 0, 0, 0)


def test_spec_builds_torchvision_encoder_blocks():
    model = load_model(TINY, in_channels=1)
    card = model_card(model)
    assert isinstance(model, ViT) and not model.training
    assert card.input_shape == (1, 8, 8) and card.trained_shape is None
    assert card.options == {"in_channels": 1, "num_classes": 10}
    assert sum(isinstance(m, EncoderBlock) for m in model.modules()) == 2
    assert model.arch == Arch("vit", 2, 1, 10, width=16, heads=2, patch=2, mlp=32, size=8)
    assert model.seq_length == 17  # 4 x 4 patches and the class token
    with torch.no_grad():
        assert model(torch.randn(5, 1, 8, 8)).shape == (5, 10)


def test_defaults_and_the_natural_shape_without_a_card():
    model = load_model("vit")
    a = model.arch
    assert (a.blocks, a.width, a.heads, a.patch, a.mlp, a.size) == (4, 64, 4, 2, 128, 8)
    assert natural_input_shape(ViT(a)) == (3, 8, 8)  # from in_channels / in_size
    names = [n for n, _ in zoo_names()]
    assert "vit(blocks=4,width=64,heads=4,patch=2,mlp=128,size=8)" in names
    assert "digits-vit" in names and "torchvision:NAME" in names
    assert "torchvision:vit_b_16" in dict(zoo_names())["torchvision:NAME"]


@pytest.mark.parametrize("dtype,exact", [(torch.float32, True), (torch.float16, False)])
def test_checkpoint_round_trip(tmp_path, dtype, exact):
    model = _tiny()
    path = tmp_path / "vit.safetensors"
    save_checkpoint(model, path, info={"input_shape": [1, 8, 8]}, dtype=dtype)
    loaded, info = load_checkpoint(path)
    assert isinstance(loaded, ViT) and loaded.arch == model.arch
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        ref, out = model(x), loaded(x)
    assert ref.abs().max() > 0.1  # the comparison means something
    if exact:
        assert torch.equal(out, ref)
    else:  # float16 storage: weights rounded to ~5e-4 relative
        torch.testing.assert_close(out, ref, rtol=0, atol=5e-3 * float(ref.abs().max()))
    assert model_card(load_model(str(path))).input_shape == (1, 8, 8)


def test_checkpoint_without_recorded_shape_takes_the_vit_size(tmp_path):
    model = load_model("vit(blocks=1,width=8,heads=2,mlp=8,patch=4,size=12)", in_channels=2)
    path = tmp_path / "v.safetensors"
    save_checkpoint(model, path, dtype=torch.float32)
    card = model_card(load_model(str(path)))
    assert card.input_shape == (2, 12, 12) and card.trained_shape is None


@pytest.mark.parametrize("spec,match", [
    ("vit(depth=2)", "vit takes key=value options among blocks, width, heads, patch, mlp, size"),
    ("vit(blocks)", "options among blocks, width, heads, patch, mlp, size; got 'blocks'"),
    ("vit(width=1.5)", "vit option width must be an integer; got '1.5'"),
])
def test_bad_vit_option_names_the_valid_keys(spec, match):
    with pytest.raises(UnknownModel, match=match.replace("(", r"\(")):
        load_model(spec)


@pytest.mark.parametrize("spec,match", [
    ("vit(size=9)", r"patch must divide the image size; got patch=2, size=9.*patch=1"),
    ("vit(width=30)", r"heads \(4\) must divide the width \(30\)"),
    ("vit(blocks=0)", r"blocks=0"),
])
def test_inconsistent_vit_raises_value_error(spec, match):
    with pytest.raises(ValueError, match=match):
        load_model(spec)


def test_unknown_shipped_name_lists_the_shipped_ones():
    with pytest.raises(UnknownModel, match=r"'digits-vit2'.*'digits-resnet56', .*'digits-vit'"):
        load_model("digits-vit2")


def test_recipes_per_family():
    assert default_recipe(load_model("cifar-resnet20")) == RECIPES["resnet"] == Recipe()
    # the ResNets' recipe is train()'s own defaults: SGD at 0.1, batch 128, no smoothing
    assert (Recipe().optimizer, Recipe().lr, Recipe().batch_size) == ("sgd", 0.1, 128)
    vit = default_recipe(load_model(TINY))
    assert vit == RECIPES["vit"] and vit.optimizer == "adamw"


def test_unknown_optimizer_lists_the_valid_names():
    data = load_data("digits", split="train").subset(range(8))
    with pytest.raises(ValueError, match="unknown optimizer 'adam'; valid: sgd, adamw"):
        train(_tiny(), data, epochs=1, optimizer="adam")
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\); got 1"):
        train(_tiny(), data, epochs=1, label_smoothing=1)


def test_train_and_save_takes_a_vit_and_records_its_recipe(tmp_path):
    digits = load_data("digits", split="train")
    pixels = digits.to_pixels(digits.x).clamp(0, 1).numpy()
    y = digits.y.numpy()
    np.savez(tmp_path / "d.npz", x_train=pixels[:48], y_train=y[:48], x_test=pixels[48:80],
             y_test=y[48:80])
    out = tmp_path / "v.safetensors"
    result = train_and_save(TINY, str(tmp_path / "d.npz"), 1, out, lr=1e-3)
    reloaded = load_model(str(out))
    info = model_card(reloaded).info
    assert isinstance(reloaded, ViT)
    assert info["optimizer"] == "adamw" and info["lr"] == 1e-3  # given lr replaces the recipe's
    assert info["batch_size"] == RECIPES["vit"].batch_size
    assert info["label_smoothing"] == RECIPES["vit"].label_smoothing
    assert info["zero_init_residuals"] == 0  # no BatchNorm-ended branches in a ViT
    assert info["test_accuracy"] == result.test_accuracy
    assert info["test_accuracy"] == evaluate(reloaded, load_data(tmp_path / "d.npz",
                                                                 split="test")).accuracy


def test_shipped_digits_vit_reproduces_its_accuracy():
    model = load_model("digits-vit")
    card = model_card(model)
    ev = evaluate(model, load_data("digits", split="test"))
    assert ev.accuracy == card.info["test_accuracy"]
    assert ev.accuracy >= 0.95
    assert isinstance(model, ViT) and card.input_shape == card.trained_shape == (1, 8, 8)
    assert card.info["data"] == "digits" and card.info["optimizer"] == "adamw"
    assert model.arch.width * model.seq_length <= 1088  # a sub-layer's Jacobian width


def test_old_checkpoint_still_loads():
    model = load_model("digits-resnet56")
    assert model.arch == Arch("cifar-resnet", 9, 1, 10)
    assert model_card(model).input_shape == (1, 8, 8)


def test_resdyn_evaluate_reports_the_recorded_accuracy_of_digits_vit():
    from click.testing import CliRunner

    from resdyn.cli import app

    r = CliRunner().invoke(app, ["evaluate", "--model", "digits-vit"], env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    measured = float(re.search(r"accuracy (\d\.\d+), mean loss", text).group(1))
    recorded = float(re.search(r"recorded at training: (\d\.\d+)", text).group(1))
    info = model_card(load_model("digits-vit")).info
    assert measured == recorded == round(info["test_accuracy"], 4) and measured >= 0.95
