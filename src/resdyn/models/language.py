"""Causal language models as resdyn sees a network: the state is the residual stream.

:class:`CausalLM` wraps a Hugging Face transformers causal LM. Its input is the residual stream
after the token embeddings, e (B, T, d) (``model.embed(tokens)``), so every perturbation, attack
and Jacobian lives in embedding space; GPT-2 adds its learned position embeddings to e inside
(a translation: the Jacobians with respect to e and to e + position embeddings are the same). Its
output is the logits of the next token after the context, (B, V): resdyn reads a causal LM as a
classifier of the token that follows T tokens, so losses, attacks, flips and accuracies apply as
they do to an image classifier. :meth:`CausalLM.logits` gives every position's logits (training,
per-token accuracy).

The attention runs in transformers' eager implementation: plain matrix products and a softmax,
which torch.func's forward-mode AD and vmap transform in float64 on any device (the fused SDPA
kernels give the same Jacobian where they run; the tests compare the two).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .naming import RANDOM, UnknownModel

#: The default sequence length of a loaded LM's natural input shape (T, d), capped by its context.
DEFAULT_TOKENS = 64


class CausalLM(nn.Module):
    """A Hugging Face causal LM as a map from the embedded context to next-token logits.

    Attributes:
        lm: the transformers model (``AutoModelForCausalLM``), eager attention.
        vocab_size: V, the number of logits.
        width: d, the residual stream's width.
        context: the longest context the model takes (its position embeddings' length).

    Example:
        >>> import torch, transformers
        >>> config = transformers.GPT2Config(n_layer=2, n_embd=16, n_head=2, n_positions=8,
        ...                                  vocab_size=11)
        >>> lm = CausalLM(transformers.GPT2LMHeadModel(config))
        >>> e = lm.embed(torch.tensor([[1, 2, 3]]))
        >>> e.shape, lm(e).shape, lm.logits(e).shape
        (torch.Size([1, 3, 16]), torch.Size([1, 11]), torch.Size([1, 3, 11]))
    """

    def __init__(self, lm: Any):
        super().__init__()
        config = lm.config
        config._attn_implementation = "eager"
        self.lm = lm.eval()
        self.vocab_size = int(config.vocab_size)
        self.width = int(config.hidden_size)
        self.context = int(getattr(config, "n_positions", None)
                           or getattr(config, "max_position_embeddings", None) or 2048)
        rope = next((m for n, m in lm.named_modules() if n.endswith("rotary_emb")), None)
        if rope is not None:  # the decoder adapters rebuild (cos, sin) from each layer
            for layer in _layers(lm):
                layer.resdyn_rotary = rope

    @property
    def config(self) -> Any:
        """The transformers config of the wrapped model."""
        return self.lm.config

    def embed(self, tokens: Tensor) -> Tensor:
        """Token ids (B, T) -> the embedded context (B, T, d), the model's input."""
        embedding: Any = self.lm.get_input_embeddings()
        return embedding(tokens)

    def logits(self, e: Tensor) -> Tensor:
        """Every position's next-token logits (B, T, V) of the embedded context ``e``."""
        return self.lm(inputs_embeds=e, use_cache=False).logits

    def forward(self, e: Tensor) -> Tensor:
        """The next token's logits (B, V) after the embedded context ``e`` (B, T, d)."""
        if e.dim() != 3 or e.shape[-1] != self.width or not e.is_floating_point():
            raise ValueError(f"{type(self.lm).__name__} takes the embedded context (B, T, "
                             f"{self.width}) float (model.embed(tokens)); got shape "
                             f"{tuple(e.shape)} {e.dtype}")
        if e.shape[1] > self.context:
            raise ValueError(f"{type(self.lm).__name__} takes at most {self.context} tokens; "
                             f"got a context of {e.shape[1]}")
        return self.lm(inputs_embeds=e, use_cache=False, logits_to_keep=1).logits[:, -1]


def _layers(lm: nn.Module) -> list[nn.Module]:
    """The decoder layers: the modules of the first ModuleList whose items hold an attention."""
    for m in lm.modules():
        if isinstance(m, nn.ModuleList) and len(m) and any(
                "attn" in n or "attention" in n for n, _ in m[0].named_children()):
            return list(m)
    return []


def hf_folder_error(folder: Path) -> str | None:
    """Why ``folder`` is not a transformers causal LM saved by ``save_pretrained``, or None."""
    if not folder.is_dir():
        return f"{folder} is not a folder"
    if not (folder / "config.json").is_file():
        return (f"{folder} holds no config.json, so it is not a model saved by transformers' "
                "save_pretrained")
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (ValueError, OSError, KeyError, json.JSONDecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"{folder}/config.json is not a transformers config it can read ({first})"
    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    names = list(getattr(config, "architectures", None) or [])
    if (names and not any(n in causal for n in names)) or (
            not names and config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
        kind = ", ".join(names) or config.model_type
        return (f"{folder} holds a {kind}, not a causal language model (resdyn analyses "
                "decoder-only LMs such as GPT-2, Llama, Qwen2, Mistral, GPT-NeoX/Pythia)")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        return f"{folder} holds a config but no weights (*.safetensors)"
    return None


def load_hf(folder: str | Path, weights: str | None = None) -> CausalLM:
    """A causal LM from a folder written by transformers' ``save_pretrained``, offline.

    Raises:
        UnknownModel: the folder is missing, not a transformers model, or not a causal LM.
    """
    path = Path(folder).expanduser()
    why = hf_folder_error(path) if weights != RANDOM or not path.is_dir() else None
    if why is not None:
        raise UnknownModel(f"hf:{folder}: {why}")
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()  # one line per model load on a terminal says nothing here
    if weights == RANDOM:  # the architecture of the folder, initialised with seed 0
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            lm = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    else:
        lm = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True,
                                                  attn_implementation="eager",
                                                  dtype=torch.float32)
    return CausalLM(lm.float())


def gpt2_config(options: dict[str, int]) -> Any:
    """A GPT-2 config from resdyn's ``gpt2(...)`` options (blocks, width, heads, mlp, context,
    vocab): no dropout, so that training and analysis see one function."""
    from transformers import GPT2Config

    return GPT2Config(n_layer=options["blocks"], n_embd=options["width"],
                      n_head=options["heads"], n_inner=options["mlp"],
                      n_positions=options["context"], vocab_size=options["vocab"],
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                      bos_token_id=None, eos_token_id=None)


def from_config(config: dict[str, Any]) -> CausalLM:
    """A causal LM with random weights from a transformers config dict (``config.to_dict()``)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    conf = dict(config)
    kind = conf.pop("model_type")
    built = AutoConfig.for_model(kind, **conf)
    return CausalLM(AutoModelForCausalLM.from_config(built, attn_implementation="eager"))


def config_dict(model: CausalLM) -> dict[str, Any]:
    """The wrapped model's config as a JSON-able dict that :func:`from_config` rebuilds."""
    return {k: v for k, v in model.config.to_dict().items()
            if k not in ("_attn_implementation_autoset", "transformers_version", "dtype",
                         "torch_dtype", "architectures", "_name_or_path")}
