"""Block coupling m_K (Aubry et al. 2025) against known answers: 0 for a Jacobian against itself
(whatever the signs of its singular vectors), the random level for independent Gaussian
Jacobians, per-token Jacobians equal to slices of the dense autograd Jacobian of a GPT-2 block
written out by hand, and the matrix-free path equal to the dense one; the coupling task on every
model kind (ResNet, ViT, shipped LM, a Hugging Face folder)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from resdyn import capture, load_model, units
from resdyn.dynamics.coupling import (
    blocks,
    coupling,
    frames,
    line_shape,
    project,
    random_level,
    read_rows,
    token_jacobian,
)
from resdyn.runs.modelref import local_ref
from resdyn.spectra.triplets import singular_triplets
from resdyn.tasks.coupling import coupling_task


def _gaussian(d, seed):
    return torch.randn(d, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _m(j1, j2, ks, orientation="ujv"):
    t1, t2 = singular_triplets(j1, max(ks)), singular_triplets(j2, max(ks))
    return coupling(project(j1, *frames(t2, orientation)), t1.sigma, ks)


def test_identical_jacobians_are_coupled_exactly():
    j = _gaussian(40, 0)
    got = _m(j, j, (1, 10, 30))
    assert set(got) == {1, 10, 30}
    assert max(got.values()) < 1e-12
    # a non-square J (a down-sampling unit's) too; "vju" needs a square one
    a = torch.randn(30, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert max(_m(a, a, (5, 10)).values()) < 1e-12
    with pytest.raises(ValueError, match="square"):
        frames(singular_triplets(a, 5), "vju")


def test_sign_flipped_singular_vectors_still_give_zero():
    j = _gaussian(30, 2)
    t = singular_triplets(j, 10)
    flip = np.where(np.arange(10) % 3 == 0, -1.0, 1.0)  # u_i → −u_i for i = 0, 3, 6, 9
    m = project(j, t.left * flip, t.right)
    np.testing.assert_allclose(np.diag(m), flip * t.sigma, rtol=1e-12)  # the signs are there
    assert max(coupling(m, t.sigma, (5, 10)).values()) < 1e-12  # and |·| removes them
    # for a symmetric J, U = V up to signs: "vju" is coupled to itself too
    s = j + j.T
    assert max(_m(s, s, (5, 10), "vju").values()) < 1e-12


def test_independent_gaussian_jacobians_sit_at_the_random_level():
    d, k, n = 48, 10, 40
    pairs, levels = [], []
    for i in range(n):
        j1, j2 = _gaussian(d, 100 + 2 * i), _gaussian(d, 101 + 2 * i)
        pairs.append(_m(j1, j2, (k,))[k])
        levels.append(random_level(j1, singular_triplets(j1, k).sigma, (k,), draws=1,
                                   seed=i)[k])
    pairs, levels = np.array(pairs), np.array(levels)
    # a Gaussian J₂'s singular vectors are Haar frames independent of J₁: the same law
    se = math.sqrt(pairs.var(ddof=1) / n + levels.var(ddof=1) / n)
    assert abs(pairs.mean() - levels.mean()) < 4 * se, (pairs.mean(), levels.mean(), se)
    # and both near 1: |U₂ᵀJ₁V₂| is small against S₁ (entries ~ ‖J₁‖_F/d)
    assert 0.9 < levels.mean() < 1.1
    # while a J₂ sharing J₁'s singular vectors (other singular values) is coupled
    t1 = singular_triplets(_gaussian(d, 7), k)
    u, s, vh = torch.linalg.svd(_gaussian(d, 7))
    j2 = u @ torch.diag(s.flip(0)) @ vh  # same vectors, σ reversed: the top k move to the tail
    assert _m(_gaussian(d, 7), j2, (k,))[k] > 0.5  # (the top-k of J₂ are J₁'s bottom vectors)
    assert coupling(project(_gaussian(d, 7), t1.left, t1.right), t1.sigma, (k,))[k] < 1e-12


# ---------------------------------------------------------------- a GPT-2 block by hand

T, D = 5, 8


def _tiny_gpt2():
    transformers = pytest.importorskip("transformers")
    from resdyn.models.language import CausalLM

    config = transformers.GPT2Config(n_layer=2, n_embd=D, n_head=2, n_positions=8,
                                     vocab_size=20, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(0)
    model = CausalLM(transformers.GPT2LMHeadModel(config))
    with torch.no_grad():  # biases and norms away from their neutral init
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _ln(ln, x):
    return torch.nn.functional.layer_norm(x, (D,), ln.weight.double(), ln.bias.double(), ln.eps)


def _block_by_hand(block, x):
    """x + Attn(LN₁ x), then + MLP(LN₂ ·), GPT-2's math in float64; returns f = F − id."""
    a, m, h = block.attn, block.mlp, 2
    qkv = _ln(block.ln_1, x) @ a.c_attn.weight.double() + a.c_attn.bias.double()
    q, k, v = (t.reshape(T, h, -1).transpose(0, 1) for t in qkv.split(D, -1))
    s = (q @ k.transpose(-1, -2) / math.sqrt(D // h)).masked_fill(
        ~torch.ones(T, T, dtype=torch.bool).tril(), -math.inf)
    att = (torch.softmax(s, -1) @ v).transpose(0, 1).reshape(T, D)
    y = x + att @ a.c_proj.weight.double() + a.c_proj.bias.double()
    z = _ln(block.ln_2, y) @ m.c_fc.weight.double() + m.c_fc.bias.double()
    z = 0.5 * z * (1 + torch.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))
    return y + z @ m.c_proj.weight.double() + m.c_proj.bias.double() - x


