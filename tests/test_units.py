"""Residual-unit discovery on every supported family: counts, kinds, stages, shapes, parts."""

import pytest
import torch
import torchvision
from pytorchcv.model_provider import get_model as pytorchcv_model
from torch import nn

from resdyn import NoUnitsFound, load_model, stages, units
from resdyn.models import cifar_resnet, natural_input_shape, preresnet


def _forward_matches(model, us, seed=0):
    """unit.forward(x) (built from its parts) equals the module's own forward, for every unit."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for u in us:
            x = torch.randn(2, *u.in_shape, generator=g)
            assert torch.allclose(u.forward(x), u.module(x), atol=1e-5), u.name


def _kinds(us):
    return [u.kind for u in us]


def test_resnet56_has_27_units_2_downsampling():
    m = load_model("cifar-resnet56")
    us = units(m, (3, 32, 32))
    assert len(us) == 27
    assert [u.name for u in us if u.kind == "downsampling"] == ["stages.1.0", "stages.2.0"]
    assert [len(s) for s in stages(us)] == [9, 9, 9]
    assert us[0].in_shape == (16, 32, 32) and us[9].out_shape == (32, 16, 16)
    assert us[18].in_shape == (32, 16, 16) and us[18].out_shape == (64, 8, 8)
    assert (us[18].n_in, us[18].n_out) == (8192, 4096)
    assert [u.position for u in us[:10]] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 0]
    _forward_matches(m, us)


@pytest.mark.parametrize("depth,n", [(20, 3), (32, 5), (44, 7), (110, 18)])
def test_cifar_depths(depth, n):
    us = units(cifar_resnet(depth, in_channels=1), (1, 8, 8))
    assert len(us) == 3 * n and _kinds(us).count("downsampling") == 2
    assert us[-1].out_shape == (64, 2, 2)


@pytest.mark.parametrize("blocks", [1, 2, 4])
def test_preresnet_any_depth(blocks):
    m = preresnet(blocks)
    us = units(m, (3, 16, 16))
    assert len(us) == 3 * blocks and us[0].parts.family == "resdyn"
    assert [len(s) for s in stages(us)] == [blocks] * 3
    _forward_matches(m, us)


@pytest.mark.parametrize("name,n,down", [("resnet56_cifar10", 27, 2), ("preresnet20_cifar10", 9, 2),
                                         ("resnet20_cifar10", 9, 2)])
def test_pytorchcv(name, n, down):
    m = pytorchcv_model(name, pretrained=False).eval()
    us = units(m, (3, 32, 32))
    assert len(us) == n and _kinds(us).count("downsampling") == down
    assert us[0].name == "features.stage1.unit1" and len(stages(us)) == 3
    _forward_matches(m, us)


@pytest.mark.parametrize("name,n,down,first", [("resnet18", 8, 3, "regular"),
                                               ("resnet34", 16, 3, "regular"),
                                               ("resnet50", 16, 4, "downsampling")])
def test_torchvision(name, n, down, first):
    m = torchvision.models.get_model(name, weights=None).eval()
    us = units(m, (3, 64, 64))
    assert len(us) == n and _kinds(us).count("downsampling") == down
    assert us[0].kind == first and len(stages(us)) == 4 and us[0].name == "layer1.0"
    _forward_matches(m, us)


class BasicBlock(nn.Module):
    """The CIFAR BasicBlock of chenyaofo/pytorch-cifar-models, rewritten from its description."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ChenyaofoResNet(nn.Module):
    def __init__(self, layers=(2, 2, 2)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1, self.relu = nn.BatchNorm2d(16), nn.ReLU(inplace=True)
        cin = 16
        for i, (w, n) in enumerate(zip((16, 32, 64), layers, strict=True)):
            stride = 1 if i == 0 else 2
            ds = None if stride == 1 and cin == w else nn.Sequential(
                nn.Conv2d(cin, w, 1, stride, bias=False), nn.BatchNorm2d(w))
            blocks = [BasicBlock(cin, w, stride, ds)] + [BasicBlock(w, w) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = w
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(64, 10)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def test_chenyaofo_style_blocks():
    m = ChenyaofoResNet().eval()
    us = units(m, (3, 16, 16))
    assert [u.name for u in us] == ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0",
                                    "layer3.1"]
    assert _kinds(us) == ["regular", "regular", "downsampling", "regular", "downsampling", "regular"]
    assert us[4].out_shape == (64, 4, 4)
    _forward_matches(m, us)


def test_skip_scale_on_parts():
    """forward(x, alpha) = relu(alpha * x + R(x)) for an identity-shortcut unit."""
    m = load_model("cifar-resnet20")
    u = units(m, (3, 8, 8))[1]
    x = torch.randn(1, *u.in_shape)
    with torch.no_grad():
        expect = torch.relu(0.5 * x + u.module.residual(x))
        assert torch.allclose(u.forward(x, alpha=0.5), expect)


class Opaque(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.c = nn.Conv2d(4, 8, 3, stride=2, padding=1)

    def forward(self, x):
        x = self.a(x)
        return self.c(x + self.b(x))


def test_unrecognised_model_explains_explicit_names():
    with pytest.raises(NoUnitsFound, match=r"Opaque.*names="):
        units(Opaque(), (1, 8, 8))


def test_explicit_unit_names():
    us = units(Opaque(), (1, 8, 8), names=["c", "b"])
    assert [u.name for u in us] == ["b", "c"]  # forward order, not the order given
    assert _kinds(us) == ["regular", "downsampling"] and us[1].out_shape == (8, 4, 4)
    assert us[0].parts is None
    with pytest.raises(ValueError, match="cannot be scaled"):
        us[0].forward(torch.zeros(1, 4, 8, 8), alpha=0.5)
    with pytest.raises(KeyError, match="no submodule"):
        units(Opaque(), (1, 8, 8), names=["nope"])


# --------------------------------------------------------------------------- inferred input shape


class _Plain(nn.Module):
    """A model resdyn knows nothing about, wrapping another (so no ResNet arch is seen)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


def _with_attributes(inner, **attributes):
    model = _Plain(inner)
    for k, v in attributes.items():
        setattr(model, k, v)
    return model


@pytest.mark.parametrize("make,shape", [
    (lambda: load_model("digits-resnet20"), (1, 8, 8)),  # the card: trained on 8x8 digits
    (lambda: load_model("cifar-resnet20", in_channels=1), (1, 32, 32)),  # card of a zoo model
    (lambda: cifar_resnet(20, in_channels=2), (2, 32, 32)),  # resdyn ResNet without a card
    (lambda: preresnet(1, in_channels=1), (1, 32, 32)),
    (lambda: pytorchcv_model("resnet20_cifar10", pretrained=False), (3, 32, 32)),  # in_size
    (lambda: pytorchcv_model("resnet20_cifar10", pretrained=False, in_channels=1), (1, 32, 32)),
    (lambda: _with_attributes(cifar_resnet(8, in_channels=2), in_size=(12, 12)), (2, 12, 12)),
    (lambda: _with_attributes(cifar_resnet(8, in_channels=2), in_size=[16, 8], in_channels=2),
     (2, 16, 8)),
])
def test_input_shape_inferred_where_the_model_states_it(make, shape):
    model = make().eval()
    assert natural_input_shape(model) == shape
    inferred, given = units(model), units(model, shape)
    assert [(u.name, u.in_shape, u.out_shape) for u in inferred] == \
        [(u.name, u.in_shape, u.out_shape) for u in given]
    assert inferred[0].in_shape[1:] == shape[1:]


def test_input_shape_positional_and_keyword_forms():
    model = cifar_resnet(20, in_channels=1)
    a = units(model, (1, 8, 8))
    b = units(model, input_shape=[1, 8, 8], names=None)
    c = units(model, torch.Size([1, 8, 8]))
    assert [u.in_shape for u in a] == [u.in_shape for u in b] == [u.in_shape for u in c]
    assert a[0].in_shape == (16, 8, 8)


def test_input_shape_required_when_the_model_states_none():
    net = torchvision.models.resnet18(weights=None).eval()  # no card, no in_size
    assert natural_input_shape(net) is None
    assert natural_input_shape(_with_attributes(nn.Linear(2, 2), in_size=(8, 8))) is None  # no conv
    assert natural_input_shape(_with_attributes(net, in_size=8)) is None  # not a pair
    with pytest.raises(ValueError, match=r"needs the input shape of ResNet.*units\(model, \(3, "):
        units(net)
    assert len(units(net, (3, 64, 64))) == 8
    for bad in ((8, 8), (1, 8, 8, 1)):  # shapes of another length: the forward refuses them
        with pytest.raises(ValueError, match=r"does not take inputs of shape .*4D"):
            units(cifar_resnet(20, in_channels=1), bad)
    for bad in ((), (1, 0, 8), "1x8x8", (1.0, 8, 8)):
        with pytest.raises(ValueError, match=r"input_shape must be the shape of one input"):
            units(cifar_resnet(20, in_channels=1), bad)
