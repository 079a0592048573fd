"""Residual steps found from the computation (resdyn.models.discover): a dozen families built
tiny give the units and parts written out by hand, each unit's Jacobian operator equals an
autograd Jacobian of the step written by hand, and additions that are not x + f(x) are not
units (with the reason)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resdyn import units
from resdyn.models import NoUnitsFound
from resdyn.models.adapters import torchvision_style_unit
from resdyn.models.discover import discover
from resdyn.models.surgery import copy_unit
from resdyn.operators.jacobian import residual_jacobian, shortcut_jacobian, unit_jacobian


def _jac(fn, x):
    """Autograd Jacobian of fn at x (float64), flattened: (n_out, n_in)."""
    x = x.detach().double()
    return torch.autograd.functional.jacobian(
        lambda t: fn(t.reshape(1, *x.shape)).reshape(-1), x.reshape(-1), vectorize=True)


def _unit_matches(unit, step, x):
    """unit's Jacobian operator (float64 copy) against autograd on ``step`` written by hand."""
    J = unit_jacobian(unit, x).dense()
    torch.testing.assert_close(J, _jac(step, x), rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- hand-written blocks

class PreLN(nn.Module):
    """x -> x + Attn(LN1 x) -> (.) + MLP(LN2 .), on (tokens, dim)."""

    def __init__(self, d=8):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 16), nn.GELU(), nn.Linear(16, d))

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class PostLN(nn.Module):
    """x -> LN1(x + tanh(W x)) -> LN2(. + MLP .)."""

    def __init__(self, d=8):
        super().__init__()
        self.mix, self.ln1 = nn.Linear(d, d), nn.LayerNorm(d)
        self.mlp, self.ln2 = nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, d)), \
            nn.LayerNorm(d)

    def forward(self, x):
        x = self.ln1(x + torch.tanh(self.mix(x)))
        return self.ln2(x + self.mlp(x))


class Projection(nn.Module):
    """A user's block with a projection shortcut: relu(P x + W2 relu(W1 x))."""

    def __init__(self):
        super().__init__()
        self.w1, self.w2, self.proj = nn.Linear(6, 10), nn.Linear(10, 4), nn.Linear(6, 4)

    def forward(self, x):
        return F.relu(self.proj(x) + self.w2(F.relu(self.w1(x))))


