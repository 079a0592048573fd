"""Data sets: embedded digits, CIFAR-10/MNIST via torchvision, the user's .npz files and folders;
token data for causal language models (the embedded ``induction`` language, .npz/.npy/.txt)."""

from .dataset import DataError, Dataset, DownloadError, UnknownData, channel_stats, normalise
from .digits import digits_split, load_digits_data
from .files import load_image_folder, load_npz
from .specs import check_compatible, data_names, load_data, load_for, load_images
from .tokens import TokenData, baselines, embedded, load_tokens, token_accuracy, token_names
from .torchvision_sets import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    MNIST_MEAN,
    MNIST_STD,
    cache_dir,
    load_cifar10,
    load_mnist,
)

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "MNIST_MEAN", "MNIST_STD", "DataError", "Dataset",
           "DownloadError", "TokenData", "UnknownData", "baselines", "cache_dir", "channel_stats",
           "check_compatible", "data_names", "digits_split", "embedded", "load_cifar10",
           "load_data", "load_digits_data", "load_for", "load_image_folder", "load_images", "load_mnist",
           "load_npz", "load_tokens", "normalise", "token_accuracy", "token_names"]
