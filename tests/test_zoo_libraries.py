"""torchvision:NAME and timm:NAME: any model the library lists, weights from a download, a file,
or a reproducible random initialisation, and the input shape from the model's own config.

No test reaches the network: downloads are made to fail (or to succeed) by monkeypatching the
library's download function."""

import sys
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from click.testing import CliRunner
from safetensors.torch import save_file

from resdyn import UnknownModel, load_model, model_card, zoo_names
from resdyn.cli import app
from resdyn.runs.identity import model_digest

SMALL = ["timm:test_resnet", "torchvision:squeezenet1_1"]  # < 0.1 s to build each


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _library_model(spec: str) -> torch.nn.Module:
    """The model as the library itself builds it, randomly initialised (no resdyn involved)."""
    library, name = spec.split(":")
    if library == "timm":
        return timm.create_model(name, pretrained=False).eval()
    return torchvision.models.get_model(name, weights=None).eval()


# ------------------------------------------------------------------------- random weights


@pytest.mark.parametrize("spec", [*SMALL, "cifar-resnet20", "pytorchcv:resnet20_cifar10"])
def test_random_weights_are_reproducible(spec):
    """Two loads draw the same weights whatever the global RNG, and leave it as it was."""
    torch.manual_seed(1)
    before = torch.get_rng_state()
    a = load_model(spec, weights="random")
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is untouched
    torch.manual_seed(2)
    b = load_model(spec, weights=Path("random"))  # the command line passes --weights as a Path
    assert _same_state(a, b) and model_digest(a) == model_digest(b)  # the run identity's hash
    card = model_card(a)
    assert card.spec == spec and card.info == {"weights": "random"} and card.trained_shape is None


def test_random_weights_are_not_a_file_or_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="checkpoint"):
        load_model("digits-resnet20", weights="random")
    with pytest.raises(ValueError, match="module keeps its own weights"):
        load_model(torch.nn.Linear(2, 2), weights="random")


# ------------------------------------------------------------------------- input shapes


@pytest.mark.parametrize("spec,shape", [
    ("timm:test_vit", (3, 160, 160)),  # timm's pretrained_cfg input_size
    ("timm:resnet10t", (3, 176, 176)),
    ("timm:test_resnet.r160_in1k", (3, 160, 160)),  # NAME.TAG
    ("torchvision:inception_v3", (3, 299, 299)),  # the weights' transforms crop size
    ("torchvision:efficientnet_b3", (3, 300, 300)),
    ("torchvision:squeezenet1_1", (3, 224, 224)),
])
def test_input_shape_from_the_models_config(spec, shape):
    card = model_card(load_model(spec, weights="random"))
    assert card.input_shape == shape


def test_fixed_size_model_takes_its_card_shape():
    """A timm ViT takes its config's size only: the card's shape is one it accepts."""
    model = load_model("timm:test_vit", weights="random")
    with torch.no_grad():
        assert model(torch.randn(1, *model_card(model).input_shape)).shape == (1, 1000)


def test_units_command_needs_no_input_shape():
    r = CliRunner().invoke(app, ["units", "--model", "timm:test_resnet", "--weights", "random"])
    assert r.exit_code == 0, r.output
    assert "input (3, 160, 160)" in r.output and "layer1.0" in r.output


# ------------------------------------------------------------------------- weights files


@pytest.mark.parametrize("spec,suffix", [("timm:test_resnet", ".pth"),
                                         ("torchvision:squeezenet1_1", ".safetensors"),
                                         ("timm:test_vit", ".safetensors")])
def test_weights_file_round_trip(tmp_path, spec, suffix):
    """A state dict saved from the library's own model loads back identical, as pretrained."""
    torch.manual_seed(3)
    ref = _library_model(spec)
    for m in ref.modules():  # non-trivial BN statistics, so a wrong mapping would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    model = load_model(spec, weights=path)
    assert _same_state(model, ref)
    card = model_card(model)
    assert card.trained_shape == card.input_shape and card.info == {}
    x = torch.randn(2, *card.input_shape)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))


def test_pretrained_torchvision_rebuilds_from_its_state_dict(tmp_path, monkeypatch):
    """A downloaded model (here a fake download) saved as a state dict and rebuilt with
    --weights is the same network (a run's workers rebuild it so): googlenet keeps its
    auxiliary heads and transforms its input as the pretrained one does."""
    torch.manual_seed(4)
    weights = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url",
                        lambda url, *a, **k: weights.state_dict())
    pretrained = load_model("torchvision:googlenet")
    assert model_card(pretrained).trained_shape == (3, 224, 224)
    path = tmp_path / "googlenet.pth"
    torch.save(pretrained.state_dict(), path)
    again = load_model("torchvision:googlenet", weights=path)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(again(x), pretrained(x))