def test_per_token_jacobians_are_slices_of_the_dense_autograd_jacobian_of_a_gpt2_block():
    model = _tiny_gpt2()
    us = units(model, (T, D))
    bl = blocks(us)
    assert [(b.name, b.kind, b.tokens, b.read) for b in bl] == [
        ("lm.transformer.h.0", "transformer block", T, T - 1),
        ("lm.transformer.h.1", "transformer block", T, T - 1)]
    acts = capture(model, model.embed(torch.tensor([[3, 1, 4, 1, 5]])), us)
    for b, layer in zip(bl, model.lm.transformer.h, strict=True):
        x = acts.inputs[b.units[0].name][0].double().detach()
        f = b.residual()
        # the block replayed is the block by hand, and the model's own block
        with torch.no_grad():
            np.testing.assert_allclose(f(x[None])[0], _block_by_hand(layer, x), atol=1e-12)
            np.testing.assert_allclose(x + f(x[None])[0], acts.outputs[b.units[-1].name][0],
                                       atol=1e-5)
        full = torch.autograd.functional.jacobian(
            lambda v, layer=layer: _block_by_hand(layer, v), x).detach()
        rows = read_rows(f, b, x, T - 1)  # every J_{t, T−1} by VJPs
        for t_in in range(T):
            np.testing.assert_allclose(rows[t_in], full[T - 1, :, t_in, :], atol=1e-12)
            for t_out in (t_in, T - 1):
                op = token_jacobian(f, b, x, t_in, t_out)
                assert op.shape == (D, D)
                np.testing.assert_allclose(op.dense(), full[t_out, :, t_in, :], atol=1e-12)
        # causal: the last input token does not reach an earlier output token
        assert torch.equal(token_jacobian(f, b, x, T - 1, 0).dense(), torch.zeros(D, D,
                                                                                  dtype=torch.float64))


