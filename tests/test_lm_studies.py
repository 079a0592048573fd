"""The shipped causal LM (its accuracy against the baselines it must beat), LM training, and the
studies on a language model: causal eigenvalues against the whole operator's, the stability and
stiffness studies end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from click.testing import CliRunner  # noqa: E402

from resdyn import load_model, units  # noqa: E402
from resdyn.capture import capture  # noqa: E402
from resdyn.cli import app  # noqa: E402
from resdyn.data import load_for, load_tokens  # noqa: E402
from resdyn.models import model_card, zoo_names  # noqa: E402
from resdyn.operators import causal_eigenvalues, unit_jacobian  # noqa: E402
from resdyn.studies import STABILITY, STIFFNESS, StabilityConfig, StiffnessConfig, run_study  # noqa: E402
from resdyn.train_lm import evaluate_lm, train_and_save_lm  # noqa: E402


def test_shipped_lm_learned_more_than_bigram_statistics():
    model = load_model("induction-gpt2")
    info = model_card(model).info
    ev = evaluate_lm(model, load_tokens("induction"))
    # the figures recorded at training are what evaluation of the shipped file gives
    assert ev.accuracy == info["test_accuracy"]
    assert ev.accuracy_in_context == info["test_accuracy_in_context"]
    assert ev.accuracy_all == info["test_accuracy_all"]
    # the copied positions: only attention across tokens predicts them
    assert info["baseline_bigram_in_context"] < 0.1 and info["baseline_unigram_in_context"] < 0.1
    assert ev.accuracy_in_context > 0.8 > 8 * info["baseline_bigram_in_context"]
    assert ev.accuracy_all > info["baseline_bigram_all"] + 0.1
    assert "induction-gpt2" in [name for name, _ in zoo_names()]


def test_evaluate_command_states_the_three_accuracies():
    result = CliRunner().invoke(app, ["evaluate", "--model", "induction-gpt2", "--data",
                                      "induction"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    ev = evaluate_lm(load_model("induction-gpt2"), load_tokens("induction"))
    assert f"{ev.accuracy:.4f} at the last position" in text
    assert f"{ev.accuracy_in_context:.4f} over the in-context positions" in text


def test_train_and_save_lm_records_what_the_saved_file_scores(tmp_path):
    out = tmp_path / "lm.safetensors"
    result = train_and_save_lm("gpt2(blocks=1,width=16,heads=2,mlp=32)", "induction", 1, out,
                               batch_size=256)
    model = load_model(str(out))
    info = model_card(model).info
    ev = evaluate_lm(model, load_tokens("induction"))
    assert info["test_accuracy"] == ev.accuracy == result.test_accuracy
    assert info["input_shape"] == [32, 16] and model_card(model).trained_shape == (32, 16)
    assert info["classes"] == 64 and model.vocab_size == 64


def test_causal_eigenvalues_of_lm_steps_equal_the_whole_operators():
    config = transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, n_positions=8, vocab_size=20,
                                     bos_token_id=None, eos_token_id=None)
    torch.manual_seed(0)
    from resdyn.models.language import CausalLM

    model = CausalLM(transformers.GPT2LMHeadModel(config))
    us = units(model, (4, 8))
    acts = capture(model, model.embed(torch.tensor([[1, 5, 2, 7]])), us)
    for u in us:
        op = unit_jacobian(u, acts.inputs[u.name][0])
        fast = causal_eigenvalues(op, 4)
        whole = np.linalg.eigvals(op.dense().numpy())
        key = lambda v: (round(v.real, 6), round(abs(v.imag), 6))  # noqa: E731
        np.testing.assert_allclose(sorted(fast, key=key), sorted(whole, key=key), rtol=1e-7,
                                   atol=1e-9)


@pytest.mark.slow
def test_stability_and_stiffness_studies_on_the_shipped_lm(tmp_path):
    model = load_model("induction-gpt2")
    data = load_for(model, "induction")
    assert data.input_shape == (32, 64) and data.bounds is None
    stab = run_study(STABILITY, model, data, StabilityConfig(images=2, k=4, pgd_steps=1,
                                                              alphas=(0.0, 1.0), ts=(0.0, 1.0)),
                     tmp_path / "stability")
    assert not stab.failed
    adv = stab.tables["propagation"]
    assert set(adv["perturbation"]) >= {"fgsm", "random-fgsm"}
    # embeddings are unbounded: FGSM moves every coordinate by exactly ε, ℓ2 = ε·sqrt(T·d)
    fgsm = adv[adv["perturbation"] == "fgsm"]["delta_l2"]
    np.testing.assert_allclose(fgsm, 0.1 * np.sqrt(32 * 64), rtol=1e-5)
    stiff = run_study(STIFFNESS, model, data, StiffnessConfig(images=2), tmp_path / "stiffness")
    rows = stiff.tables["stiffness"]
    assert set(rows["method"]) == {"causal-blocks"}
    assert (rows["n"] == 32 * 64).all()
