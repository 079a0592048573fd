"""Causal language models: each decoder step against its math written out by hand from the
weights (causal mask, rotary embeddings), in float64, on tiny models saved and reloaded from a
folder as transformers writes them."""

from __future__ import annotations

import math

import pytest
import torch

transformers = pytest.importorskip("transformers")

from resdyn import load_model, units  # noqa: E402
from resdyn.capture import capture  # noqa: E402
from resdyn.models.naming import UnknownModel  # noqa: E402
from resdyn.operators import unit_jacobian  # noqa: E402

T, D = 6, 16


def _saved(tmp_path, config, attn="eager"):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation=attn)
    with torch.no_grad():  # biases and norms away from their neutral init
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    folder = tmp_path / config.model_type
    model.save_pretrained(folder)
    return load_model(f"hf:{folder}")


def _gpt2():
    return transformers.GPT2Config(n_layer=2, n_embd=D, n_head=2, n_positions=16, vocab_size=40,
                                   bos_token_id=None, eos_token_id=None)


def _llama():
    return transformers.LlamaConfig(num_hidden_layers=2, hidden_size=D, num_attention_heads=4,
                                    num_key_value_heads=2, intermediate_size=24, vocab_size=40,
                                    max_position_embeddings=16)


def _neox(parallel=True):
    return transformers.GPTNeoXConfig(num_hidden_layers=2, hidden_size=D, num_attention_heads=2,
                                      intermediate_size=24, vocab_size=40,
                                      max_position_embeddings=16, rotary_pct=0.5,
                                      use_parallel_residual=parallel)


def _mask(t):
    return torch.ones(t, t, dtype=torch.bool).tril()


def _attend(q, k, v):
    """Causal softmax attention, heads first: (H, T, dh) each."""
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    s = s.masked_fill(~_mask(q.shape[1]), -math.inf)
    return torch.softmax(s, -1) @ v


def _heads(x, h):
    return x.reshape(x.shape[0], h, -1).transpose(0, 1)


def _merge(x):
    return x.transpose(0, 1).reshape(x.shape[1], -1)


def _layer_norm(ln, x):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), ln.weight.double(), ln.bias.double(),
                                          ln.eps)


