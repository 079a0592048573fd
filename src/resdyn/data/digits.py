"""scikit-learn's bundled 8x8 handwritten digits: the embedded default data set (no download)."""

from __future__ import annotations

import numpy as np
import torch

from .dataset import Dataset, channel_stats, check_split, normalise

TEST_SIZE = 0.25
RANDOM_STATE = 0


def digits_split() -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) of the fixed stratified split of the 1797 digits images.

    ``train_test_split(test_size=0.25, random_state=0, stratify=labels)``: 1347 train and
    450 test images, every class in the same proportion in both.

    Example:
        >>> import numpy as np
        >>> train, test = digits_split()
        >>> len(train), len(test), len(np.intersect1d(train, test))
        (1347, 450, 0)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    labels = load_digits().target
    idx = np.arange(len(labels))
    train, test = train_test_split(idx, test_size=TEST_SIZE, random_state=RANDOM_STATE,
                                   stratify=labels)
    return np.sort(train), np.sort(test)


def load_digits_data(split: str = "test") -> Dataset:
    """The digits ``split`` as a :class:`Dataset` of shape (N, 1, 8, 8).

    Pixels 0..16 are scaled to [0, 1], then normalised with the mean and (population) std of
    the *train* split, so train has mean 0 and std 1 and test is transformed identically.

    Example:
        >>> train = load_digits_data("train")
        >>> train.x.shape, train.split, train.class_names[:3], abs(float(train.x.mean())) < 1e-6
        (torch.Size([1347, 1, 8, 8]), 'train', ('0', '1', '2'), True)
    """
    from sklearn.datasets import load_digits

    check_split(split)
    bunch = load_digits()
    pixels = torch.from_numpy(bunch.images.astype(np.float64) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    train, test = digits_split()
    mean, std = channel_stats(pixels[torch.from_numpy(train)])
    idx = torch.from_numpy(train if split == "train" else test)
    return Dataset(x=normalise(pixels[idx], mean, std), y=labels[idx], name="digits",
                   split=split, classes=10, mean=mean, std=std,
                   class_names=tuple(str(c) for c in bunch.target_names))
