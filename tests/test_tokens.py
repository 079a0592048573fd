"""Token data for causal LMs: the induction language, baselines, loaders, embedded data sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from resdyn.data import (
    DataError,
    Dataset,
    TokenData,
    UnknownData,
    baselines,
    check_compatible,
    embedded,
    load_data,
    load_images,
    load_tokens,
    token_accuracy,
    token_names,
)
from resdyn.data.specs import _check_trained_shape
from resdyn.data.tokens import induction
from resdyn.runs.identity import data_digest


@pytest.fixture(scope="module")
def train():
    return induction("train")


@pytest.fixture(scope="module")
def test():
    return induction("test")


class TinyLM(nn.Module):
    """Stand-in for a causal LM wrapper: embed (B, T) -> (B, T, d), forward -> last logits."""

    def __init__(self, vocab_size: int = 64, context: int = 32, d: int = 5):
        super().__init__()
        self.vocab_size, self.context = vocab_size, context
        self.emb = nn.Embedding(vocab_size, d)
        self.head = nn.Linear(d, vocab_size)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.emb(tokens)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.head(e[:, -1])


# --- the induction language -----------------------------------------------------------------

def test_induction_is_deterministic_and_splits_differ(train, test):
    again = induction("test")
    assert torch.equal(again.tokens, test.tokens) and torch.equal(again.in_context, test.in_context)
    assert not torch.equal(induction("test", seed=1).tokens, test.tokens)
    assert train.tokens.shape == (4096, 33) and test.tokens.shape == (512, 33)
    assert (train.name, train.split, test.split, test.vocab, test.context) == (
        "induction", "train", "test", 64, 32)
    # no test sequence appears in train
    seen = {tuple(row) for row in train.tokens.tolist()}
    assert not any(tuple(row) in seen for row in test.tokens.tolist())


def test_copy_ends_at_the_label_and_repeats_an_earlier_segment(train):
    tokens, mask = train.tokens, train.in_context
    assert tokens.dtype == torch.int64 and int(tokens.min()) >= 0 and int(tokens.max()) < 64
    length = tokens.shape[1]
    r = mask.sum(1) + 1  # the copy's positions after its first token are marked
    assert int(r.min()) == 5 and int(r.max()) == 9
    successors: dict[int, set[int]] = {}
    for row, m, n in zip(tokens.tolist(), mask.tolist(), r.tolist(), strict=True):
        start = length - n
        # exactly the targets t + 1 in start+1 .. L-1, i.e. t in start .. L-2
        assert m == [start <= t <= length - 2 for t in range(length - 1)]
        copy = row[start:]
        first = [p for p in range(start - n + 1) if row[p:p + n] == copy]
        assert first, "the copy repeats a segment that ends before it starts"
        p = first[0]
        for j in range(1, length):  # every other step follows the sparse background chain
            if not (p <= j < p + n or j >= start):
                successors.setdefault(row[j - 1], set()).add(row[j])
    assert max(len(s) for s in successors.values()) <= 4


def test_bigram_helps_everywhere_but_in_context(train, test):
    b = baselines(train, test)
    assert set(b) == {f"{m}_{k}" for m in ("unigram", "bigram") for k in ("all", "in_context", "last")}
    assert b["bigram_in_context"] < 0.2 and b["bigram_last"] < 0.2
    assert b["bigram_all"] > b["unigram_all"] + 0.15


# --- baselines and accuracy: hand-computed answers -------------------------------------------

def test_baselines_on_a_hand_made_language():
    # train targets: 1 x3, 2 x3 -> unigram 1 (tie: smallest id)
    # successors: 0 -> 1; 1 -> 2 (twice); 2 -> 1 (twice) over 2 (once); 3 unseen -> unigram 1
    tr = TokenData(torch.tensor([[0, 1, 2, 1], [2, 1, 2, 2]]), 4, "hand", "train")
    te = TokenData(torch.tensor([[3, 1, 2, 2], [0, 2, 1, 2]]), 4, "hand", "test",
                   torch.tensor([[False, True, True], [False, False, True]]))
    # targets [[1, 2, 2], [2, 1, 2]]; unigram predicts 1 1 1 / 1 1 1; bigram 1 2 1 / 1 1 2
    b = baselines(tr, te)
    assert b["unigram_all"] == pytest.approx(2 / 6)
    assert b["unigram_in_context"] == 0.0 and b["unigram_last"] == 0.0
    assert b["bigram_all"] == pytest.approx(4 / 6)
    assert b["bigram_in_context"] == pytest.approx(2 / 3)
    assert b["bigram_last"] == 0.5
    plain = baselines(tr, TokenData(te.tokens, 4, "hand", "test"))
    assert math.isnan(plain["bigram_in_context"]) and plain["bigram_all"] == pytest.approx(4 / 6)


def test_token_accuracy_scores_all_positions_or_the_labels():
    d = TokenData(torch.tensor([[1, 2, 3], [3, 2, 1]]), 4, "toy", "all",
                  torch.tensor([[False, True], [False, True]]))
    assert token_accuracy(torch.tensor([[2, 3], [2, 2]]), d) == {"all": 0.75, "in_context": 0.5,
                                                                  "last": 0.5}
    last = token_accuracy(torch.tensor([3, 1]), d)
    assert last["last"] == 1.0 and math.isnan(last["all"]) and math.isnan(last["in_context"])
    with pytest.raises(ValueError, match=r"\(2, 2\) or \(2,\)"):
        token_accuracy(torch.zeros(2, 3, dtype=torch.long), d)


def test_token_data_checks_its_arrays():
    with pytest.raises(DataError, match="int64"):
        TokenData(torch.zeros(2, 3), 4, "t", "all")
    with pytest.raises(DataError, match="L >= 2"):
        TokenData(torch.zeros(2, 1, dtype=torch.long), 4, "t", "all")
    with pytest.raises(DataError, match=r"ids must lie in \[0, 4\); got \[0, 4\]"):
        TokenData(torch.tensor([[0, 4]]), 4, "t", "all")
    with pytest.raises(DataError, match=r"in_context must be None or a \(1, 1\) bool"):
        TokenData(torch.tensor([[0, 1]]), 4, "t", "all", torch.ones(1, 2, dtype=torch.bool))


# --- loaders ---------------------------------------------------------------------------------

def _tokenizer(folder):
    """A real word-level tokenizer trained in memory, saved as a model folder would hold it."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["the cat sat on the mat", "a dog sat on a log"],
                            trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    fast.save_pretrained(folder)
    return fast


