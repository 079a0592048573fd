"""Scaled skips (Unit.forward and unit_jacobian with alpha) and weight interpolation: exact
answers, and the original model untouched."""

import numpy as np
import pytest
import torch
from pytorchcv.model_provider import get_model as pytorchcv_model
from torch import nn

from resdyn import load_model, units
from resdyn.models.blocks import ResidualUnit
from resdyn.models.interventions import interpolate_weights
from resdyn.operators import unit_jacobian


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(model, snap):
    sd = model.state_dict()
    return sd.keys() == snap.keys() and all(torch.equal(sd[k], snap[k]) for k in snap)


def _linear_model(seed=0):
    """units x -> x + A x (identity skip) and x -> P x + B x (projection), no activation."""
    torch.manual_seed(seed)
    u1 = ResidualUnit(nn.Conv2d(2, 2, 3, padding=1, bias=False), nn.Identity(), nn.Identity())
    u2 = ResidualUnit(nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False),
                      nn.Conv2d(2, 3, 1, stride=2, bias=False), nn.Identity())
    return nn.Sequential(u1, u2).double().eval()


# --------------------------------------------------------------------------- skip scaling


def _conv_matrix(conv: nn.Conv2d, shape) -> torch.Tensor:
    """The dense matrix of a bias-free convolution on flattened (C, H, W) inputs."""
    n = int(np.prod(shape))
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    with torch.no_grad():
        return conv(basis).reshape(n, -1).T


def test_scaled_linear_unit_is_alpha_x_plus_a_x():
    """forward(x, α) = α·S(x) + A(x) exactly, and its Jacobian is α·I + A (α·P + B)."""
    model = _linear_model()
    snap = _snapshot(model)
    u1, u2 = units(model, (2, 4, 4))
    x = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a = model[0].residual
    with torch.no_grad():
        torch.testing.assert_close(u1.forward(x, 0.3), 0.3 * x + a(x), rtol=0, atol=0)
        h = -0.5 * x + a(x)
        expected = -0.5 * model[1].shortcut(h) + model[1].residual(h)
        torch.testing.assert_close(u2.forward(u1.forward(x, -0.5), -0.5), expected, rtol=0,
                                   atol=0)
    eye, big_a = torch.eye(32, dtype=torch.float64), _conv_matrix(a, (2, 4, 4))
    p, b = (_conv_matrix(c, (2, 4, 4)) for c in (model[1].shortcut, model[1].residual))
    for alpha in (0.3, -0.5, 0.0, 1.0):
        torch.testing.assert_close(unit_jacobian(u1, x[0], alpha=alpha).dense(),
                                   alpha * eye + big_a, rtol=0, atol=1e-15)
        torch.testing.assert_close(unit_jacobian(u2, x[0], alpha=alpha).dense(), alpha * p + b,
                                   rtol=0, atol=1e-15)
    # the original: same modules, same parameters, same mode
    assert type(model[0]) is ResidualUnit and _same(model, snap) and not model.training


@pytest.mark.parametrize("make", [lambda: load_model("cifar-resnet20"),
                                  lambda: pytorchcv_model("resnet20_cifar10").eval(),
                                  lambda: pytorchcv_model("preresnet20_cifar10").eval()])
def test_skip_scale_on_known_families(make):
    """α = 1 is each unit's own forward; any α is activation(α·S(x) + R(x)) from its parts."""
    model = make()
    us = units(model, (3, 32, 32))
    assert len(us) == 9
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for u in (us[1], us[3]):  # a regular and a down-sampling unit
            x = torch.randn(1, *u.in_shape, generator=g)
            torch.testing.assert_close(u.forward(x, 1.0), u.module(x), rtol=1e-5, atol=1e-5)
            p = u.parts
            expected = p.activation(0.5 * p.shortcut(x) + p.residual(x))
            torch.testing.assert_close(u.forward(x, 0.5), expected, rtol=0, atol=0)
            assert not torch.allclose(u.forward(x, 0.5), u.forward(x, 1.0))


def test_skip_scale_errors():
    model = _linear_model()
    (opaque,) = units(model, (2, 4, 4), names=["0.residual"])
    with pytest.raises(ValueError, match="cannot be scaled"):
        opaque.forward(torch.zeros(1, 2, 4, 4), alpha=0.5)
    u = units(model, (2, 4, 4))[0]
    with pytest.raises(ValueError, match="finite"):
        u.forward(torch.zeros(1, 2, 4, 4), alpha=float("nan"))
    with pytest.raises(ValueError, match="finite"):
        unit_jacobian(u, torch.zeros(2, 4, 4), alpha=float("inf"))


# --------------------------------------------------------------------------- weight interpolation


def _conv_weights(module):
    return {n: p for n, p in module.named_parameters() if n.endswith("weight") and p.dim() > 1}


def test_interpolation_at_t1_changes_nothing():
    model = load_model("cifar-resnet20", in_channels=1)
    snap = _snapshot(model)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    same = interpolate_weights(model, ["stages.0.1", "stages.1.0"], 1.0, seed=0)
    assert _same(same, snap) and _same(model, snap)
    with torch.no_grad():
        assert torch.equal(same(x), model(x))


def test_interpolation_at_t0_keeps_norms_and_only_touches_named_units():
    model = load_model("cifar-resnet20", in_channels=1).double()
    snap = _snapshot(model)
    name = "stages.1.0"  # down-sampling unit: its 1x1 projection is interpolated too
    noisy = interpolate_weights(model, name, 0.0, seed=3)
    assert _same(model, snap)
    changed = {k for k in snap if not torch.equal(noisy.state_dict()[k], snap[k])}
    assert changed == {f"{name}.{n}" for n in _conv_weights(model.get_submodule(name))}
    assert changed == {f"{name}.residual.0.weight", f"{name}.residual.3.weight",
                       f"{name}.shortcut.0.weight"}
    for k in changed:
        torch.testing.assert_close(noisy.state_dict()[k].norm(), snap[k].norm(),
                                   rtol=1e-12, atol=0)


def test_interpolation_is_a_straight_line_and_seeded():
    model = load_model("cifar-resnet20", in_channels=1).double()
    key = "stages.0.2.residual.3.weight"
    theta = model.state_dict()[key]
    eta = interpolate_weights(model, ["stages.0.2"], 0.0, seed=5).state_dict()[key]
    half = interpolate_weights(model, ["stages.0.2"], 0.25, seed=5).state_dict()[key]
    torch.testing.assert_close(half, 0.25 * theta + 0.75 * eta, rtol=1e-12, atol=1e-14)
    again = interpolate_weights(model, ["stages.0.2"], 0.0, seed=torch.Generator().manual_seed(5))
    assert torch.equal(again.state_dict()[key], eta)
    other = interpolate_weights(model, ["stages.0.2"], 0.0, seed=6)
    assert not torch.equal(other.state_dict()[key], eta)


def test_interpolation_errors():
    model = _linear_model()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        interpolate_weights(model, ["0"], 1.5, seed=0)
    with pytest.raises(KeyError, match="no submodule"):
        interpolate_weights(model, ["9"], 0.5, seed=0)
    with pytest.raises(ValueError, match="no convolution or linear weight"):
        interpolate_weights(nn.Sequential(nn.BatchNorm2d(2)), ["0"], 0.5, seed=0)
    with pytest.raises(ValueError, match="non-empty"):
        interpolate_weights(model, [], 0.5, seed=0)
    with pytest.raises(TypeError, match="seed"):
        interpolate_weights(model, ["0"], 0.5, seed=None)
