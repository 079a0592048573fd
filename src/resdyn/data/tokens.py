"""Token data for causal language models: the embedded ``induction`` language and the user's files.

resdyn treats a causal LM as a classifier of the next token after a context of T tokens. A token
data set therefore holds sequences of L = T + 1 token ids: the model reads the first T, and the
label of a sequence is its last token.

The embedded language ``"induction"`` (vocabulary 64, T = 32, 4096 train / 512 test sequences,
generated from a fixed seed, no download) is built so that two mechanisms are needed to predict it:

- a background first-order Markov chain: every token has 4 possible successors with fixed seeded
  integer weights 2^e, e in 0..4, so a bigram table predicts much of a sequence and unigram and
  bigram baselines mean something;
- in every sequence a segment of r uniformly random tokens (r in 5..9) sits at a random earlier
  position and is copied again so that the copy ends at the last token. Inside the copy, after
  its first token, only the earlier occurrence predicts the next token: an induction (copy)
  mechanism, which must attend across tokens, gets them right while bigram statistics are near
  chance. The label (last token) is always such a position.

So a model's accuracy on ``in_context`` positions against its accuracy elsewhere separates the
token-local part of its computation from the part that moves information between tokens.
Generation uses numpy's ``Generator(PCG64)`` and integer operations only (successors drawn as
u mod total weight), so a seed gives bit-identical data on any machine; the language comes from
the stream ``[SEED, 0]``, the train and test sequences from ``[SEED, 1]`` and ``[SEED, 2]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._torch import eval_mode
from .dataset import DataError, Dataset, UnknownData, check_ids, check_split

SEED = 0
VOCAB = 64
CONTEXT = 32
SIZES = {"train": 4096, "test": 512}
SUCCESSORS = 4
SEGMENT = (5, 9)  # shortest and longest copied segment
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer_config.json")
TOKEN_NPZ = "an integer array tokens (N, L), or tokens_train and tokens_test; optional scalar vocab"


@dataclass(frozen=True, eq=False)
class TokenData:
    """Sequences of L = T + 1 token ids: the model reads the first T, the last is the label.

    Attributes:
        tokens: (N, L) int64 ids in [0, vocab).
        vocab: size of the vocabulary the ids come from.
        name: the spec the data was loaded from (``"induction"``, a path ...).
        split: ``"train"``, ``"test"``, or ``"all"`` for a file without a split.
        in_context: (N, L-1) bool or None: True at target positions t (target = tokens[:, t+1])
            that only in-context information predicts (the copies of ``"induction"``); None when
            unknown (files).

    Example:
        >>> import torch
        >>> d = TokenData(torch.tensor([[1, 2, 3], [3, 2, 1]]), vocab=4, name="toy", split="all")
        >>> d, d.context, d.inputs.tolist(), d.labels.tolist()
        (TokenData('toy', split='all', n=2, context=2, vocab=4), 2, [[1, 2], [3, 2]], [3, 1])
    """

    tokens: Tensor
    vocab: int
    name: str
    split: str
    in_context: Tensor | None = None

    def __post_init__(self) -> None:
        t = self.tokens
        if t.dtype != torch.int64 or t.ndim != 2 or t.shape[1] < 2:
            raise DataError(f"TokenData.tokens must be an (N, L) int64 tensor with L >= 2 (T = L-1 "
                            f"context tokens and the label); got shape {tuple(t.shape)} and dtype "
                            f"{t.dtype}")
        if self.vocab < 1:
            raise DataError(f"TokenData.vocab must be a positive vocabulary size; got {self.vocab}")
        check_ids(t, self.vocab, "token ids")
        m = self.in_context
        if m is not None and (m.dtype != torch.bool or m.shape != (t.shape[0], t.shape[1] - 1)):
            raise DataError(f"TokenData.in_context must be None or a ({t.shape[0]}, "
                            f"{t.shape[1] - 1}) bool tensor; got shape {tuple(m.shape)} and dtype "
                            f"{m.dtype}")

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def __repr__(self) -> str:
        return (f"TokenData({self.name!r}, split={self.split!r}, n={len(self)}, "
                f"context={self.context}, vocab={self.vocab})")

    @property
    def context(self) -> int:
        """T = L - 1, the number of tokens the model reads."""
        return int(self.tokens.shape[1]) - 1

    @property
    def inputs(self) -> Tensor:
        """(N, T) the model's input: tokens[:, :-1]."""
        return self.tokens[:, :-1]

    @property
    def targets(self) -> Tensor:
        """(N, T) the next token at every position: tokens[:, 1:]."""
        return self.tokens[:, 1:]

    @property
    def labels(self) -> Tensor:
        """(N,) the next token after the whole context: tokens[:, -1]."""
        return self.tokens[:, -1]


