"""Adapters of causal decoder blocks (Hugging Face GPT-2, Llama-family, GPT-NeoX/Pythia).

A decoder block is residual steps on the stream x (T, d): x + Attn(LN₁ x), then x + MLP(LN₂ x)
(GPT-NeoX's parallel form adds both branches to the same x in one step). The model passes its
blocks what discovery from one tensor cannot see: the causal mask, and for rotary models the
rotary embeddings of positions 0..T-1. Each step here calls the block's own submodules with
those arguments rebuilt for the step's input (its length T, dtype and device), so a unit is the
model's true map (T, d) -> (T, d); :func:`resdyn.units` checks the replay against the block's
output inside the model's forward.

The mask is additive, 0 on and below the diagonal and the dtype's most negative number above
it, as transformers builds it for its eager attention: after the softmax those weights are
exactly 0, so the Jacobian is block lower-triangular in tokens with exact zeros above
(``UnitParts.causal``). A rotary model's rotary module is attached to each of its layers as
``resdyn_rotary`` by :class:`resdyn.models.language.CausalLM` (it has no weights; its buffers
move with the layer). No transformers import: the blocks are recognised by duck typing.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .parts import UnitParts


def causal_mask(x: Tensor) -> Tensor:
    """(1, 1, T, T) additive causal mask for a stream ``x`` (..., T, d), in x's dtype and device.

    Example:
        >>> causal_mask(torch.zeros(1, 3, 2))[0, 0]
        tensor([[ 0.0000e+00, -3.4028e+38, -3.4028e+38],
                [ 0.0000e+00,  0.0000e+00, -3.4028e+38],
                [ 0.0000e+00,  0.0000e+00,  0.0000e+00]])
    """
    t = x.shape[-2]
    full = torch.full((t, t), torch.finfo(x.dtype).min, dtype=x.dtype, device=x.device)
    return full.triu(1)[None, None]


def rotary(m: Any, x: Tensor) -> tuple[Tensor, Tensor]:
    """(cos, sin) of positions 0..T-1 from the rotary module attached to layer ``m``."""
    positions = torch.arange(x.shape[-2], device=x.device)[None]
    return m.resdyn_rotary(x, positions)


def gpt2_block(m: Any) -> tuple[UnitParts, ...] | None:
    """transformers' ``GPT2Block`` (self-attention only): x + Attn(LN₁ x), x + MLP(LN₂ x)."""
    if type(m).__name__ != "GPT2Block" or not all(
            hasattr(m, a) for a in ("ln_1", "attn", "ln_2", "mlp")) or hasattr(m, "crossattention"):
        return None

    def attention(x: Tensor) -> Tensor:
        return m.attn(m.ln_1(x), attention_mask=causal_mask(x))[0]

    def mlp(x: Tensor) -> Tensor:
        return m.mlp(m.ln_2(x))

    return (UnitParts(residual=attention, family="gpt2", step="attn", causal=True),
            UnitParts(residual=mlp, family="gpt2", step="mlp", causal=True))


#: Llama-layout layers with norms this adapter does not place (Gemma's four norms) are left to
#: discovery, whose replay check would refuse a wrong split anyway.
_OTHER_NORMS = ("pre_feedforward_layernorm", "post_feedforward_layernorm")


def llama_layer(m: Any) -> tuple[UnitParts, ...] | None:
    """Llama-family decoder layers (Llama, Qwen2, Mistral: RMSNorm, rotary embeddings):
    x + Attn(N₁ x; cos, sin), then x + MLP(N₂ x)."""
    if not type(m).__name__.endswith("DecoderLayer") or not all(
            hasattr(m, a) for a in ("self_attn", "mlp", "input_layernorm",
                                    "post_attention_layernorm", "resdyn_rotary")) or any(
            hasattr(m, a) for a in _OTHER_NORMS):
        return None

    def attention(x: Tensor) -> Tensor:
        return m.self_attn(hidden_states=m.input_layernorm(x), attention_mask=causal_mask(x),
                           position_embeddings=rotary(m, x))[0]

    def mlp(x: Tensor) -> Tensor:
        return m.mlp(m.post_attention_layernorm(x))

    return (UnitParts(residual=attention, family="llama", step="self_attn", causal=True),
            UnitParts(residual=mlp, family="llama", step="mlp", causal=True))


def neox_layer(m: Any) -> UnitParts | tuple[UnitParts, ...] | None:
    """GPT-NeoX / Pythia layers: with ``use_parallel_residual`` one step with two branches,
    x + Attn(LN₁ x) + MLP(LN₂ x); without it two steps, as in GPT-2."""
    if type(m).__name__ != "GPTNeoXLayer" or not all(
            hasattr(m, a) for a in ("attention", "mlp", "input_layernorm",
                                    "post_attention_layernorm", "use_parallel_residual",
                                    "resdyn_rotary")):
        return None

    def attention(x: Tensor) -> Tensor:
        return m.post_attention_dropout(m.attention(
            m.input_layernorm(x), attention_mask=causal_mask(x),
            position_embeddings=rotary(m, x))[0])

    def mlp(x: Tensor) -> Tensor:
        return m.post_mlp_dropout(m.mlp(m.post_attention_layernorm(x)))

    if m.use_parallel_residual:
        def both(x: Tensor) -> Tensor:
            return attention(x) + mlp(x)

        return UnitParts(residual=both, family="gpt-neox-parallel", causal=True)
    return (UnitParts(residual=attention, family="gpt-neox", step="attention", causal=True),
            UnitParts(residual=mlp, family="gpt-neox", step="mlp", causal=True))
