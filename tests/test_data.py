"""Data specs: digits split and normalisation, .npz files, image folders, torchvision sets."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from resdyn.data import (
    MNIST_MEAN,
    MNIST_STD,
    DataError,
    Dataset,
    DownloadError,
    UnknownData,
    cache_dir,
    check_compatible,
    data_names,
    digits_split,
    load_data,
)
from resdyn.models import cifar_resnet, load_model


@pytest.fixture(scope="module")
def digits_train() -> Dataset:
    return load_data("digits", split="train")


@pytest.fixture(scope="module")
def digits_test() -> Dataset:
    return load_data("digits", split="test")


# --- digits -------------------------------------------------------------------------------

def test_digits_split_is_fixed_disjoint_and_complete():
    train, test = digits_split()
    again_train, again_test = digits_split()
    assert (len(train), len(test)) == (1347, 450)
    assert np.array_equal(train, again_train) and np.array_equal(test, again_test)
    assert not set(train) & set(test)
    assert sorted(set(train) | set(test)) == list(range(1797))


def test_digits_split_is_stratified():
    labels = load_digits().target
    train, test = digits_split()
    total = np.bincount(labels, minlength=10)
    # every class keeps its share: within one image of 25 % in test
    assert np.all(np.abs(np.bincount(labels[test], minlength=10) - 0.25 * total) <= 1)
    assert np.array_equal(np.bincount(labels[train], minlength=10)
                          + np.bincount(labels[test], minlength=10), total)


def test_digits_normalised_with_train_statistics(digits_train, digits_test):
    train_idx, test_idx = digits_split()
    images = load_digits().images / 16.0
    mean, std = images[train_idx].mean(), images[train_idx].std()
    assert digits_train.mean == pytest.approx((mean,), abs=1e-12)
    assert digits_train.std == pytest.approx((std,), abs=1e-12)
    assert digits_test.mean == digits_train.mean and digits_test.std == digits_train.std
    assert float(digits_train.x.double().mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(digits_train.x.double().std(unbiased=False)) == pytest.approx(1.0, abs=1e-6)
    expected = torch.from_numpy((images[test_idx] - mean) / std).float().unsqueeze(1)
    torch.testing.assert_close(digits_test.x, expected)
    assert torch.equal(digits_test.y, torch.from_numpy(load_digits().target[test_idx]))
    assert digits_test.x.shape == (450, 1, 8, 8) and digits_test.x.dtype == torch.float32
    assert digits_test.y.dtype == torch.int64 and digits_test.classes == 10
    assert digits_test.input_shape == (1, 8, 8)


def test_bounds_are_pixel_range_in_normalised_space(digits_train):
    lo, hi = digits_train.bounds
    m, s = digits_train.mean[0], digits_train.std[0]
    assert lo.shape == hi.shape == (1, 1, 1)
    assert float(lo) == pytest.approx(-m / s, rel=1e-6)
    assert float(hi) == pytest.approx((1 - m) / s, rel=1e-6)
    # digits contain both blank (0) and full (16) pixels
    assert float(digits_train.x.min()) == pytest.approx(float(lo), abs=1e-5)
    assert float(digits_train.x.max()) == pytest.approx(float(hi), abs=1e-5)
    torch.testing.assert_close(digits_train.from_pixels(digits_train.to_pixels(digits_train.x)),
                               digits_train.x)


def test_subset_and_bad_split(digits_test):
    sub = digits_test.subset([0, 2])
    assert len(sub) == 2 and torch.equal(sub.x[1], digits_test.x[2])
    assert sub.mean == digits_test.mean and sub.split == "test"
    with pytest.raises(ValueError, match="'train', 'test'.*'val'"):
        load_data("digits", split="val")


def test_dataset_checks_its_arrays():
    with pytest.raises(DataError, match=r"y must be a \(2,\) int64"):
        Dataset(torch.zeros(2, 1, 2, 2), torch.zeros(2), "t", "all", 2, (0.0,), (1.0,))
    with pytest.raises(DataError, match=r"labels must lie in \[0, 2\)"):
        Dataset(torch.zeros(2, 1, 2, 2), torch.tensor([0, 5]), "t", "all", 2, (0.0,), (1.0,))


def test_unknown_spec_lists_valid_names():
    with pytest.raises(UnknownData) as e:
        load_data("imagenet-mini")
    msg = str(e.value)
    assert "'imagenet-mini'" in msg
    for name, _ in data_names():
        assert name in msg
    assert [n for n, _ in data_names()] == ["digits", "cifar10", "mnist", "swissroll", "peaks",
                                            "induction", "PATH.npz", "PATH.npy", "PATH.txt",
                                            "FOLDER"]


# --- .npz ---------------------------------------------------------------------------------

def test_npz_normalised_with_own_statistics(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (6, 2, 3, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    np.savez(tmp_path / "d.npz", x=x, y=y)
    d = load_data(tmp_path / "d.npz")
    mean, std = x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))
    assert d.mean == pytest.approx(tuple(mean), rel=1e-6)
    assert d.std == pytest.approx(tuple(std), rel=1e-6)
    expected = (x - mean[None, :, None, None]) / std[None, :, None, None]
    np.testing.assert_allclose(d.x.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert d.classes == 3 and d.split == "all" and d.input_shape == (2, 3, 3)


def test_npz_with_mean_std_and_splits(tmp_path):
    x_train = np.full((4, 1, 2, 2), 200, dtype=np.uint8)
    x_test = np.full((2, 1, 2, 2), 100, dtype=np.uint8)
    np.savez(tmp_path / "s.npz", x_train=x_train, y_train=np.array([0, 1, 0, 1]),
             x_test=x_test, y_test=np.array([1, 1]), mean=np.array([100.0]),
             std=np.array([50.0]), classes=np.array(4))
    train = load_data(tmp_path / "s.npz", split="train")
    test = load_data(str(tmp_path / "s.npz"), split="test")
    assert torch.equal(train.x, torch.full((4, 1, 2, 2), 2.0))
    assert torch.equal(test.x, torch.zeros(2, 1, 2, 2))
    assert test.classes == 4 and test.split == "test" and test.mean == (100.0,)
    assert torch.equal(test.y, torch.tensor([1, 1]))


@pytest.mark.parametrize("arrays, pattern", [
    ({"x": np.zeros((5, 8, 8)), "y": np.zeros(5, int)},
     r"shape \(5, 8, 8\) \(3 dimensions\); expected 4 dimensions \(N, C, H, W\).*x\[:, None\]"),
    ({"x": np.zeros((5, 1, 8, 8)), "y": np.zeros(4, int)},
     r"'y' has shape \(4,\); expected \(5,\), one label per image"),
    ({"x": np.full((2, 1, 2, 2), "a"), "y": np.zeros(2, int)},
     r"'x' has dtype <U1; expected real numbers"),
    ({"x": np.zeros((2, 1, 2, 2)), "y": np.array([0.0, 1.0])},
     r"'y' has dtype float64; expected integer class labels"),
    ({"x": np.full((2, 1, 2, 2), 255.0), "y": np.zeros(2, int)},
     r"pixel values lie in \[255, 255\]; expected \[0, 1\]\. Fix: divide"),
    ({"images": np.zeros((2, 1, 2, 2)), "y": np.zeros(2, int)},
     r"no array 'x'; the file has \['images', 'y'\]"),
])
def test_bad_npz_files_say_what_was_expected(tmp_path, arrays, pattern):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=pattern):
        load_data(tmp_path / "bad.npz")


def test_npz_object_array_and_missing_file(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([None, 1], dtype=object), y=np.zeros(2, int))
    with pytest.raises(DataError, match="without pickled objects"):
        load_data(tmp_path / "obj.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a valid .npz archive with arrays x and y"):
        load_data(tmp_path / "junk.npz")
    with pytest.raises(DataError, match="does not exist"):
        load_data(tmp_path / "missing.npz")


# --- image folders --------------------------------------------------------------------------

def _write_images(root: Path, mode: str, size: tuple[int, int], values: dict[str, list[int]]):
    for cls, vals in values.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i, v in enumerate(vals):
            Image.new(mode, size, v if mode == "L" else (v, v, 0)).save(root / cls / f"{i}.png")


def test_image_folder_grayscale(tmp_path):
    _write_images(tmp_path, "L", (4, 3), {"cat": [0, 255], "dog": [51, 51, 102]})
    d = load_data(tmp_path)
    assert d.x.shape == (5, 1, 3, 4) and d.class_names == ("cat", "dog")
    assert torch.equal(d.y, torch.tensor([0, 0, 1, 1, 1]))
    pixels = np.array([0, 255, 51, 51, 102]) / 255.0
    assert d.mean == pytest.approx((pixels.mean(),)) and d.std == pytest.approx((pixels.std(),))
    expected = (pixels - pixels.mean()) / pixels.std()
    np.testing.assert_allclose(d.x[:, 0, 0, 0].numpy(), expected, rtol=1e-5)


def test_image_folder_rgb_resize_and_size_mismatch(tmp_path):
    _write_images(tmp_path / "a", "RGB", (4, 4), {"x": [10], "y": [20]})
    _write_images(tmp_path / "b", "RGB", (2, 2), {"y": [30]})
    d = load_data(tmp_path / "a")
    assert d.x.shape == (2, 3, 4, 4) and d.std[2] == 1.0  # blue is constant 0: std 1, no NaN
    (tmp_path / "a" / "y" / "big.png").write_bytes((tmp_path / "b" / "y" / "0.png").read_bytes())
    with pytest.raises(DataError, match=r"differ in size.*is 4x4 but .*big.png is 2x2.*image_size"):
        load_data(tmp_path / "a")
    assert load_data(tmp_path / "a", image_size=3).x.shape == (3, 3, 3, 3)


def test_image_folder_with_train_test_and_empty(tmp_path):
    _write_images(tmp_path / "train", "L", (2, 2), {"a": [0], "b": [255]})
    _write_images(tmp_path / "test", "L", (2, 2), {"a": [0, 0], "b": [255]})
    test = load_data(tmp_path, split="test")
    assert test.split == "test" and len(test) == 3
    assert test.mean == (0.5,) and test.std == (0.5,)  # statistics of train
    torch.testing.assert_close(test.x[:, 0, 0, 0], torch.tensor([-1.0, -1.0, 1.0]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not an image folder.*one sub-folder per class"):
        load_data(tmp_path / "empty")


# --- torchvision sets -------------------------------------------------------------------------

def _idx(path: Path, arr: np.ndarray) -> None:
    code = 0x08  # unsigned byte
    header = struct.pack(">I", (code << 8) | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def test_mnist_from_local_idx_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    images = {"train": rng.integers(0, 256, (5, 28, 28)), "t10k": rng.integers(0, 256, (3, 28, 28))}
    labels = {"train": np.array([0, 1, 2, 3, 4]), "t10k": np.array([9, 8, 7])}
    for part in ("train", "t10k"):
        _idx(raw / f"{part}-images-idx3-ubyte", images[part])
        _idx(raw / f"{part}-labels-idx1-ubyte", labels[part])
    test = load_data("mnist", root=tmp_path)
    assert test.x.shape == (3, 1, 28, 28) and test.mean == MNIST_MEAN and test.std == MNIST_STD
    assert torch.equal(test.y, torch.tensor([9, 8, 7]))
    expected = (images["t10k"][:, None] / 255.0 - 0.1307) / 0.3081
    np.testing.assert_allclose(test.x.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert len(load_data("mnist", root=tmp_path, split="train")) == 5


@pytest.fixture
def offline(monkeypatch):
    """No name resolution, as on a machine without network (and no real download if online)."""
    def refuse(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.mark.parametrize("name, expected", [
    ("cifar10", "cifar-10-batches-py"), ("mnist", "MNIST/raw"),
])
def test_offline_download_error(tmp_path, offline, name, expected):
    start = time.perf_counter()
    with pytest.raises(DownloadError) as e:
        load_data(name, root=tmp_path / "cache")
    msg = str(e.value)
    assert time.perf_counter() - start < 10
    assert f"{name} is not in {tmp_path / 'cache'} and downloading it failed" in msg
    assert f"{tmp_path / 'cache'}/{expected}" in msg
    assert "offline" in msg and ".npz" in msg and "RESDYN_DATA" in msg


def test_cache_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("RESDYN_DATA", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("RESDYN_DATA")
    assert cache_dir() == Path.home() / ".cache" / "resdyn" / "data"


# --- model compatibility ------------------------------------------------------------------------

def test_shape_mismatch_names_both_shapes(digits_test):
    model = load_model("cifar-resnet20")  # 3 channels, (3, 32, 32)
    with pytest.raises(DataError) as e:
        check_compatible(model, digits_test)
    msg = str(e.value)
    assert "input shape (1, 8, 8)" in msg and "expects input shape (3, 32, 32)" in msg
    assert "in_channels=1" in msg
    assert model.training is False


def test_class_count_mismatch_and_fit(digits_test):
    with pytest.raises(DataError, match=r"labels up to 9 but .* has 5 outputs.*out of its range"):
        check_compatible(cifar_resnet(8, in_channels=1, num_classes=5), digits_test)
    # labels the model can predict, but more classes declared than it has outputs
    declared = digits_test.subset(torch.nonzero(digits_test.y < 5).flatten())
    with pytest.raises(DataError, match=r"declares 10 classes but .* has 5 outputs"):
        check_compatible(cifar_resnet(8, in_channels=1, num_classes=5), declared)
    plain = cifar_resnet(8, in_channels=1).train()
    assert check_compatible(plain, digits_test) is None and plain.training is True


def _npz(tmp_path, shape, classes=10):
    rng = np.random.default_rng(0)
    path = tmp_path / f"x{'x'.join(map(str, shape))}.npz"
    np.savez(path, x=rng.uniform(0, 1, (20, *shape)).astype(np.float32),
             y=np.arange(20) % classes)
    return load_data(path)


@pytest.mark.parametrize("spec", ["digits-resnet20", "digits-resnet56", "digits-resnet110"])
def test_other_size_than_trained_is_refused(tmp_path, spec):
    """16x16 images run through an 8x8-trained digits net (global pooling): refused unless asked."""
    model = load_model(spec).train()
    data = _npz(tmp_path, (1, 16, 16))
    with pytest.raises(DataError) as e:
        check_compatible(model, data)
    msg = str(e.value)
    assert "input shape (1, 16, 16)" in msg and "trained on (1, 8, 8)" in msg
    assert "any_input_size=True" in msg and "--any-input-size" in msg and "8x8" in msg
    assert check_compatible(model, data, any_input_size=True) is None
    assert model.training  # train/eval state restored
    assert check_compatible(model.eval(), load_data("digits")) is None


def test_any_input_size_does_not_excuse_other_channels(tmp_path):
    data = _npz(tmp_path, (3, 8, 8))
    for flag in (False, True):
        with pytest.raises(DataError, match=r"\(3, 8, 8\).*trained on images of shape \(1, 8, 8\) "
                                            r"\(1 channel"):
            check_compatible(load_model("digits-resnet20"), data, any_input_size=flag)


def test_untrained_models_take_any_size(tmp_path):
    """A randomly initialised zoo model records no trained shape: any size its layers take."""
    model = load_model("cifar-resnet20", in_channels=1)
    assert check_compatible(model, _npz(tmp_path, (1, 16, 16))) is None
    assert check_compatible(model, load_data("digits")) is None


def test_statistics_and_identity_do_not_depend_on_the_thread_count():
    """The digits std differs in its last bits between one and two threads of a torch sum; the
    data's statistics and hash (part of every run's identity) must not."""
    from resdyn.runs.identity import data_digest

    before = torch.get_num_threads()
    seen = set()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            data = load_data("digits")
            seen.add((data.mean, data.std, data_digest(data)))
    finally:
        torch.set_num_threads(before)
    assert len(seen) == 1
