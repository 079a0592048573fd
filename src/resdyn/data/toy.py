"""Two-dimensional toy sets of paper 004 (Haber & Ruthotto): the Swiss roll and the peaks.

Points are generated from a fixed seed and live in the one data layer as 1×1 "images" with two
channels, x (N, 2, 1, 1): every network, attack and analysis takes them unchanged, a 1×1
convolution on them is a dense layer, and the channels are the coordinates. Normalised with the
train split's statistics like every data set; the pixel range is the coordinates' range, so an
attack budget ε is a share of it.
"""

from __future__ import annotations

import numpy as np
import torch

from .dataset import Dataset, channel_stats, check_split, normalise

SIZES = {"train": 1000, "test": 500}
SEED = 0


def _swissroll(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals, 1.5 turns each: r = 0.2 + t, θ = 3πt (+π for class 1)."""
    labels = np.arange(n) % 2
    t = rng.uniform(0, 1, n)
    theta = 3 * np.pi * t + np.pi * labels
    r = 0.2 + t
    pts = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    return pts + rng.normal(0, 0.02, pts.shape), labels


def peaks(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """MATLAB's peaks function on [−3, 3]²."""
    return (3 * (1 - x) ** 2 * np.exp(-x ** 2 - (y + 1) ** 2)
            - 10 * (x / 5 - x ** 3 - y ** 5) * np.exp(-x ** 2 - y ** 2)
            - np.exp(-(x + 1) ** 2 - y ** 2) / 3)


PEAK_LEVELS = (-0.3, 0.0, 0.15, 1.3)  # 5 classes of about equal size: level sets of peaks


def _peaks(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    pts = rng.uniform(-3, 3, (n, 2))
    return pts, np.digitize(peaks(pts[:, 0], pts[:, 1]), PEAK_LEVELS)


GENERATORS = {"swissroll": (_swissroll, 2, (-1.5, 1.5)), "peaks": (_peaks, 5, (-3.0, 3.0))}


def load_toy(name: str, split: str = "test") -> Dataset:
    """The toy set ``name`` ("swissroll" or "peaks"): 1000 train / 500 test points, (N, 2, 1, 1).

    Example:
        >>> d = load_toy("swissroll")
        >>> d.x.shape, d.classes, d.input_shape
        (torch.Size([500, 2, 1, 1]), 2, (2, 1, 1))
    """
    check_split(split)
    make, classes, bounds = GENERATORS[name]
    rng = np.random.default_rng(SEED)
    sets = {s: make(SIZES[s], rng) for s in ("train", "test")}  # train first: fixed streams
    pts, labels = sets[split]
    train = torch.from_numpy(sets["train"][0]).reshape(-1, 2, 1, 1)
    mean, std = channel_stats(train)
    x = normalise(torch.from_numpy(pts).reshape(-1, 2, 1, 1), mean, std)
    return Dataset(x=x, y=torch.from_numpy(labels.astype(np.int64)), name=name, split=split,
                   classes=classes, mean=mean, std=std, pixel_range=bounds)