# ---------------------------------------------------------------- the embedded language

def _language(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(successors (V, 4), cumulative integer weights (V, 4)) of the background Markov chain."""
    successors = np.stack([rng.permutation(VOCAB)[:SUCCESSORS] for _ in range(VOCAB)])
    weights = np.left_shift(1, rng.integers(0, 5, size=(VOCAB, SUCCESSORS)))
    return successors, np.cumsum(weights, axis=1)


def _sequences(n: int, successors: np.ndarray, cumulative: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(tokens (n, L), in_context (n, L-1)) of ``n`` sequences; all draws first, so fixed streams."""
    length, (shortest, longest) = CONTEXT + 1, SEGMENT
    start = rng.integers(0, VOCAB, n)
    r = rng.integers(shortest, longest + 1, n)
    first = rng.integers(0, length - 2 * r + 1)  # the segment, then its copy ending at the label
    segment = rng.integers(0, VOCAB, (n, longest))
    draws = rng.integers(0, 1 << 30, (n, length))
    pos = np.arange(length)
    copy_start = length - r
    in_first = (pos >= first[:, None]) & (pos < (first + r)[:, None])
    in_copy = pos >= copy_start[:, None]
    rows = np.arange(n)
    tokens = np.empty((n, length), dtype=np.int64)
    for j in range(length):
        if j == 0:
            chain = start
        else:
            prev = tokens[:, j - 1]
            u = draws[:, j] % cumulative[prev, -1]
            chain = successors[prev, (u[:, None] >= cumulative[prev]).sum(axis=1)]
        from_first = segment[rows, np.clip(j - first, 0, longest - 1)]
        from_copy = segment[rows, np.clip(j - copy_start, 0, longest - 1)]
        tokens[:, j] = np.where(in_first[:, j], from_first, np.where(in_copy[:, j], from_copy, chain))
    in_context = pos[:-1] >= copy_start[:, None]  # target t + 1 inside the copy, after its first
    return tokens, in_context


def induction(split: str = "test", seed: int = SEED) -> TokenData:
    """The embedded language ``"induction"`` (see the module docstring): bigram chain plus a copy.

    Args:
        split: ``"train"`` (4096 sequences) or ``"test"`` (512).
        seed: base seed; the same seed gives bit-identical data on any machine.

    Returns:
        :class:`TokenData` with tokens (N, 33), vocab 64 and the copy positions in ``in_context``.

    Example:
        >>> d = induction("test")
        >>> d, bool(d.in_context[:, -1].all())
        (TokenData('induction', split='test', n=512, context=32, vocab=64), True)
    """
    check_split(split)
    successors, cumulative = _language(np.random.Generator(np.random.PCG64([seed, 0])))
    stream = np.random.Generator(np.random.PCG64([seed, 1 + ("train", "test").index(split)]))
    tokens, in_context = _sequences(SIZES[split], successors, cumulative, stream)
    return TokenData(torch.from_numpy(tokens), VOCAB, "induction", split,
                     torch.from_numpy(in_context))


# ---------------------------------------------------------------- files

def _from_array(path: Path, key: str, arr: np.ndarray, vocab: int | None, split: str) -> TokenData:
    """An (N, L) integer array checked and wrapped; vocab defaults to max id + 1."""
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{path}: array {key!r} has dtype {arr.dtype}; expected integer token ids. "
                        "Fix: save it with tokens.astype(np.int64)")
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] < 2:
        hint = (" (one long stream: cut it into rows, e.g. ids[:n * L].reshape(n, L))"
                if arr.ndim == 1 else "")
        raise DataError(f"{path}: array {key!r} has shape {arr.shape}; expected (N, L) with N >= 1 "
                        f"sequences of L >= 2 tokens (T = L-1 context tokens and the label){hint}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0:
        raise DataError(f"{path}: array {key!r} has negative token ids (min {lo}); expected ids "
                        "0, 1, ..., vocab-1")
    vocab = hi + 1 if vocab is None else vocab
    if hi >= vocab:
        raise DataError(f"{path}: array {key!r} has token ids up to {hi} but vocab is {vocab}; "
                        f"expected ids below vocab. Fix: store vocab >= {hi + 1}, or the right ids")
    return TokenData(torch.from_numpy(arr.astype(np.int64)), vocab, str(path), split)


def _vocab(path: Path, v: np.ndarray) -> int:
    if v.size != 1 or not np.issubdtype(v.dtype, np.integer) or int(v.reshape(-1)[0]) < 1:
        raise DataError(f"{path}: array 'vocab' is {v.reshape(-1)[:4].tolist()} of dtype {v.dtype}; "
                        "expected one positive integer, the vocabulary size")
    return int(v.reshape(-1)[0])


def _load_npz(path: Path, split: str) -> TokenData:
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - missing, empty, corrupt: numpy's messages vary
        raise DataError(f"{path}: cannot read it as a .npz archive ({type(e).__name__}); "
                        f"expected {TOKEN_NPZ}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: holds a single .npy array, not a .npz archive; expected "
                        f"{TOKEN_NPZ} (or name the file .npy)")
    with z:
        has_split = "tokens_train" in z.files and "tokens_test" in z.files
        keys = ["tokens_train", "tokens_test"] if has_split else ["tokens"]
        if not all(k in z.files for k in keys):
            raise DataError(f"{path}: no array 'tokens' (or 'tokens_train' and 'tokens_test'); "
                            f"the file has {sorted(z.files)}; expected {TOKEN_NPZ}")
        try:
            arrays = {k: z[k] for k in keys}
        except ValueError as e:  # object arrays refuse to load without pickle
            raise DataError(f"{path}: cannot read the arrays ({e}); expected {TOKEN_NPZ}, "
                            "without pickled objects") from None
        vocab = _vocab(path, z["vocab"]) if "vocab" in z.files else None
    key = f"tokens_{split}" if has_split else "tokens"
    if vocab is None:  # one vocabulary for both splits
        vocab = max(int(a.max()) + 1 if a.size and np.issubdtype(a.dtype, np.integer) else 1
                    for a in arrays.values())
    return _from_array(path, key, arrays[key], vocab, split if has_split else "all")


def _load_npy(path: Path) -> TokenData:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: cannot read it as a .npy array ({type(e).__name__}); expected "
                        "an integer array (N, L) saved with numpy.save") from None
    if not isinstance(arr, np.ndarray):
        raise DataError(f"{path}: is a .npz archive, not a .npy array; name it .npz")
    return _from_array(path, "tokens", arr, None, "all")