def test_npz_and_npy_token_files(tmp_path):
    rows = np.array([[1, 2, 3, 4], [4, 3, 2, 1]])
    np.savez(tmp_path / "t.npz", tokens=rows)
    np.save(tmp_path / "t.npy", rows.astype(np.int32))
    np.savez(tmp_path / "s.npz", tokens_train=rows, tokens_test=rows[:1] + 1, vocab=np.array(10))
    for name in ("t.npz", "t.npy"):
        d = load_data(tmp_path / name)
        assert isinstance(d, TokenData) and torch.equal(d.tokens, torch.from_numpy(rows))
        assert (d.vocab, d.context, d.split, d.labels.tolist()) == (5, 3, "all", [4, 1])
    s = load_tokens(tmp_path / "s.npz", split="test")
    assert (s.vocab, s.split, s.tokens.tolist()) == (10, "test", [[2, 3, 4, 5]])
    assert load_tokens(tmp_path / "s.npz", split="train").vocab == 10
    # without a stored vocab both splits share max id + 1 over the file
    np.savez(tmp_path / "u.npz", tokens_train=rows, tokens_test=rows[:1] + 3)
    assert load_tokens(tmp_path / "u.npz", split="train").vocab == 8
    # an image .npz stays an image data set
    np.savez(tmp_path / "img.npz", x=np.zeros((2, 1, 2, 2)), y=np.array([0, 1]))
    assert isinstance(load_data(tmp_path / "img.npz"), Dataset)
    # at most context tokens are taken: shorter is fine, longer refused
    assert load_tokens(tmp_path / "t.npy", context=99).context == 3
    with pytest.raises(DataError, match="context 3 but at most 2"):
        load_tokens(tmp_path / "t.npy", context=2)


def test_txt_is_tokenised_and_cut_into_sequences(tmp_path):
    folder = tmp_path / "model"
    fast = _tokenizer(folder)
    text = "the cat sat on the mat " * 10  # 60 words, each one token
    (tmp_path / "t.txt").write_text(text)
    d = load_data(tmp_path / "t.txt", tokenizer=folder, context=7)
    ids = fast(text, add_special_tokens=False)["input_ids"]
    assert isinstance(d, TokenData) and len(ids) == 60
    assert d.tokens.shape == (7, 8) and d.tokens.reshape(-1).tolist() == ids[:56]  # 4 dropped
    assert d.vocab == len(fast) and d.split == "all" and d.in_context is None
    with pytest.raises(DataError, match="has 60 tokens but one sequence of context 60 needs 61"):
        load_tokens(tmp_path / "t.txt", tokenizer=folder, context=60)
    with pytest.raises(DataError, match="needs context=T"):
        load_tokens(tmp_path / "t.txt", tokenizer=folder)


