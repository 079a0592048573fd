"""Attacks (FGSM, PGD), matched random noise and perturbation propagation, against known answers."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from resdyn import load_model, units
from resdyn.models.blocks import ResidualUnit
from resdyn.perturb import Attack, fgsm, pgd, propagate, random_like

# --------------------------------------------------------------------------- linear network


def _linear_net(seed=0):
    """Two stages of linear units x -> S x + A x (no activation), float64, plus a linear head.

    Stage 0: two units with identity shortcut on (2, 4, 4). Stage 1: one down-sampling unit
    (1x1 stride-2 projection + stride-2 conv) to (3, 2, 2).
    """
    torch.manual_seed(seed)

    def conv(cin, cout, stride=1):
        c = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        nn.init.normal_(c.weight, std=0.2)
        return c

    stage0 = nn.Sequential(*[ResidualUnit(conv(2, 2), nn.Identity(), nn.Identity())
                             for _ in range(2)])
    proj = nn.Conv2d(2, 3, 1, stride=2, bias=False)
    stage1 = nn.Sequential(ResidualUnit(conv(2, 3, 2), proj, nn.Identity()))
    model = nn.Sequential(nn.Sequential(stage0, stage1), nn.Flatten(), nn.Linear(12, 5))
    return model.double().eval()


def _dense(f, in_shape):
    """Matrix of the linear map f acting on flattened (C, H, W) tensors."""
    n = math.prod(in_shape)
    basis = torch.eye(n, dtype=torch.float64).view(n, *in_shape)
    with torch.no_grad():
        return f(basis).reshape(n, -1).T


def test_propagation_through_linear_network_is_the_exact_linear_map():
    model = _linear_net()
    us = units(model, (2, 4, 4))
    assert [u.kind for u in us] == ["regular", "regular", "downsampling"]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    delta = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    p = propagate(model, us, x, delta)

    d = delta.flatten(1).T  # (n, B) columns are perturbations
    for k, u in enumerate(us):
        m = u.parts
        jac = _dense(lambda v, m=m: m.shortcut(v) + m.residual(v), u.in_shape)
        d_in, d = d, jac @ d  # δx_{k+1} = (S_k + A_k) δx_k
        n_in, n_out = d_in.shape[0], d.shape[0]
        torch.testing.assert_close(p.in_norm[k], d_in.norm(dim=0) / math.sqrt(n_in),
                                   rtol=0, atol=1e-10)
        torch.testing.assert_close(p.out_norm[k], d.norm(dim=0) / math.sqrt(n_out),
                                   rtol=0, atol=1e-10)
        torch.testing.assert_close(p.growth[k], d.norm(dim=0) / d_in.norm(dim=0),
                                   rtol=1e-10, atol=0)
    assert p.in_sizes == (32, 32, 32) and p.out_sizes == (32, 32, 12)
    torch.testing.assert_close(p.delta_norm, delta.flatten(1).norm(dim=1) / math.sqrt(32))
    # linear: the perturbation does not depend on x, and the image itself is unit 0's input
    torch.testing.assert_close(p.in_norm[0], p.delta_norm, rtol=0, atol=1e-12)


def test_propagation_table_and_zero_perturbation():
    model = load_model("cifar-resnet20", in_channels=1)
    us = units(model, (1, 8, 8))
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    p = propagate(model, us, x, torch.zeros_like(x))
    assert p.out_norm.shape == (9, 2) and (p.out_norm == 0).all() and (p.in_norm == 0).all()
    assert p.growth.isnan().all() and torch.equal(p.pred_clean, p.pred_perturbed)
    frame = p.to_frame()
    assert len(frame) == 18 and list(frame["unit"][:2]) == [us[0].name] * 2
    assert list(frame["stage"].unique()) == [0, 1, 2]
    assert list(frame["sample"][:4]) == [0, 1, 0, 1]


def test_propagate_checks_its_input():
    model = _linear_net()
    us = units(model, (2, 4, 4))
    x = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="shape of x"):
        propagate(model, us, x, torch.zeros(1, 2, 4, 3))
    with pytest.raises(ValueError, match="empty"):
        propagate(model, [], x, x)
    with pytest.raises(ValueError, match="another model"):
        propagate(_linear_net(), us, x, x)


# --------------------------------------------------------------------------- FGSM


def _classifier(channels=2, side=3, classes=4, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * side * side, classes)).double().eval()


def _hand_grad(model, x, y):
    """∇ₓ CE of a linear classifier: (softmax(Wx + b) − onehot(y)) W, one row per sample."""
    lin = model[1]
    p = torch.softmax(x.flatten(1) @ lin.weight.T + lin.bias, dim=1)
    onehot = torch.nn.functional.one_hot(y, p.shape[1]).double()
    return ((p - onehot) @ lin.weight.detach()).view_as(x)


def test_fgsm_is_the_hand_computed_sign_gradient_step():
    model = _classifier()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 2, 3, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    expected = 0.05 * _hand_grad(model, x, y).sign()
    a = fgsm(model, x, y, 0.05)
    assert isinstance(a, Attack) and a.method == "fgsm" and a.eps == 0.05
    assert torch.equal(a.delta, (x + expected) - x) and torch.equal(a.x_adv, x + expected)
    with torch.no_grad():
        logits = model(x)
    assert torch.equal(a.pred_clean, logits.argmax(1))
    assert torch.equal(a.flipped, a.pred_adv != a.pred_clean)


def test_fgsm_per_channel_eps_and_bounds():
    model = _classifier()
    x = torch.rand(3, 2, 3, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y = torch.tensor([1, 0, 2])
    eps = torch.tensor([0.1, 0.3], dtype=torch.float64).view(1, 2, 1, 1)
    lo, hi = torch.tensor([[[0.0]], [[0.2]]]), torch.tensor([[[1.0]], [[0.9]]])
    x = torch.maximum(torch.minimum(x, hi), lo)
    expected = torch.maximum(torch.minimum(x + eps * _hand_grad(model, x, y).sign(), hi), lo)
    a = fgsm(model, x, y, (0.1, 0.3), bounds=(lo, hi))
    torch.testing.assert_close(a.x_adv, expected, rtol=0, atol=0)
    assert a.eps == (0.1, 0.3)
    assert (a.delta.abs() <= eps + 1e-15).all()


def test_attacks_leave_the_model_alone():
    model = _classifier()
    model.train()
    model[0].eval()  # mixed flags must come back as they were
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, 2, 3, 3, dtype=torch.float64)
    y = torch.tensor([0, 1])
    fgsm(model, x, y, 0.1)
    pgd(model, x, y, 0.1, steps=2, seed=0)
    assert model.training and not model[0].training and model[1].training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_attack_input_errors():
    model = _classifier()
    x = torch.rand(2, 2, 3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="integer class labels"):
        fgsm(model, x, torch.tensor([0.0, 1.0]), 0.1)
    with pytest.raises(ValueError, match="one per channel"):
        fgsm(model, x, torch.tensor([0, 1]), (0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match="outside bounds"):
        fgsm(model, x + 2, torch.tensor([0, 1]), 0.1, bounds=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"valid norms are \['l2', 'linf'\]"):
        pgd(model, x, torch.tensor([0, 1]), 0.1, norm="l1")
    with pytest.raises(ValueError, match="single number"):
        pgd(model, x, torch.tensor([0, 1]), (0.1, 0.2), norm="l2")


# --------------------------------------------------------------------------- PGD


@pytest.fixture(scope="module")
def small_net():
    model = load_model("cifar-resnet20", in_channels=1)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1
    return model, x, torch.tensor([0, 3, 5, 7])


def test_pgd_one_step_without_random_start_is_fgsm(small_net):
    model, x, y = small_net
    a = pgd(model, x, y, 0.03, steps=1, step_size=0.03, bounds=(-1.0, 1.0))
    b = fgsm(model, x, y, 0.03, bounds=(-1.0, 1.0))
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.delta, b.delta)
    assert a.method == "pgd-linf"


@pytest.mark.parametrize("norm,eps", [("linf", 0.05), ("l2", 0.4)])
def test_pgd_stays_in_ball_and_bounds(small_net, norm, eps):
    model, x, y = small_net
    lo, hi = torch.tensor(-1.0), torch.tensor(0.8)
    xc = x.clamp(lo, hi)
    a = pgd(model, xc, y, eps, steps=4, bounds=(lo, hi), norm=norm, seed=1)
    size = a.linf if norm == "linf" else a.l2
    assert (size <= eps * (1 + 1e-5)).all() and (size > 0).all()
    assert (a.x_adv >= lo).all() and (a.x_adv <= hi).all()
    assert torch.equal(a.x_adv - xc, a.delta)
    again = pgd(model, xc, y, eps, steps=4, bounds=(lo, hi), norm=norm, seed=1)
    other = pgd(model, xc, y, eps, steps=4, bounds=(lo, hi), norm=norm, seed=2)
    assert torch.equal(a.delta, again.delta) and not torch.equal(a.delta, other.delta)


def test_pgd_per_channel_linf_ball():
    model = _classifier()
    x = torch.rand(3, 2, 3, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    a = pgd(model, x, torch.tensor([0, 1, 2]), (0.01, 0.2), steps=3, seed=0)
    per_channel = a.delta.abs().amax(dim=(0, 2, 3))
    assert per_channel[0] <= 0.01 + 1e-15 and per_channel[1] <= 0.2 + 1e-15
    assert per_channel[1] > 0.01


# --------------------------------------------------------------------------- random_like


def test_random_like_matches_norms_and_is_seeded():
    delta = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    delta[1] = 0
    r = random_like(delta, seed=7)
    torch.testing.assert_close(r.flatten(1).norm(dim=1), delta.flatten(1).norm(dim=1))
    assert (r[1] == 0).all()
    assert torch.equal(r, random_like(delta, seed=7))
    assert torch.equal(r, random_like(delta, seed=torch.Generator().manual_seed(7)))
    assert not torch.equal(r, random_like(delta, seed=8))
    # uniform noise: every sample is a positive multiple of a vector with entries in [-1, 1]
    scaled = r[0] / r[0].abs().max()
    assert scaled.min() >= -1 and scaled.max() <= 1 and scaled.std() > 0.3


@settings(max_examples=20, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), seed=st.integers(0, 2**31))
def test_random_like_norm_property(shape, seed):
    delta = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    r = random_like(delta, seed=seed)
    assert r.shape == delta.shape and r.dtype == delta.dtype
    torch.testing.assert_close(r.reshape(shape[0], -1).norm(dim=1),
                               delta.reshape(shape[0], -1).norm(dim=1), rtol=1e-12, atol=1e-300)
