"""Small torch helpers shared by every layer: an eval-mode context, a one-thread context,
attention that forward-mode AD can differentiate, seeded generators and the one check of a
device name.

This module imports nothing from resdyn, so models, data, operators, perturb, capture, train and
studies may all use it without creating a cycle.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

Seed = int | torch.Generator


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode inside the ``with``; restore every submodule's own flag after.

    Restoring each submodule's flag (not ``model.train(was_training)``) keeps mixed states
    intact, e.g. a network in train mode with a frozen BatchNorm in eval mode.

    Yields:
        the model itself.

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)).train()
        >>> _ = net[1].eval()
        >>> with eval_mode(net):
        ...     net.training
        False
        >>> net.training, net[1].training
        (True, False)
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


@contextmanager
def differentiable_attention() -> Iterator[None]:
    """Attention that forward-mode AD can differentiate, inside the ``with``.

    torch's fused attention kernels have no forward-mode derivative (on the CPU in torch 2.14:
    ``_scaled_dot_product_flash_attention_for_cpu``, and MultiheadAttention's fast path
    ``_native_multi_head_attention``; see PyTorch issues 117629, 128971, 154226), so a JVP through
    a transformer block fails. Inside this context ``scaled_dot_product_attention`` takes its
    math kernel (the reference: softmax(QKᵀ/√d)V in plain operations, any dtype, every AD mode)
    and MultiheadAttention its composite path. Values equal the fused kernels' up to rounding.
    Both switches are process-wide and restored on exit.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one CPU thread inside the ``with``; the caller's thread count restored after.

    For reductions whose last bits must not depend on the thread count (a multi-threaded sum
    adds in another order), e.g. the normalisation statistics every data set's identity hashes.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def generator(seed: Seed) -> torch.Generator:
    """A CPU torch.Generator seeded with ``seed``, or ``seed`` itself when it is a Generator.

    A Generator passed in is returned as is (and advanced by whoever draws from it), so a caller
    can thread one stream of randomness through several functions.

    Raises:
        TypeError: ``seed`` is neither an int nor a torch.Generator (bool and None included).

    Example:
        >>> a = torch.randn(2, generator=generator(0))
        >>> torch.equal(a, torch.randn(2, generator=torch.Generator().manual_seed(0)))
        True
    """
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or a torch.Generator; got {type(seed).__name__} "
                        f"({seed!r}). Pass e.g. seed=0 or seed=torch.Generator().manual_seed(0)")
    return torch.Generator().manual_seed(seed)


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """A device checked against this machine: "cpu", "cuda", "cuda:N" or "auto" (the first GPU
    where there is one, else the CPU); "cuda" is "cuda:0".

    Raises:
        ValueError: not a device name, or a GPU this machine has not (one line, with the fix).

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device {device!r} is not a torch device ({e}); expected 'cpu', "
                         "'cuda', 'cuda:N' or 'auto'") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise ValueError(f"device {device!r} is not supported; expected 'cpu', 'cuda', 'cuda:N' "
                         "or 'auto'")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not count:
        raise ValueError(f"device {device!r} requested but CUDA is not available "
                         "(torch.cuda.is_available() is False). Fix: use device 'cpu' or "
                         "'auto', or a CUDA build of torch on a machine with an NVIDIA GPU")
    index = dev.index or 0
    if index >= count:
        raise ValueError(f"device {device!r} requested but this machine has {count} CUDA "
                         f"device(s), cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", index)


#: Working precisions of the products with J (the operator's dtype), by name: a run's
#: precision (:class:`resdyn.runs.RunContext`) is one of these names. The dense paths'
#: Gram matrix and eigensolves run in float64 whatever the products' precision: float32 there
#: moved σ by up to 1.4e-5·σ_max on CIFAR-shaped units (benchmarks/README.md), float32 products
#: alone by less than 1e-7·σ_max.
PRECISIONS: dict[str, torch.dtype] = {"float64": torch.float64, "float32": torch.float32}


def precision_dtype(name: str) -> torch.dtype:
    """The torch dtype of a precision name in :data:`PRECISIONS`.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).

    Example:
        >>> precision_dtype("float32")
        torch.float32
        >>> precision_dtype("float16")
        Traceback (most recent call last):
            ...
        ValueError: unknown precision 'float16'; valid: float64, float32
    """
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; valid: {', '.join(PRECISIONS)}")
    return PRECISIONS[name]


def precision_name(dtype: torch.dtype) -> str:
    """"float64" for torch.float64 and so on."""
    return str(dtype).removeprefix("torch.")
