"""Transformer blocks as residual units: torchvision's ViT, timm's ViT and blocks declared by
their parts, each sub-layer's Jacobian against the autograd Jacobian of the sub-layer written out
by hand, spectra against LAPACK, skip scaling, capture and weight interpolation."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from resdyn import capture, declare_unit, units
from resdyn.check import check_model
from resdyn.models import UnitParts, stage_name, stages
from resdyn.models.adapters import DECLARED
from resdyn.models.interventions import interpolate_weights
from resdyn.models.surgery import copy_unit
from resdyn.operators import residual_jacobian, stage_jacobian, unit_jacobian
from resdyn.spectra import eigenvalues, singular_values

F64 = torch.float64


def tiny_vit(seed: int = 0) -> VisionTransformer:
    """torchvision's ViT on 3x8x8 images: 2x2 patches (16 tokens + class token), width 16."""
    torch.manual_seed(seed)
    net = VisionTransformer(image_size=8, patch_size=2, num_layers=2, num_heads=2, hidden_dim=16,
                            mlp_dim=32, num_classes=10).eval()
    with torch.no_grad():  # torchvision zero-initialises the head and small positions: perturb
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


def image(seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def by_hand(block: nn.Module, step: str):
    """The sub-layer x + attn(ln₁(x)) or x + mlp(ln₂(x)) of a torchvision EncoderBlock."""
    if step == "self_attention":
        def f(x):
            y = block.ln_1(x)
            return x + block.self_attention(y, y, y, need_weights=False)[0]
    else:
        def f(x):
            return x + block.mlp(block.ln_2(x))
    return f


def test_torchvision_vit_has_two_units_per_block_in_one_stage():
    net = tiny_vit()
    us = units(net)  # the input shape from the ViT's image_size and its patch convolution
    assert [u.name for u in us] == [f"encoder.layers.encoder_layer_{i}.{s}"
                                    for i in range(2) for s in ("self_attention", "mlp")]
    assert {u.in_shape for u in us} == {u.out_shape for u in us} == {(17, 16)}
    assert [u.position for u in us] == [0, 1, 2, 3] and {u.stage for u in us} == {0}
    assert [stage_name(s) for s in stages(us)] == ["encoder.layers"]
    assert {u.kind for u in us} == {"regular"} and {u.parts.family for u in us} == {"vit-torchvision"}
    assert [u.step for u in us] == [0, 1, 0, 1]
    for u in us:  # every step name is a module path: what interpolation and the CLI use
        net.get_submodule(u.name)


def test_capture_replays_the_steps_of_a_block():
    net = tiny_vit()
    us = units(net)
    acts = capture(net, image(), us)
    for a, b in zip(us, us[1:], strict=False):
        assert torch.equal(acts.outputs[a.name], acts.inputs[b.name])
    block = net.get_submodule("encoder.layers.encoder_layer_1")
    with torch.no_grad():
        own = block(acts.inputs[us[2].name])
    torch.testing.assert_close(acts.outputs[us[3].name], own, rtol=1e-5, atol=1e-6)


def test_each_sub_layer_jacobian_matches_autograd_of_the_sub_layer_by_hand():
    net = tiny_vit()
    us = units(net)
    acts = capture(net, image(), us)
    ref_net = net.double()
    for u in us:
        x = acts.inputs[u.name][0].double()
        f = by_hand(ref_net.get_submodule(u.path), u.name.rsplit(".", 1)[1])
        dense = torch.autograd.functional.jacobian(
            lambda v, f=f, x=x: f(v.reshape(1, *x.shape)).reshape(-1), x.reshape(-1))
        op = unit_jacobian(u, x)
        assert op.shape == (272, 272)
        assert torch.allclose(op.dense(), dense, rtol=0, atol=1e-12)
        # J_R = J − I for an identity shortcut
        assert torch.allclose(residual_jacobian(u, x).dense(), dense - torch.eye(272, dtype=F64),
                              rtol=0, atol=1e-12)


def test_spectra_of_a_sub_layer_match_lapack():
    net = tiny_vit()
    us = units(net)
    x = capture(net, image(), us).inputs[us[1].name][0]
    op = unit_jacobian(us[1], x)
    dense = op.dense()
    sv = singular_values(op)
    torch.testing.assert_close(torch.as_tensor(sv.values), torch.linalg.svdvals(dense),
                               rtol=0, atol=1e-10)
    top = singular_values(op, k=5, method="arpack")
    torch.testing.assert_close(torch.as_tensor(top.values), torch.linalg.svdvals(dense)[:5],
                               rtol=0, atol=1e-10)
    lam = eigenvalues(op)
    ref = torch.linalg.eigvals(dense)
    ref = ref[torch.argsort(-ref.real)]
    assert sorted(lam.values.real, reverse=True) == pytest.approx(ref.real.tolist(), abs=1e-10)
    assert lam.structural_zeros == 0  # no ReLU after the sum: no rows known to be zero


def test_skip_scaling_a_zeroed_branch_gives_exactly_alpha():
    net = tiny_vit()
    mlp = net.get_submodule("encoder.layers.encoder_layer_0.mlp")
    with torch.no_grad():
        mlp[-2].weight.zero_()  # MLPBlock: linear, GELU, dropout, linear, dropout
        mlp[-2].bias.zero_()
    us = units(net)
    u = next(u for u in us if u.name.endswith("encoder_layer_0.mlp"))
    x = capture(net, image(), us).inputs[u.name][0]
    for alpha in (1.0, 0.5, 2.0):
        op = unit_jacobian(u, x, alpha=alpha)
        assert torch.equal(torch.as_tensor(singular_values(op).values),
                           torch.full((272,), alpha, dtype=F64))
        assert set(eigenvalues(op).values.tolist()) == {complex(alpha)}


def test_stage_of_a_vit_is_the_product_of_its_sub_layers():
    net = tiny_vit()
    us = units(net)
    acts = capture(net, image(), us)
    stage = stages(us)[0]
    op = stage_jacobian(stage, acts.inputs[stage[0].name][0])
    product, x = torch.eye(272, dtype=F64), acts.inputs[stage[0].name][:1].double()
    for u in stage:  # each factor at its own input, the chain computed in float64
        product = unit_jacobian(u, x).dense() @ product
        with torch.no_grad():
            x = copy_unit(u).forward(x)
    assert torch.allclose(op.dense(), product, rtol=0, atol=1e-11)


def test_resdyn_check_passes_through_attention():
    df = check_model(tiny_vit(), (3, 8, 8))
    assert len(df) == 5 and bool(df.passed.all())  # 4 sub-layers and the encoder stage


def test_interpolating_a_sub_layer_moves_its_attention_weights_only():
    net = tiny_vit()
    name = "encoder.layers.encoder_layer_0.self_attention"
    new = interpolate_weights(net, [name], 0.0, seed=0)
    a, b = net.get_submodule(name), new.get_submodule(name)
    for w0, w1 in ((a.in_proj_weight, b.in_proj_weight), (a.out_proj.weight, b.out_proj.weight)):
        assert not torch.equal(w0, w1)
        assert float(w1.detach().norm()) == pytest.approx(float(w0.detach().norm()), rel=1e-5)
    same = ("encoder.layers.encoder_layer_0.mlp", "encoder.layers.encoder_layer_0.ln_1")
    for other in same:
        for p0, p1 in zip(net.get_submodule(other).parameters(),
                          new.get_submodule(other).parameters(), strict=True):
            assert torch.equal(p0, p1)


class PostLN(nn.Module):
    """x -> LN(x + W₂ tanh(W₁ x)): a post-LN block, σ = LN."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(d, 2 * d), nn.Tanh(), nn.Linear(2 * d, d))
        self.ln = nn.LayerNorm(d)

    def forward(self, x):
        return self.ln(x + self.f(x))


@pytest.fixture
def declared():
    yield declare_unit
    DECLARED.pop(PostLN, None)


def test_a_declared_post_ln_block_is_a_unit_with_layernorm_as_activation(declared):
    declared(PostLN, lambda m: UnitParts(residual=m.f, activation=m.ln))
    torch.manual_seed(0)
    net = nn.Sequential(PostLN(), PostLN()).eval()
    us = units(net, (5, 6))
    assert [u.name for u in us] == ["0", "1"] and us[0].in_shape == (5, 6)
    x = torch.randn(5, 6, dtype=F64)
    ref = net.double()[1]
    dense = torch.autograd.functional.jacobian(lambda v: ref(v.reshape(5, 6)).reshape(-1),
                                               x.reshape(-1))
    assert torch.allclose(unit_jacobian(us[1], x).dense(), dense, rtol=0, atol=1e-12)
    assert torch.allclose(unit_jacobian(us[1], x, alpha=0.5).dense(),
                          torch.autograd.functional.jacobian(
                              lambda v: ref.ln(0.5 * v + ref.f(v)).reshape(-1), x).reshape(30, 30),
                          rtol=0, atol=1e-12)


def test_a_wrong_declaration_is_refused_with_the_difference(declared):
    declared(PostLN, lambda m: UnitParts(residual=m.f))  # forgot the LayerNorm
    with pytest.raises(ValueError, match=r"parts of unit '0' \(PostLN\) do not reproduce"):
        units(nn.Sequential(PostLN()), (5, 6))
    declared(PostLN, lambda m: (UnitParts(residual=m.f), UnitParts(residual=m.f)))  # unnamed
    with pytest.raises(ValueError, match="distinct step names"):
        units(nn.Sequential(PostLN()), (5, 6))


def test_timm_vit_blocks_are_two_units_each():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = timm.models.vision_transformer.VisionTransformer(
        img_size=8, patch_size=2, in_chans=1, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2,
        num_classes=10, init_values=0.5).eval()  # init_values: LayerScale in the branches
    us = units(net, (1, 8, 8))
    assert [u.name for u in us] == [f"blocks.{i}.{s}" for i in range(2) for s in ("attn", "mlp")]
    assert {u.in_shape for u in us} == {(17, 16)} and {u.parts.family for u in us} == {"vit-timm"}
    acts = capture(net, torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(1)), us)
    ref = net.double()
    for u in us:
        b, x = ref.get_submodule(u.path), acts.inputs[u.name][0].double()
        if u.name.endswith("attn"):
            def f(v, b=b):
                return v + b.ls1(b.attn(b.norm1(v)))
        else:
            def f(v, b=b):
                return v + b.ls2(b.mlp(b.norm2(v)))
        dense = torch.autograd.functional.jacobian(lambda v, f=f: f(v.reshape(1, 17, 16)).reshape(-1),
                                                   x.reshape(-1))
        assert torch.allclose(unit_jacobian(u, x).dense(), dense, rtol=0, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="no CUDA device here (benchmarks/gpu_check.sh runs it on a GPU machine)")
def test_sub_layer_jacobians_on_cuda_equal_the_cpus():
    net = tiny_vit()
    us = units(net)
    acts = capture(net, image(), us)
    gpu = copy.deepcopy(net).to("cuda")
    for u, g in zip(us, units(gpu), strict=True):
        x = acts.inputs[u.name][0]
        cpu_j, gpu_j = unit_jacobian(u, x), unit_jacobian(g, x.to("cuda"))
        assert gpu_j.device.type == "cuda"
        assert torch.allclose(gpu_j.dense().cpu(), cpu_j.dense(), rtol=0, atol=1e-10)
