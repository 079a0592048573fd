"""The model zoo, checkpoints and the messages users see for bad input."""

import pickle

import pytest
import torch
from pytorchcv.model_provider import get_model as pytorchcv_model
from safetensors.torch import save_file

from resdyn import CheckpointError, UnknownModel, load_model, model_card, zoo_names
from resdyn.models import cifar_resnet, load_checkpoint, save_checkpoint


def test_pytorchcv_state_dict_round_trip(tmp_path):
    """A state dict made by pytorchcv itself loads through --weights and gives identical outputs."""
    torch.manual_seed(0)
    ref = pytorchcv_model("resnet56_cifar10", pretrained=False).eval()
    for m in ref.modules():  # non-trivial BN statistics, so a wrong mapping would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "resnet56.pth"
    torch.save(ref.state_dict(), path)
    model = load_model("pytorchcv:resnet56_cifar10", weights=path)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    assert model_card(model).input_shape == (3, 32, 32)


def test_safetensors_weights_for_torchvision(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    model = load_model("torchvision:resnet18", weights=path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))


def test_own_checkpoint_round_trip(tmp_path):
    model = cifar_resnet(20, in_channels=1, num_classes=10).eval()
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path, info={"test_accuracy": 0.5, "input_shape": [1, 8, 8]},
                    dtype=torch.float32)
    loaded = load_model(str(path))
    assert model_card(loaded).input_shape == (1, 8, 8)
    assert model_card(loaded).info["test_accuracy"] == 0.5
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    m2, info = load_checkpoint(path)
    assert m2.arch == model.arch and info["input_shape"] == [1, 8, 8]


def test_zoo_lists_every_family():
    names = [n for n, _ in zoo_names()]
    for expected in ("cifar-resnet20", "cifar-resnet110", "preresnet(L)", "digits-resnet56",
                     "pytorchcv:NAME", "torchvision:NAME", "timm:NAME"):
        assert expected in names


@pytest.mark.parametrize("spec", ["resnet56", "cifar-resnet57", "torchvision:resnet9000",
                                  "pytorchcv:not_a_model", "digits-resnet38"])
def test_unknown_model_lists_valid(spec):
    with pytest.raises(UnknownModel) as e:
        load_model(spec)
    msg = str(e.value)
    assert spec.split(":")[-1].replace("cifar-", "").replace("digits-", "")[:6] in msg
    assert any(v in msg for v in ("cifar-resnet56", "(20, 32, 44, 56, 110)", "torchvision:resnet18",
                                  "pytorchcv:resnet56_cifar10", "digits-resnet56"))


def test_preresnet_spec_forms():
    assert len(load_model("preresnet(2)").stages[0]) == 2
    assert len(load_model("preresnet-3").stages[0]) == 3


def test_corrupted_checkpoint_names_file(tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(CheckpointError, match="broken.safetensors"):
        load_model(str(bad))
    pth = tmp_path / "broken.pth"
    pth.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="broken.pth"):
        load_model("cifar-resnet20", weights=pth)


def test_foreign_checkpoint_names_key_mismatch(tmp_path):
    path = tmp_path / "r20.pth"
    torch.save(cifar_resnet(20).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"r20.pth.*missing key.*stages\.0\.3"):
        load_model("cifar-resnet32", weights=path)
    with pytest.raises(CheckpointError, match=r"unexpected key"):
        load_model("pytorchcv:resnet20_cifar10", weights=path)


def test_shape_mismatch_in_weights(tmp_path):
    path = tmp_path / "c1.pth"
    torch.save(cifar_resnet(20, in_channels=1).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"shape mismatch.*stem\.0\.weight"):
        load_model("cifar-resnet20", weights=path)


class Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_nothing_unsafe_is_unpickled(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"x": Evil()}, f)
    with pytest.raises(CheckpointError, match="evil.pth"):
        load_model("cifar-resnet20", weights=path)
    assert "code ran" not in capsys.readouterr().out


def test_safetensors_without_resdyn_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="--weights"):
        load_model(str(path))


def test_offline_pretrained_download_says_how_to_fix(tmp_path, monkeypatch):
    """torchvision's download path runs up to the request, which fails as offline (no network
    is reached); the message points to --weights FILE and --weights random."""
    from urllib.error import URLError

    import torchvision

    def offline(url, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match=r"torchvision:resnet18.*--weights FILE.*--weights random"):
        load_model("torchvision:resnet18")


