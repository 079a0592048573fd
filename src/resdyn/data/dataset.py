"""The in-memory data set every resdyn analysis and training run consumes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from .._torch import one_thread

SPLITS = ("train", "test")


class DataError(ValueError):
    """A data file, folder or array that resdyn cannot use as given.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> import numpy as np
        >>> from resdyn.data import load_npz
        >>> path = Path(tempfile.mkdtemp()) / "raw.npz"
        >>> np.savez(path, x=np.full((2, 1, 4, 4), 255.0), y=np.array([0, 1]))
        >>> load_npz(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        resdyn.data.dataset.DataError: ...raw.npz: pixel values lie in [255, 255]; expected [0, 1]. ...
    """


class UnknownData(ValueError):
    """A data spec that names no data set, file or folder.

    Example:
        >>> from resdyn.data import load_data
        >>> load_data("no-such-data")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        resdyn.data.dataset.UnknownData: unknown data 'no-such-data': not a data set name, ...
    """


class DownloadError(RuntimeError):
    """A torchvision data set is not on disk and could not be downloaded.

    Raised by :func:`~resdyn.data.load_cifar10` and :func:`~resdyn.data.load_mnist` (offline, with
    an empty cache); its message names the files expected and how to supply them. It is not a
    ``ValueError``: the spec was valid, the machine lacks the data.

    Example:
        >>> issubclass(DownloadError, RuntimeError), issubclass(DownloadError, ValueError)
        (True, False)
    """


@dataclass(frozen=True, eq=False)
class Dataset:
    """Inputs already normalised, with their labels and the normalisation that was applied.

    For images the data spec owns normalisation: ``x = (pixels - mean) / std`` per channel, where
    pixels lie in ``pixel_range`` (normally [0, 1]). Models trained by resdyn see exactly ``x``.
    Other inputs, such as the token embeddings of :func:`~resdyn.data.embedded` (N, T, d), have no
    normalisation (``mean = std = ()``) and may be unbounded (``pixel_range = (-inf, inf)``).

    Attributes:
        x: (N, C, H, W) float32 normalised images, or (N, ...) float32 inputs of any shape.
        y: (N,) int64 labels in [0, classes).
        name: the spec the data was loaded from (``"digits"``, ``"cifar10"``, a path ...).
        split: ``"train"``, ``"test"``, or ``"all"`` for a file/folder that has no split.
        classes: number of classes.
        mean, std: per-channel normalisation constants, length C (images only), or both empty
            when x is used as it is.
        pixel_range: (lo, hi) of raw values before normalisation; may be infinite.
        class_names: optional label names, length ``classes`` (empty when unknown).

    Example:
        >>> from resdyn.data import load_data
        >>> d = load_data("digits")
        >>> d.x.shape, d.input_shape, d.classes
        (torch.Size([450, 1, 8, 8]), (1, 8, 8), 10)
        >>> import torch
        >>> raw = Dataset(torch.zeros(3, 5, 4), torch.tensor([0, 1, 1]), "toy", "all", 2, (), (),
        ...               pixel_range=(float("-inf"), float("inf")))
        >>> raw.input_shape, raw.bounds, raw.pixel_budget(0.1)
        ((5, 4), None, 0.1)
    """

    x: Tensor
    y: Tensor
    name: str
    split: str
    classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pixel_range: tuple[float, float] = (0.0, 1.0)
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Cheap invariant checks: a Dataset that exists is always usable downstream.
        if self.x.ndim < 2 or self.x.dtype != torch.float32:
            raise DataError(f"Dataset.x must be a float32 tensor (N, ...), e.g. (N, C, H, W) images; "
                            f"got shape {tuple(self.x.shape)} and dtype {self.x.dtype}")
        if self.y.shape != (self.x.shape[0],) or self.y.dtype != torch.int64:
            raise DataError(f"Dataset.y must be a ({self.x.shape[0]},) int64 tensor matching x; got "
                            f"shape {tuple(self.y.shape)} and dtype {self.y.dtype}")
        if self.mean or self.std:
            c = self.x.shape[1] if self.x.ndim == 4 else None
            if c is None:
                raise DataError(f"mean and std apply per channel of (N, C, H, W) images; x has shape "
                                f"{tuple(self.x.shape)}, so give mean=() and std=()")
            if len(self.mean) != c or len(self.std) != c:
                raise DataError(f"mean and std need one value per channel ({c}); got "
                                f"{len(self.mean)} and {len(self.std)}")
        lo, hi = self.pixel_range
        if not lo < hi:
            raise DataError(f"pixel_range must be (lo, hi) with lo < hi; got {self.pixel_range}")
        check_ids(self.y, self.classes, "labels")
        if self.class_names and len(self.class_names) != self.classes:
            raise DataError(f"{len(self.class_names)} class names for {self.classes} classes")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, split={self.split!r}, n={len(self)}, "
                f"input_shape={self.input_shape}, classes={self.classes})")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input: (C, H, W) of an image, (T, d) of embedded tokens."""
        return tuple(int(s) for s in self.x.shape[1:])

    @property
    def bounded(self) -> bool:
        """True when the raw values lie in a finite range (images), False for unbounded inputs."""
        return all(math.isfinite(v) for v in self.pixel_range)

    @property
    def bounds(self) -> tuple[Tensor, Tensor] | None:
        """(lo, hi), each (C, 1, 1) float32: the pixel range mapped into normalised space, or None
        when the pixel range is infinite (unbounded input).

        Attacks clamp to these so a perturbed image stays a valid image:
        lo = (pixel_lo - mean) / std, hi = (pixel_hi - mean) / std. Without normalisation
        (mean = std = ()) lo and hi are scalar tensors.
        """
        if not self.bounded:
            return None
        mean, std = self._stats()
        lo, hi = self.pixel_range
        return (lo - mean) / std, (hi - mean) / std

    def to_pixels(self, x: Tensor) -> Tensor:
        """Undo the normalisation: x (..., C, H, W) -> x * std + mean (x itself without one)."""
        mean, std = self._stats()
        return x * std.to(x) + mean.to(x)

    def from_pixels(self, pixels: Tensor) -> Tensor:
        """Apply the normalisation: pixels (..., C, H, W) -> (pixels - mean) / std."""
        mean, std = self._stats()
        return (pixels - mean.to(pixels)) / std.to(pixels)

    def choose(self, n: int, seed: int) -> Tensor:
        """Indices of ``n`` samples: the first ``n`` of a permutation seeded by ``seed``.

        Every study picks its images this way, so the same (n, seed) means the same images.

        Raises:
            ValueError: n < 1 or more than the data set holds.
        """
        if not 1 <= n <= len(self):
            raise ValueError(f"asked for {n} images but {self.name} ({self.split}) has "
                             f"{len(self)}; choose 1 to {len(self)}")
        return torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]

    def pixel_budget(self, eps: float) -> float | tuple[float, ...]:
        """A budget of ``eps`` in pixel units (a share of the pixel range) in normalised units,
        per channel: eps · (hi − lo) / std_c.

        Without normalisation (mean = std = ()) one number, eps · (hi − lo); for an unbounded
        input (infinite pixel range) ``eps`` itself, already in the input's units.
        """
        if not self.bounded:
            return eps
        scale = self.pixel_range[1] - self.pixel_range[0]
        if not self.std:
            return eps * scale
        return tuple(eps * scale / s for s in self.std)

    def subset(self, index: Sequence[int] | Tensor | slice) -> Dataset:
        """A new Dataset of the selected samples (same normalisation, name and split)."""
        if isinstance(index, slice):
            return replace(self, x=self.x[index], y=self.y[index])
        idx = torch.as_tensor(index, dtype=torch.long)
        return replace(self, x=self.x[idx], y=self.y[idx])

    def _stats(self) -> tuple[Tensor, Tensor]:
        if not self.mean:  # no normalisation: the identity map
            return torch.tensor(0.0), torch.tensor(1.0)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        return mean, std