def _rope(x, inv_freq, rot):
    """Rotary embedding of the first ``rot`` dims of each head, positions 0..T-1 (x: H, T, dh)."""
    pos = torch.arange(x.shape[1], dtype=torch.float64)
    ang = pos[:, None] * inv_freq.double()[None]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    r, rest = x[..., :rot], x[..., rot:]
    half = torch.cat([-r[..., rot // 2:], r[..., :rot // 2]], -1)
    return torch.cat([r * cos + half * sin, rest], -1)


def _gpt2_steps(block, h):
    a, m = block.attn, block.mlp

    def attn(x):
        qkv = _layer_norm(block.ln_1, x) @ a.c_attn.weight.double() + a.c_attn.bias.double()
        q, k, v = (_heads(t, h) for t in qkv.split(D, -1))
        return _merge(_attend(q, k, v)) @ a.c_proj.weight.double() + a.c_proj.bias.double()

    def mlp(x):
        z = _layer_norm(block.ln_2, x) @ m.c_fc.weight.double() + m.c_fc.bias.double()
        z = 0.5 * z * (1 + torch.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))
        return z @ m.c_proj.weight.double() + m.c_proj.bias.double()

    return attn, mlp


def _rms(norm, x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon) * \
        norm.weight.double()


def _llama_steps(layer, model):
    a, m, rope = layer.self_attn, layer.mlp, model.lm.model.rotary_emb
    h, kv = 4, 2

    def attn(x):
        z = _rms(layer.input_layernorm, x)
        q = _rope(_heads(z @ a.q_proj.weight.double().T, h), rope.inv_freq, D // h)
        k = _rope(_heads(z @ a.k_proj.weight.double().T, kv), rope.inv_freq, D // h)
        v = _heads(z @ a.v_proj.weight.double().T, kv)
        k, v = (t.repeat_interleave(h // kv, 0) for t in (k, v))
        return _merge(_attend(q, k, v)) @ a.o_proj.weight.double().T

    def mlp(x):
        z = _rms(layer.post_attention_layernorm, x)
        gate, up = z @ m.gate_proj.weight.double().T, z @ m.up_proj.weight.double().T
        return (torch.nn.functional.silu(gate) * up) @ m.down_proj.weight.double().T

    return attn, mlp


def _neox_branches(layer, model):
    a, m, rope = layer.attention, layer.mlp, model.lm.gpt_neox.rotary_emb
    h, dh = 2, D // 2

    def attn(x):
        qkv = _layer_norm(layer.input_layernorm, x) @ a.query_key_value.weight.double().T + \
            a.query_key_value.bias.double()
        q, k, v = qkv.reshape(x.shape[0], h, 3 * dh).transpose(0, 1).split(dh, -1)
        q, k = (_rope(t, rope.inv_freq, dh // 2) for t in (q, k))
        return _merge(_attend(q, k, v)) @ a.dense.weight.double().T + a.dense.bias.double()

    def mlp(x):
        z = _layer_norm(layer.post_attention_layernorm, x) @ m.dense_h_to_4h.weight.double().T + \
            m.dense_h_to_4h.bias.double()
        z = torch.nn.functional.gelu(z)
        return z @ m.dense_4h_to_h.weight.double().T + m.dense_4h_to_h.bias.double()

    return attn, mlp


def _reference(step, x):
    return torch.autograd.functional.jacobian(lambda v: v + step(v), x).reshape(T * D, T * D)


def _operators(model):
    us = units(model, (T, D))
    x = model.embed(torch.tensor([[3, 1, 4, 1, 5, 9]]))
    acts = capture(model, x, us)
    return us, {u.name: acts.inputs[u.name][0].double() for u in us}


def test_gpt2_steps_match_hand_written_math(tmp_path):
    model = _saved(tmp_path, _gpt2())
    us, inputs = _operators(model)
    assert [u.name for u in us] == ["lm.transformer.h.0.attn", "lm.transformer.h.0.mlp",
                                    "lm.transformer.h.1.attn", "lm.transformer.h.1.mlp"]
    assert all(u.in_shape == (T, D) and u.parts.causal for u in us)
    for i, block in enumerate(model.lm.transformer.h):
        for step, ref in zip(("attn", "mlp"), _gpt2_steps(block, 2), strict=True):
            name = f"lm.transformer.h.{i}.{step}"
            unit = next(u for u in us if u.name == name)
            dense = unit_jacobian(unit, inputs[name]).dense()
            torch.testing.assert_close(dense, _reference(ref, inputs[name]), rtol=1e-10,
                                       atol=1e-12)


def test_llama_layer_with_rotary_matches_hand_written_math(tmp_path):
    model = _saved(tmp_path, _llama())
    us, inputs = _operators(model)
    assert [u.name for u in us][:2] == ["lm.model.layers.0.self_attn", "lm.model.layers.0.mlp"]
    layer = model.lm.model.layers[1]
    for step, ref in zip(("self_attn", "mlp"), _llama_steps(layer, model), strict=True):
        name = f"lm.model.layers.1.{step}"
        unit = next(u for u in us if u.name == name)
        dense = unit_jacobian(unit, inputs[name]).dense()
        # transformers' Llama computes RMSNorm and the softmax in float32 inside a float64 model
        torch.testing.assert_close(dense, _reference(ref, inputs[name]), rtol=1e-5, atol=1e-6)


def test_neox_parallel_block_is_one_unit_with_two_branches(tmp_path):
    model = _saved(tmp_path, _neox(parallel=True))
    us, inputs = _operators(model)
    assert [u.name for u in us] == ["lm.gpt_neox.layers.0", "lm.gpt_neox.layers.1"]
    attn, mlp = _neox_branches(model.lm.gpt_neox.layers[0], model)
    x = inputs["lm.gpt_neox.layers.0"]
    dense = unit_jacobian(us[0], x).dense()
    torch.testing.assert_close(dense, _reference(lambda v: attn(v) + mlp(v), x), rtol=1e-5,
                               atol=1e-6)


def test_neox_sequential_block_is_two_units(tmp_path):
    model = _saved(tmp_path, _neox(parallel=False))
    assert [u.name for u in units(model, (T, D))][:2] == ["lm.gpt_neox.layers.0.attention",
                                                          "lm.gpt_neox.layers.0.mlp"]


def test_causal_blocks_above_the_diagonal_are_exactly_zero(tmp_path):
    model = _saved(tmp_path, _gpt2())
    us, inputs = _operators(model)
    blocks = unit_jacobian(us[0], inputs[us[0].name]).dense().reshape(T, D, T, D)
    for t in range(T):
        assert bool((blocks[t, :, t + 1:] == 0).all())
        assert bool((blocks[t, :, :t + 1] != 0).any())


def test_eager_and_sdpa_attention_give_the_same_jacobian(tmp_path):
    eager = _saved(tmp_path / "eager", _gpt2(), attn="eager")
    sdpa = _saved(tmp_path / "sdpa", _gpt2(), attn="sdpa")
    sdpa.lm.config._attn_implementation = "sdpa"  # as a user's model may run
    (ue, xe), (us_, xs) = _operators(eager), _operators(sdpa)
    # the float32 forward passes agree to rounding; the Jacobians are compared at one point
    torch.testing.assert_close(xe["lm.transformer.h.1.attn"], xs["lm.transformer.h.1.attn"])
    je = unit_jacobian(ue[2], xe[ue[2].name]).dense()
    js = unit_jacobian(us_[2], xe[ue[2].name]).dense()
    torch.testing.assert_close(je, js, rtol=1e-9, atol=1e-11)


def test_output_is_the_next_token_logits(tmp_path):
    model = _saved(tmp_path, _gpt2())
    tokens = torch.tensor([[3, 1, 4, 1, 5, 9]])
    e = model.embed(tokens)
    full = model.lm(input_ids=tokens).logits
    torch.testing.assert_close(model(e), full[:, -1])
    torch.testing.assert_close(model.logits(e), full)


def test_folders_that_are_not_causal_lms_are_one_line_errors(tmp_path):
    with pytest.raises(UnknownModel, match="no config.json"):
        load_model(f"hf:{tmp_path}")
    bert = transformers.BertConfig(num_hidden_layers=1, hidden_size=8, num_attention_heads=2,
                                   intermediate_size=8, vocab_size=20)
    transformers.BertModel(bert).save_pretrained(tmp_path / "bert")
    with pytest.raises(UnknownModel, match="BertModel, not a causal language model") as err:
        load_model(f"hf:{tmp_path / 'bert'}")
    assert "\n" not in str(err.value)
    with pytest.raises(UnknownModel, match="is not a folder"):
        load_model(f"hf:{tmp_path / 'missing'}")