# ------------------------------------------------------------------------- names


@pytest.mark.parametrize("spec,close", [
    ("torchvision:resnet9000", "torchvision:resnet50"),
    ("torchvision:vit_b_17", "torchvision:vit_b_16"),
    ("timm:resnet9000", "timm:resnet50"),
    ("timm:resnet18.bogus", "timm:resnet18."),  # a tag: close matches among the tags
])
def test_unknown_name_suggests_close_matches(spec, close):
    with pytest.raises(UnknownModel) as e:
        load_model(spec, weights="random")
    msg = str(e.value)
    assert isinstance(e.value, ValueError) and close in msg and "list_models" in msg


def test_bare_library_name_suggests_the_prefix():
    with pytest.raises(UnknownModel, match="did you mean torchvision:resnet50 or timm:resnet50"):
        load_model("resnet50")


def test_zoo_lists_the_libraries_as_patterns():
    rows = dict(zoo_names())
    tv = len(torchvision.models.list_models(module=torchvision.models))
    assert f"any of the {tv} classification models torchvision lists" in rows["torchvision:NAME"]
    assert f"any of the {len(timm.list_models())} models timm lists" in rows["timm:NAME"]
    assert "timm:vit_base_patch16_224" in rows["timm:NAME"]
    assert "--weights random" in rows["torchvision:NAME"]
    assert not [n for n in rows if n.startswith("torchvision:") and n != "torchvision:NAME"]


def test_timm_missing_says_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(RuntimeError, match="pip install timm"):
        load_model("timm:test_resnet", weights="random")
    assert "pip install timm" in dict(zoo_names())["timm:NAME"]


# ------------------------------------------------------------------------- downloads


def _no_download(monkeypatch, error: Exception) -> None:
    """Every download route of timm raises ``error`` (so nothing reaches the network)."""
    def fail(*args, **kwargs):
        raise error

    for target in ("timm.models._hub.hf_hub_download", "timm.models._builder.load_state_dict_from_url",
                   "timm.models._builder.download_cached_file"):
        monkeypatch.setattr(target, fail)


@pytest.mark.parametrize("error", [
    pytest.param("hub", id="huggingface_hub-LocalEntryNotFoundError"),
    pytest.param(ConnectionError("Failed to establish a new connection"), id="ConnectionError"),
    pytest.param(RuntimeError("Cannot send a request, as the client has been closed: connect"),
                 id="RuntimeError-naming-connect"),
])
def test_offline_timm_download_says_how_to_fix(monkeypatch, error):
    if error == "hub":
        from huggingface_hub.errors import LocalEntryNotFoundError

        error = LocalEntryNotFoundError("Cannot find the requested files in the disk cache and "
                                        "outgoing traffic has been disabled")
    _no_download(monkeypatch, error)
    with pytest.raises(RuntimeError, match=r"timm:test_resnet.*--weights FILE.*--weights random"):
        load_model("timm:test_resnet")


def test_other_download_failures_are_not_called_offline(monkeypatch):
    _no_download(monkeypatch, KeyError("state_dict"))
    with pytest.raises(KeyError, match="state_dict"):
        load_model("timm:test_resnet")
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url",
                        lambda url, *a, **k: {"bogus": torch.zeros(1)})
    with pytest.raises(RuntimeError, match="bogus") as e:
        load_model("torchvision:squeezenet1_1")
    assert "offline" not in str(e.value)


def test_pretrained_timm_download_is_used(monkeypatch):
    """With the download answered (a fake hub file), the model carries those weights."""
    torch.manual_seed(5)
    ref = timm.create_model("test_resnet", pretrained=False)
    monkeypatch.setattr("timm.models._builder.load_state_dict_from_hf",
                        lambda *a, **k: ref.state_dict())
    model = load_model("timm:test_resnet")
    assert _same_state(model, ref)
    card = model_card(model)
    assert card.trained_shape == card.input_shape == (3, 160, 160) and card.info == {}


def test_model_without_pretrained_weights_says_so():
    def has_weights(name):
        cfg = timm.models.get_pretrained_cfg(name)
        return cfg is None or cfg.hf_hub_id or cfg.url or cfg.file

    untrained = next(n for n in timm.list_models() if not has_weights(n))
    with pytest.raises(ValueError, match="no pretrained weights.*--weights random"):
        load_model(f"timm:{untrained}")