def channel_stats(pixels: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population standard deviation of (N, C, H, W) pixels.

    A constant channel gets std 1 so normalising it never divides by zero. Computed on one
    thread: the statistics, and so the data's hash in a run's identity, must not depend on
    ``--threads`` (two threads sum in another order and change the last bits).

    Example:
        >>> import torch
        >>> pixels = torch.tensor([[0.0, 5.0], [2.0, 5.0]]).view(2, 2, 1, 1)  # 2 images, 2 channels
        >>> channel_stats(pixels)  # the constant second channel gets std 1
        ((1.0, 5.0), (1.0, 1.0))
    """
    p = pixels.double().transpose(0, 1).reshape(pixels.shape[1], -1)
    with one_thread():
        mean = p.mean(dim=1)
        std = p.std(dim=1, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def normalise(pixels: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """(pixels - mean) / std per channel of (N, C, H, W), as float32.

    Example:
        >>> import torch
        >>> pixels = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64).view(4, 1, 1, 1)
        >>> x = normalise(pixels, (1.5,), (0.5,))
        >>> x.flatten(), x.dtype
        (tensor([-3., -1.,  1.,  3.]), torch.float32)
    """
    m = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    return ((pixels.double() - m) / s).float()


def check_ids(ids: Tensor, n: int, what: str) -> None:
    """Integer ids (labels, token ids) in [0, n).

    Raises:
        DataError: one outside, naming ``what`` and the range found.
    """
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n):
        raise DataError(f"{what} must lie in [0, {n}); got [{int(ids.min())}, {int(ids.max())}]")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