class InnerSum(nn.Module):
    """x + g(x) where g adds two of its own features: one step, the inner sum in its branch."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(5, 5), nn.Linear(5, 5)

    def forward(self, x):
        u = self.a(x)
        return x + (torch.tanh(u) + torch.sigmoid(self.b(u)))


class Fusion(nn.Module):
    """relu(W1 x) + relu(W2 x): two nonlinear paths summed, no shortcut (not x + f(x))."""

    def __init__(self):
        super().__init__()
        self.p, self.q = nn.Linear(5, 5), nn.Linear(5, 5)

    def forward(self, x):
        return F.relu(self.p(x)) + F.relu(self.q(x))


class Shifted(nn.Module):
    """x + pos (a constant): an addition, but not of two tensors computed from x."""

    def __init__(self):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(3, 5))

    def forward(self, x):
        return x + self.pos


def test_pre_ln_block_gives_two_steps_named_after_their_cores():
    torch.manual_seed(0)
    net = nn.Sequential(PreLN(), PreLN()).eval()
    us = units(net, (4, 8))
    assert [u.name for u in us] == ["0.attn", "0.mlp", "1.attn", "1.mlp"]
    assert all(u.parts.family == "discovered" and not u.parts.projection for u in us)
    b, x = net[0], torch.randn(4, 8, dtype=torch.float64)
    bd = PreLN().double().eval()
    bd.load_state_dict(b.state_dict())

    def attn_step(t):
        h = bd.ln1(t)
        return t + bd.attn(h, h, h, need_weights=False)[0]

    _unit_matches(us[0], attn_step, x)
    _unit_matches(us[1], lambda t: t + bd.mlp(bd.ln2(t)), x)


def test_post_ln_block_has_the_norms_as_activations():
    torch.manual_seed(1)
    b = PostLN().eval()
    us = units(nn.Sequential(b), (3, 8))
    assert [u.name for u in us] == ["0.mix", "0.mlp"]
    bd = PostLN().double().eval()
    bd.load_state_dict(b.state_dict())
    x = torch.randn(3, 8, dtype=torch.float64)
    _unit_matches(us[0], lambda t: bd.ln1(t + torch.tanh(bd.mix(t))), x)
    _unit_matches(us[1], lambda t: bd.ln2(t + bd.mlp(t)), x)
    R = residual_jacobian(us[1], x).dense()
    torch.testing.assert_close(R, _jac(bd.mlp, x))


def test_projection_shortcut_is_found_and_split():
    torch.manual_seed(2)
    b = Projection().eval()
    (u,) = units(nn.Sequential(b), (6,))
    assert u.name == "0" and u.parts.projection and u.kind == "downsampling"
    bd = Projection().double().eval()
    bd.load_state_dict(b.state_dict())
    x = torch.randn(6, dtype=torch.float64)
    _unit_matches(u, bd, x)
    torch.testing.assert_close(shortcut_jacobian(u, x).dense(), bd.proj.weight)
    torch.testing.assert_close(residual_jacobian(u, x).dense(),
                               _jac(lambda t: bd.w2(F.relu(bd.w1(t))), x))


def test_an_inner_sum_is_part_of_the_branch():
    torch.manual_seed(3)
    b = InnerSum().eval()
    found = discover(nn.Sequential(b), torch.randn(1, 5))
    (report,) = [r for r in found.reports if r.path == "0"]
    assert (report.adds, report.steps, report.verified) == (2, 1, True)
    (u,) = units(nn.Sequential(b), (5,))
    bd = InnerSum().double().eval()
    bd.load_state_dict(b.state_dict())
    _unit_matches(u, bd, torch.randn(5, dtype=torch.float64))


@pytest.mark.parametrize("block, words", [
    (Fusion, "parallel paths of one size"),
    (Shifted, "adds no two tensors computed"),
])
def test_additions_that_are_not_x_plus_f_x_are_not_units(block, words):
    with pytest.raises(NoUnitsFound, match=words):
        units(nn.Sequential(block()), (3, 5))


# ---------------------------------------------------------------- library families, tiny

def _family(name):
    import timm
    import torchvision

    torch.manual_seed(0)
    tv, image, small = torchvision.models, (3, 16, 16), (3, 8, 8)
    if name == "torchvision resnet":
        return tv.resnet18(num_classes=3), small
    if name == "timm resnet":
        return timm.create_model("resnet10t", num_classes=3), small
    if name == "convnext":
        return timm.create_model("convnext_atto", num_classes=3, dims=(8, 16, 24, 32)), (3, 32, 32)
    if name == "inverted residual":
        return tv.mobilenet_v2(width_mult=0.25, num_classes=3), image
    if name == "regnet":
        return timm.create_model("regnetx_002", num_classes=3), image
    if name == "swin":
        from torchvision.models.swin_transformer import SwinTransformerBlock

        blocks = [SwinTransformerBlock(16, 2, [4, 4], [s, s]) for s in (0, 2)]
        return nn.Sequential(*blocks), (8, 8, 16)
    if name == "mixer":
        from timm.models.mlp_mixer import MixerBlock

        return nn.Sequential(MixerBlock(16, 9), MixerBlock(16, 9)), (9, 16)
    if name == "poolformer":
        return timm.create_model("poolformer_s12", num_classes=3), image
    raise KeyError(name)


#: family -> (units, names of the first module's units)
FAMILIES = {
    "torchvision resnet": (8, ["layer1.0"]),  # the BasicBlock adapter
    "timm resnet": (4, ["layer1.0"]),
    "convnext": (12, ["stages.0.blocks.0"]),
    "inverted residual": (11, ["features.1"]),  # at width 0.25 the first block keeps 8 channels
    "regnet": (13, ["s1.b1"]),
    "swin": (4, ["0.attn", "0.mlp"]),
    "mixer": (4, ["0.mlp_tokens", "0.mlp_channels"]),
    "poolformer": (24, ["stages.0.blocks.0.token_mixer", "stages.0.blocks.0.mlp"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_library_family_units_compose_to_autograd_of_the_module(family):
    """The units of the first residual module, their Jacobian operators multiplied in turn,
    equal the autograd Jacobian of that module's own forward (float64 copies)."""
    from resdyn.capture import capture

    count, first = FAMILIES[family]
    model, shape = _family(family)
    model.eval()
    us = units(model, shape)
    assert len(us) == count
    assert [u.name for u in us[:len(first)]] == first
    found = discover(model, torch.randn(1, *shape))
    assert all(r.verified or not r.steps for r in found.reports)  # no false unit anywhere
    mine = [u for u in us if u.module is us[0].module]
    x = capture(model, torch.randn(1, *shape), mine[:1]).inputs[mine[0].name][0].double()
    J, xk = None, x
    for u in mine:
        Jk = unit_jacobian(u, xk).dense()
        J = Jk if J is None else Jk @ J
        with torch.no_grad():  # the next step's input, in float64 as the operators work
            xk = copy_unit(u).forward(xk[None])[0]
    module = __import__("copy").deepcopy(us[0].module).double().eval()
    torch.testing.assert_close(J, _jac(module, x), rtol=1e-7, atol=1e-8)


def test_discovery_and_the_basicblock_adapter_agree():
    """torchvision's BasicBlock: the adapter's parts and the discovered ones, one Jacobian."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3).eval()
    found = discover(model, torch.randn(1, 3, 32, 32))
    block = model.layer2[0]  # a projection shortcut
    (disc,) = found.parts[block]
    known = torchvision_style_unit(block)
    assert disc.projection and known.projection
    x = torch.randn(1, 64, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(disc(x), known(x))
        torch.testing.assert_close(disc.shortcut(x), known.shortcut(x))
        torch.testing.assert_close(disc.residual(x), known.residual(x))


class Threaded(nn.Module):
    """x + W x, while another thread runs a module of another model during the forward."""

    def __init__(self, other):
        super().__init__()
        self.w, self.other = nn.Linear(4, 4), [other]  # a list: not a child module

    def forward(self, x):
        import threading

        t = threading.Thread(target=lambda: self.other[0](torch.randn(1, 4)))
        t.start()
        t.join()
        return x + torch.tanh(self.w(x))


def test_another_threads_modules_are_not_recorded():
    block = Threaded(nn.Linear(4, 4))
    (u,) = units(nn.Sequential(block), (4,))
    assert u.name == "0" and u.parts.family == "discovered"