def _load_txt(path: Path, tokenizer: str | Path | None, context: int | None) -> TokenData:
    if tokenizer is None or not Path(tokenizer).is_dir() or not any(
            (Path(tokenizer) / f).is_file() for f in TOKENIZER_FILES):
        where = ("no tokenizer folder was given (tokenizer=FOLDER)"
                 if tokenizer is None else f"the folder {tokenizer} has no tokenizer files "
                 f"({' / '.join(TOKENIZER_FILES[:3])} ...)")
        raise DataError(f"{path}: plain text needs the tokenizer saved in the model's folder; "
                        f"{where}. Fix: pass the folder holding the model's tokenizer files")
    if context is None or context < 1:
        raise DataError(f"{path}: plain text needs context=T (T >= 1, e.g. the model's context) "
                        f"to cut it into sequences of T+1 tokens; got {context}")
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(tokenizer), local_files_only=True)
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{tokenizer}: cannot load the tokenizer ({first}); expected a folder "
                        "written by tokenizer.save_pretrained") from None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); expected plain "
                        "text in UTF-8") from None
    ids = np.asarray(tok(text, add_special_tokens=False, verbose=False)["input_ids"],
                     dtype=np.int64)
    length = context + 1
    if len(ids) < length:
        raise DataError(f"{path}: the text has {len(ids)} tokens but one sequence of context "
                        f"{context} needs {length}. Fix: give a longer text or a smaller context")
    rows = ids[: len(ids) // length * length].reshape(-1, length)
    return _from_array(path, "tokens", rows, max(len(tok), int(ids.max()) + 1), "all")


def is_token_npz(path: str | Path) -> bool:
    """True when ``path`` is a readable .npz holding ``tokens`` or ``tokens_train`` arrays.

    Example:
        >>> import tempfile
        >>> import numpy as np
        >>> path = Path(tempfile.mkdtemp()) / "t.npz"
        >>> np.savez(path, tokens=np.zeros((2, 5), dtype=np.int64))
        >>> is_token_npz(path)
        True
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            return isinstance(z, np.lib.npyio.NpzFile) and bool(
                {"tokens", "tokens_train"} & set(z.files))
    except Exception:  # noqa: BLE001 - unreadable: the image loader explains why
        return False


def token_names() -> list[tuple[str, str]]:
    """(spec, description) of every kind of token data spec :func:`load_tokens` accepts.

    Example:
        >>> [spec for spec, _ in token_names()]
        ['induction', 'PATH.npz', 'PATH.npy', 'PATH.txt']
    """
    return [("induction", f"synthetic language for causal LMs: a bigram chain plus a copied "
                          f"segment ending at the label, vocab {VOCAB}, context {CONTEXT}, "
                          f"{SIZES['train']} train / {SIZES['test']} test; generated"),
            ("PATH.npz", f"token data: {TOKEN_NPZ}"),
            ("PATH.npy", "token data: an integer array (N, L) of token ids"),
            ("PATH.txt", "plain text, tokenised by the tokenizer in a model folder (tokenizer=) "
                         "and cut into sequences of context+1 tokens (context=)")]


def load_tokens(spec: str | Path, split: str = "test", tokenizer: str | Path | None = None,
                context: int | None = None) -> TokenData:
    """Load token data by spec: ``"induction"``, ``PATH.npz``, ``PATH.npy`` or ``PATH.txt``.

    Args:
        spec: see :func:`token_names`.
        split: ``"train"`` or ``"test"``; a file without a split returns all of it (``"all"``).
        tokenizer: .txt only: the folder holding the model's tokenizer (``save_pretrained``).
        context: the most context tokens T the caller takes (e.g. the model's). A .txt is cut into
            consecutive sequences of exactly T+1 tokens (the rest dropped); other data with longer
            sequences is refused.

    Returns:
        :class:`TokenData`; vocab is the file's ``vocab``, the tokenizer's size, or max id + 1.

    Raises:
        UnknownData: not a token data name nor a .npz/.npy/.txt path.
        DataError: a missing or unreadable file, wrong arrays (see the message), a .txt without
            tokenizer or context, too short a text, or sequences longer than ``context``.

    Example:
        >>> load_tokens("induction", split="train")
        TokenData('induction', split='train', n=4096, context=32, vocab=64)
    """
    check_split(split)
    text = str(spec).strip()
    path = Path(text).expanduser()
    if text.lower() == "induction":
        data = induction(split)
    elif path.suffix in (".npz", ".npy", ".txt"):
        if not path.is_file():
            raise DataError(f"token data file {path} does not exist; expected "
                            + dict(token_names())[f"PATH{path.suffix}"])
        data = (_load_npz(path, split) if path.suffix == ".npz" else _load_npy(path)
                if path.suffix == ".npy" else _load_txt(path, tokenizer, context))
    else:
        valid = "; ".join(f"{n} ({d})" for n, d in token_names())
        raise UnknownData(f"unknown token data {text!r}; valid: {valid}")
    if context is not None and data.context > context:
        raise DataError(f"{data.name}: sequences have context {data.context} but at most {context} "
                        f"is taken (context={context}). Fix: use data with at most {context} "
                        "context tokens per sequence, or a model with a longer context")
    return data


# ---------------------------------------------------------------- scoring and embedding

def token_accuracy(pred: Tensor, data: TokenData) -> dict[str, float]:
    """Next-token accuracy of predictions on ``data``: over all targets, in-context ones, the label.

    Args:
        pred: (N, T) predicted ids, pred[:, t] for tokens[:, t+1]; or (N,) for the labels only.
        data: the sequences scored.

    Returns:
        ``{"all", "in_context", "last"}``; nan where undefined (no in_context mask or no such
        position; "all" and "in_context" for (N,) predictions).

    Example:
        >>> import torch
        >>> d = TokenData(torch.tensor([[1, 2, 3], [3, 2, 1]]), vocab=4, name="toy", split="all")
        >>> token_accuracy(torch.tensor([[2, 3], [2, 2]]), d)
        {'all': 0.75, 'in_context': nan, 'last': 0.5}
    """
    pred = torch.as_tensor(pred).cpu()
    n, t = data.targets.shape
    if pred.shape not in ((n, t), (n,)):
        raise ValueError(f"pred must have shape ({n}, {t}) or ({n},) for data {data.name!r}; got "
                         f"{tuple(pred.shape)}")
    nan = float("nan")
    if pred.ndim == 1:
        return {"all": nan, "in_context": nan, "last": float((pred == data.labels).double().mean())}
    hit = pred == data.targets
    mask = data.in_context
    return {"all": float(hit.double().mean()),
            "in_context": float(hit[mask].double().mean()) if mask is not None and mask.any() else nan,
            "last": float(hit[:, -1].double().mean())}


def baselines(train: TokenData, test: TokenData) -> dict[str, float]:
    """Next-token accuracy on ``test`` of the unigram and bigram predictors fitted on ``train``.

    Unigram: always the most frequent train target. Bigram: the most frequent successor of the
    previous token in train (ties: the smallest id; a token never seen before a target: the
    unigram guess). Each is scored by :func:`token_accuracy`.

    Returns:
        ``unigram_all``, ``unigram_in_context``, ``unigram_last``, ``bigram_all``,
        ``bigram_in_context``, ``bigram_last``.

    Example:
        >>> import torch
        >>> train = TokenData(torch.tensor([[0, 1, 1], [1, 2, 1]]), 3, "toy", "train")
        >>> test = TokenData(torch.tensor([[2, 1, 2]]), 3, "toy", "test")
        >>> baselines(train, test)["bigram_all"], baselines(train, test)["unigram_all"]
        (0.5, 0.5)
    """
    vocab = max(train.vocab, test.vocab)
    prev, nxt = train.inputs.reshape(-1), train.targets.reshape(-1)
    unigram = int(torch.bincount(nxt, minlength=vocab).argmax())  # argmax: first of the ties
    counts = torch.bincount(prev * vocab + nxt, minlength=vocab * vocab).view(vocab, vocab)
    table = torch.where(counts.sum(1) > 0, counts.argmax(1), unigram)
    out = {}
    for name, pred in (("unigram", torch.full_like(test.targets, unigram)),
                       ("bigram", table[test.inputs])):
        out.update({f"{name}_{k}": v for k, v in token_accuracy(pred, test).items()})
    return out


def embedded(data: TokenData, model: nn.Module, batch: int = 256) -> Dataset:
    """The token data as a :class:`Dataset` of the model's embeddings: x (N, T, d), y the labels.

    x = model.embed(data.inputs), computed without gradients in batches on the model's device and
    kept on the CPU as float32; no normalisation and an unbounded range (bounds None).

    Args:
        data: sequences whose ids lie below the model's vocabulary and context at most its own.
        model: a causal LM wrapper with ``embed``, ``vocab_size`` and ``context``.
        batch: sequences embedded at a time.

    Returns:
        :class:`Dataset` with classes = model.vocab_size, mean = std = (),
        pixel_range = (-inf, inf).

    Raises:
        DataError: the model lacks embed/vocab_size/context, its vocabulary or context is smaller
            than the data's, or embed returns another shape than (B, T, d).

    Example:
        >>> import torch
        >>> class Tiny(torch.nn.Module):
        ...     vocab_size, context = 4, 8
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.emb = torch.nn.Embedding(4, 3)
        ...     def embed(self, tokens):
        ...         return self.emb(tokens)
        >>> d = TokenData(torch.tensor([[1, 2, 3], [3, 2, 1]]), vocab=4, name="toy", split="all")
        >>> e = embedded(d, Tiny())
        >>> e.x.shape, e.y.tolist(), e.bounds
        (torch.Size([2, 2, 3]), [3, 1], None)
    """
    missing = [a for a in ("embed", "vocab_size", "context") if not hasattr(model, a)]
    if missing:
        raise DataError(f"model {type(model).__name__} has no {', '.join(missing)}; token data "
                        "needs a causal LM wrapper (resdyn.models CausalLM)")
    lm: Any = model  # the attributes checked above, which nn.Module does not declare
    vocab_size, positions = int(lm.vocab_size), int(lm.context)
    if data.vocab > vocab_size:
        raise DataError(f"data {data.name!r} has a vocabulary of {data.vocab} ids but the model's "
                        f"is {vocab_size}. Fix: tokenise the data with the model's tokenizer, or "
                        f"use a model with at least {data.vocab} tokens")
    if data.context > positions:
        raise DataError(f"data {data.name!r} has context {data.context} tokens but the model "
                        f"takes at most {positions}. Fix: load the data with context={positions}, "
                        "or use a model with a longer context")
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    parts = []
    with torch.no_grad(), eval_mode(model):
        for i in range(0, len(data), batch):
            x = data.inputs[i:i + batch]
            e = lm.embed(x.to(device))
            if e.ndim != 3 or tuple(e.shape[:2]) != tuple(x.shape):
                raise DataError(f"model.embed gave shape {tuple(e.shape)} for tokens of shape "
                                f"{tuple(x.shape)}; expected (B, T, d)")
            parts.append(e.detach().to("cpu", torch.float32))
    return Dataset(x=torch.cat(parts), y=data.labels.clone(), name=data.name, split=data.split,
                   classes=vocab_size, mean=(), std=(), pixel_range=(-math.inf, math.inf))
