"""CIFAR-10 and MNIST through torchvision, cached on disk, with a clear message when offline."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from .dataset import Dataset, DownloadError, check_split, normalise

ENV_VAR = "RESDYN_DATA"
DEFAULT_CACHE = Path("~/.cache/resdyn/data")
DOWNLOAD_TIMEOUT_S = 60.0

# pytorchcv's CIFAR models (the ResNets of paper 000) were trained with these constants
# (imgclsmob cifar10_cls_dataset.py), so pretrained weights see the inputs they expect.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)

# What must be on disk under the cache directory, for the offline message.
EXPECTED_FILES = {
    "cifar10": "cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} (unpacked "
               "from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz)",
    "mnist": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (the four gunzipped "
             "idx files)",
}


def cache_dir(root: str | Path | None = None) -> Path:
    """Where torchvision data sets live: ``root``, else $RESDYN_DATA, else ~/.cache/resdyn/data.

    Example:
        >>> from pathlib import Path
        >>> cache_dir("/data/sets"), cache_dir("~/sets") == Path.home() / "sets"
        (PosixPath('/data/sets'), True)
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else DEFAULT_CACHE.expanduser()


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    # torchvision's urlopen has no timeout: a black-holed network would hang forever.
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _fetch(name: str, cls: type, root: Path, train: bool):
    """The torchvision data set from ``root``, downloading it there if it is missing."""
    try:
        return cls(str(root), train=train, download=False)
    except RuntimeError:
        pass  # not on disk (or corrupted): download below
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            return cls(str(root), train=train, download=True)
    except Exception as e:  # urllib, http and torchvision raise many types for one cause
        why = " ".join(str(e).split())[:300]
        raise DownloadError(
            f"{name} is not in {root} and downloading it failed ({type(e).__name__}: {why}). "
            f"resdyn looked for {root}/{EXPECTED_FILES[name]}. This machine may be offline. "
            f"Fix: run resdyn.load_data({name!r}) on a connected machine and copy its cache "
            f"folder here (or point root=... / ${ENV_VAR} at it); or save the images "
            "as a .npz with arrays x (N, C, H, W) in [0, 1] and y (N,) and use PATH.npz as "
            "the data spec.") from None


def load_cifar10(split: str = "test", root: str | Path | None = None) -> Dataset:
    """CIFAR-10 ``split`` as (N, 3, 32, 32), normalised with :data:`CIFAR10_MEAN`/``_STD``.

    Raises:
        DownloadError: the files are absent from the cache and cannot be downloaded.

    Example:
        The split is checked before any file is read or fetched (a real load needs the
        download, or a cache folder copied from a connected machine, as ``root``):

        >>> load_cifar10("val")
        Traceback (most recent call last):
            ...
        ValueError: split must be one of ('train', 'test'); got 'val'
    """
    from torchvision.datasets import CIFAR10

    check_split(split)
    ds = _fetch("cifar10", CIFAR10, cache_dir(root), split == "train")
    pixels = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float() / 255.0
    return Dataset(x=normalise(pixels, CIFAR10_MEAN, CIFAR10_STD),
                   y=torch.as_tensor(ds.targets, dtype=torch.int64), name="cifar10",
                   split=split, classes=10, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                   class_names=CIFAR10_CLASSES)


def load_mnist(split: str = "test", root: str | Path | None = None) -> Dataset:
    """MNIST ``split`` as (N, 1, 28, 28), normalised with mean 0.1307 and std 0.3081.

    Raises:
        DownloadError: the files are absent from the cache and cannot be downloaded.

    Example:
        Offline, from tiny stand-ins for the four idx files that the download unpacks:

        >>> import tempfile
        >>> from pathlib import Path
        >>> import numpy as np
        >>> root = Path(tempfile.mkdtemp())
        >>> raw = root / "MNIST" / "raw"
        >>> raw.mkdir(parents=True)
        >>> for part, n in (("train", 3), ("t10k", 2)):  # n blank 28x28 images labelled 7
        ...     head = np.array([2051, n, 28, 28], dtype=">i4").tobytes()
        ...     _ = (raw / f"{part}-images-idx3-ubyte").write_bytes(head + bytes(n * 28 * 28))
        ...     head = np.array([2049, n], dtype=">i4").tobytes()
        ...     _ = (raw / f"{part}-labels-idx1-ubyte").write_bytes(head + bytes([7] * n))
        >>> test = load_mnist("test", root=root)
        >>> test.x.shape, test.y.tolist(), test.mean, test.std
        (torch.Size([2, 1, 28, 28]), [7, 7], (0.1307,), (0.3081,))
    """
    from torchvision.datasets import MNIST

    check_split(split)
    ds = _fetch("mnist", MNIST, cache_dir(root), split == "train")
    pixels = ds.data.unsqueeze(1).float() / 255.0
    return Dataset(x=normalise(pixels, MNIST_MEAN, MNIST_STD), y=ds.targets.to(torch.int64),
                   name="mnist", split=split, classes=10, mean=MNIST_MEAN, std=MNIST_STD,
                   class_names=tuple(str(i) for i in range(10)))