@pytest.mark.parametrize("method", ["block", "arpack"])
def test_matrix_free_coupling_equals_dense(method):
    transformers = pytest.importorskip("transformers")
    from resdyn.models.language import CausalLM

    d, t, ks = 32, 6, (3, 6)
    config = transformers.GPT2Config(n_layer=2, n_embd=d, n_head=2, n_positions=8,
                                     vocab_size=20, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(1)
    model = CausalLM(transformers.GPT2LMHeadModel(config)).eval()
    us = units(model, (t, d))
    acts = capture(model, model.embed(torch.tensor([[2, 7, 1, 8, 2, 8]])), us)
    found = []
    for b in blocks(us):
        x, f = acts.inputs[b.units[0].name][0], b.residual()
        op = token_jacobian(f, b, x, t - 1, t - 1)
        dense = read_rows(f, b, x, t - 1)[t - 1]
        found.append((op, dense, singular_triplets(op, 6, method=method, seed=3),
                      singular_triplets(dense, 6)))
    (op1, j1, free1, dense1), (_, _, free2, dense2) = found
    assert free1.method == method and dense1.method == "dense"
    np.testing.assert_allclose(free1.sigma, dense1.sigma, rtol=1e-8)
    for orientation in ("ujv", "vju"):
        matrix_free = coupling(project(op1, *frames(free2, orientation)), free1.sigma, ks)
        dense = coupling(project(j1, *frames(dense2, orientation)), dense1.sigma, ks)
        assert set(matrix_free) == set(ks)
        for k in ks:
            assert matrix_free[k] == pytest.approx(dense[k], rel=1e-7, abs=1e-9)


def test_line_shape_is_one_over_straightness():
    from resdyn.dynamics import straightness

    pts = [torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor([1.0, 2.0])]
    assert line_shape(pts) == pytest.approx(1 / straightness(pts)["straightness"])
    assert line_shape([torch.zeros(3), torch.ones(3), 2 * torch.ones(3)]) == pytest.approx(1.0)


# ---------------------------------------------------------------- the task on every model kind


def _task(model, data, dense_max=4096, i=0):
    return coupling_task(local_ref(model), data.input_shape, data.x[i], image=i,
                         label=int(data.y[i]), dense_max=dense_max)


def _depth(rows):
    p = rows[rows["record"] == "pair"]
    return p[p["across"] == "depth"]


def test_coupling_task_on_a_resnet_compares_units_of_one_width():
    from resdyn import load_data
    from resdyn.operators import residual_jacobian

    model, data = load_model("digits-resnet20"), load_data("digits")
    rows = _task(model, data)
    bl = rows[rows["record"] == "block"]
    # the down-sampling units (stages.1.0, stages.2.0) have no partner of their shape
    assert bl["block"].tolist() == ["stages.0.0", "stages.0.1", "stages.0.2", "stages.1.1",
                                    "stages.1.2", "stages.2.1", "stages.2.2"]
    depth = _depth(rows)
    assert set(zip(depth["block_1"], depth["block_2"], strict=True)) >= {
        ("stages.0.0", "stages.0.2"), ("stages.1.2", "stages.1.1")}
    assert not ((depth["block_1"] == "stages.0.0") & (depth["block_2"] == "stages.1.1")).any()
    assert (rows[rows["record"] == "pair"]["across"] == "depth").all()  # one "token": the map
    # a row against m_K recomputed from the residual Jacobians held out of the task
    us = {u.name: u for u in units(model)}
    acts = capture(model, data.x[:1], list(us.values()))
    j1, j2 = (residual_jacobian(us[n], acts.inputs[n][0]).dense() for n in ("stages.1.1",
                                                                            "stages.1.2"))
    want = _m(j1, j2, (10, 30, 50))
    got = depth[(depth["block_1"] == "stages.1.1") & (depth["block_2"] == "stages.1.2")
                & (depth["orientation"] == "ujv")].set_index("K")["m"]
    for k in (10, 30, 50):
        assert got[k] == pytest.approx(want[k], rel=1e-9)
    same = depth[(depth["l1"] == depth["l2"]) & (depth["orientation"] == "ujv")]
    assert same["m"].max() < 1e-10
    assert depth["random"].between(0.8, 1.3).all()


def test_coupling_task_on_the_vit_and_the_shipped_lm_reads_the_class_and_last_token():
    from resdyn import load_data
    from resdyn.data import load_for

    vit = load_model("digits-vit")
    rows = _task(vit, load_data("digits"))
    bl = rows[rows["record"] == "block"]
    assert (bl["read"] == 0).all() and (bl["tokens"] == 17).all() and len(bl) == 4
    tok = rows[(rows["record"] == "pair") & (rows["across"] == "tokens")]
    # per block, every other token both ways, 3 K, 2 orientations
    assert len(tok) == 4 * 16 * 2 * 3 * 2
    assert len(_depth(rows)) == 16 * 3 * 2
    assert len(rows[rows["record"] == "line"]) == 17
    lm = load_model("induction-gpt2")
    rows = _task(lm, load_for(lm, "induction"))
    bl = rows[rows["record"] == "block"]
    assert (bl["read"] == 31).all() and bl["method"].eq("dense").all()
    ln = rows[rows["record"] == "line"]
    assert (ln["lss"] >= 1).all() and (ln["steps"] == 2).all()


def test_coupling_task_on_a_hugging_face_folder_matrix_free_equals_dense(tmp_path):
    transformers = pytest.importorskip("transformers")
    from resdyn.data import load_for

    config = transformers.GPT2Config(n_layer=3, n_embd=16, n_head=2, n_positions=16,
                                     vocab_size=40, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")
    model = load_model(f"hf:{tmp_path / 'gpt2'}")
    tokens = np.random.default_rng(0).integers(0, 40, (3, 7))  # T = 6 tokens and a label
    np.savez(tmp_path / "tokens.npz", tokens=tokens)
    data = load_for(model, tmp_path / "tokens.npz")
    assert data.input_shape == (6, 16)
    dense, free = _task(model, data), _task(model, data, dense_max=8)
    assert set(dense[dense["record"] == "block"]["method"]) == {"dense"}
    assert set(free[free["record"] == "block"]["method"]) == {"block"}
    assert free[free["record"] == "block"]["converged"].all()
    keys = ["across", "l1", "l2", "token_in_1", "token_in_2", "orientation", "K"]
    pairs = [r[r["record"] == "pair"].set_index(keys)["m"] for r in (dense, free)]
    # 3 x 3 block pairs and 3 blocks x 5 other tokens x 2 ways; K = 10 only (d = 16); 2 ways
    assert len(pairs[0]) == (3 * 3 + 3 * 5 * 2) * 1 * 2
    np.testing.assert_allclose(pairs[1].loc[pairs[0].index], pairs[0], rtol=1e-6, atol=1e-9)