@pytest.mark.parametrize("arrays, message", [
    (dict(tokens=np.zeros((2, 3))), "dtype float64; expected integer token ids"),
    (dict(tokens=np.array([[0, -1, 2]])), r"negative token ids \(min -1\)"),
    (dict(tokens=np.arange(5)), r"shape \(5,\).*one long stream"),
    (dict(tokens=np.array([[0, 7]]), vocab=np.array(5)), "ids up to 7 but vocab is 5"),
    (dict(ids=np.array([[0, 1]]), x=np.zeros(1)), r"no array 'tokens'.*the file has \['ids', 'x'\]"),
    (dict(tokens=np.array([[1, "a"]], dtype=object)), "without pickled objects"),
    (dict(tokens=np.array([[0, 1]]), vocab=np.array([3, 4])), "'vocab' is \\[3, 4\\]"),
])
def test_bad_token_files_say_what_is_wrong(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_tokens(tmp_path / "bad.npz")


def test_txt_without_a_tokenizer_says_where_it_looked(tmp_path):
    (tmp_path / "t.txt").write_text("the cat sat")
    _tokenizer(tmp_path / "model")
    empty = tmp_path / "weights-only"
    empty.mkdir()
    with pytest.raises(DataError, match=f"the folder {empty} has no tokenizer files "
                                        r"\(tokenizer.json / vocab.json"):
        load_data(tmp_path / "t.txt", tokenizer=empty, context=2)
    with pytest.raises(DataError, match="needs the tokenizer saved in the model's folder; no "
                                        "tokenizer folder was given"):
        load_tokens(tmp_path / "t.txt", context=2)
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9 au lait")
    with pytest.raises(DataError, match="not UTF-8 text"):
        load_tokens(tmp_path / "latin.txt", tokenizer=tmp_path / "model", context=2)
    with pytest.raises(DataError, match="does not exist"):
        load_data(tmp_path / "missing.npy")


def test_names_and_refusals():
    assert [s for s, _ in token_names()] == ["induction", "PATH.npz", "PATH.npy", "PATH.txt"]
    with pytest.raises(UnknownData, match="'nope'.*induction"):
        load_tokens("nope")
    with pytest.raises(DataError, match="'induction' is token data"):
        load_images("induction")
    with pytest.raises(ValueError, match="image_size applies to image folders only"):
        load_data("induction", image_size=8)


# --- embedded ------------------------------------------------------------------------------

def test_embedded_gives_an_unbounded_dataset(test):
    model = TinyLM()
    data = TokenData(test.tokens[:40], 64, "induction", "test", test.in_context[:40])
    e = embedded(data, model, batch=16)  # three batches
    assert isinstance(e, Dataset) and e.x.shape == (40, 32, 5) and e.x.dtype == torch.float32
    torch.testing.assert_close(e.x, model.emb(data.inputs).detach(), rtol=0, atol=0)
    assert torch.equal(e.y, data.labels) and e.classes == 64 and e.input_shape == (32, 5)
    assert (e.mean, e.std, e.name, e.split) == ((), (), "induction", "test")
    assert e.bounds is None and e.pixel_budget(0.1) == 0.1 and e.pixel_range == (-math.inf, math.inf)
    assert torch.equal(e.to_pixels(e.x), e.x)
    assert len(e.subset([1, 3])) == 2 and model.training  # train/eval state restored
    assert data_digest(e) == data_digest(embedded(data, model))


def test_embedded_refuses_a_model_too_small(test):
    with pytest.raises(DataError, match="vocabulary of 64 ids but the model's is 50.*at least 64"):
        embedded(test, TinyLM(vocab_size=50))
    with pytest.raises(DataError, match="context 32 tokens but the model takes at most 16.*"
                                        "context=16"):
        embedded(test, TinyLM(context=16))
    with pytest.raises(DataError, match="has no embed, vocab_size, context"):
        embedded(test, nn.Linear(2, 2))


def test_dataset_normalisation_is_per_image_channel_only():
    with pytest.raises(DataError, match=r"per channel of \(N, C, H, W\) images"):
        Dataset(torch.zeros(2, 3, 4), torch.zeros(2, dtype=torch.long), "t", "all", 2, (0.0,), (1.0,))


def test_check_compatible_takes_embedded_tokens(test):
    model = TinyLM()
    e = embedded(TokenData(test.tokens[:4], 64, "induction", "test"), model)
    check_compatible(model, e)  # no card: one forward pass, 64 outputs for 64 classes
    _check_trained_shape((1024, 5), e, "model 'lm'", False)  # fewer tokens than trained: fine
    with pytest.raises(DataError, match=r"input shape \(32, 5\) but model 'lm' takes inputs of "
                                        r"shape \(32, 8\)"):
        _check_trained_shape((32, 8), e, "model 'lm'", False)