def test_offline_pytorchcv_download_says_how_to_fix(tmp_path, monkeypatch):
    """pytorchcv's download (requests.get, retried) fails as offline; no network is reached."""
    import requests

    def offline(url, *args, **kwargs):
        raise requests.exceptions.ConnectionError(f"Failed to resolve host of {url}")

    monkeypatch.setenv("HOME", str(tmp_path))  # pytorchcv stores its files under ~/.torch
    monkeypatch.setattr(requests, "get", offline)
    with pytest.raises(RuntimeError, match=r"pytorchcv:resnet20_cifar10.*--weights FILE.*random"):
        load_model("pytorchcv:resnet20_cifar10")


# --------------------------------------------------------------------------- model cards


@pytest.mark.parametrize("spec,natural,trained", [
    ("cifar-resnet20", (3, 32, 32), None),  # random weights: trained on nothing
    ("preresnet(2)", (3, 32, 32), None),
    ("digits-resnet20", (1, 8, 8), (1, 8, 8)),  # shipped: recorded in the checkpoint
    ("digits-resnet110", (1, 8, 8), (1, 8, 8)),
])
def test_card_records_trained_shape(spec, natural, trained):
    card = model_card(load_model(spec))
    assert card.spec == spec and card.input_shape == natural and card.trained_shape == trained


def test_card_of_pretrained_families(tmp_path):
    """pytorchcv and torchvision weights (given as files, the offline route) are pretrained ones."""
    path = tmp_path / "r20.pth"
    torch.save(pytorchcv_model("resnet20_cifar10", pretrained=False).state_dict(), path)
    card = model_card(load_model("pytorchcv:resnet20_cifar10", weights=path))
    assert card.input_shape == card.trained_shape == (3, 32, 32) and card.options == {}
    import torchvision

    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    card = model_card(load_model("torchvision:resnet18", weights=path))
    assert card.input_shape == card.trained_shape == (3, 224, 224)


def test_checkpoint_card_trained_shape(tmp_path):
    model = cifar_resnet(8, in_channels=1, num_classes=4).eval()
    with_shape, without = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_checkpoint(model, with_shape, info={"input_shape": [1, 12, 12]}, dtype=torch.float32)
    save_checkpoint(model, without, dtype=torch.float32)
    a, b = model_card(load_model(str(with_shape))), model_card(load_model(str(without)))
    assert a.input_shape == a.trained_shape == (1, 12, 12)
    assert b.input_shape == (1, 32, 32) and b.trained_shape is None


@pytest.mark.parametrize("spec,kwargs", [
    ("cifar-resnet20", {"in_channels": 1, "num_classes": 7}),
    ("preresnet(1)", {"in_channels": 2}),
    ("digits-resnet20", {}),
    ("pytorchcv:resnet20_cifar10", {}),
])
def test_card_options_rebuild_the_architecture_from_a_state_dict(tmp_path, spec, kwargs):
    """load_model(card.spec, weights=FILE, **card.options) is the same network (a worker's route)."""
    torch.manual_seed(0)
    if spec.startswith("pytorchcv:"):  # no download: start from random pytorchcv weights
        start = tmp_path / "start.pth"
        torch.save(pytorchcv_model(spec.split(":")[1], pretrained=False).state_dict(), start)
        model = load_model(spec, weights=start)
    else:
        model = load_model(spec, **kwargs)
    for m in model.modules():  # non-trivial BN statistics, so a wrong rebuild would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
    card = model_card(model)
    if spec.startswith(("cifar", "preresnet")):
        assert card.options == {"in_channels": kwargs.get("in_channels", 3),
                                "num_classes": kwargs.get("num_classes", 10)}
    path = tmp_path / "state.pth"
    torch.save(model.state_dict(), path)
    again = load_model(card.spec, weights=path, **card.options)
    assert model_card(again) == card
    x = torch.randn(2, *card.input_shape)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_load_model_of_a_module_never_changes_it(tmp_path):
    mine = cifar_resnet(20, in_channels=1).train()
    other = cifar_resnet(20, in_channels=1)
    torch.save(other.state_dict(), tmp_path / "w.pth")
    before = {k: v.clone() for k, v in mine.state_dict().items()}
    loaded = load_model(mine, tmp_path / "w.pth")
    assert mine.training and not loaded.training and loaded is not mine
    assert all(torch.equal(before[k], v) for k, v in mine.state_dict().items())
    assert all(torch.equal(other.state_dict()[k], v) for k, v in loaded.state_dict().items())
