"""The user's own images: a ``.npz`` of arrays or a folder of image files (one folder per class).

Normalisation statistics always come from the training part: the ``train`` arrays/folder when the
file or folder has a split, else all of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .dataset import DataError, Dataset, channel_stats, check_split, normalise

NPZ_LAYOUT = ("arrays x (N, C, H, W) and y (N,), or x_train, y_train, x_test, y_test; "
              "optional mean and std of shape (C,)")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _check_x(path: Path, key: str, x: np.ndarray) -> None:
    if x.dtype == object or not (np.issubdtype(x.dtype, np.integer)
                                 or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"{path}: array {key!r} has dtype {x.dtype}; expected real numbers "
                        "(float or integer pixels). Fix: save it with x.astype(np.float32)")
    if x.ndim != 4:
        hint = " (grayscale images: add the channel axis with x[:, None])" if x.ndim == 3 else ""
        raise DataError(f"{path}: array {key!r} has shape {x.shape} ({x.ndim} dimensions); "
                        f"expected 4 dimensions (N, C, H, W){hint}")
    if x.shape[0] == 0:
        raise DataError(f"{path}: array {key!r} holds no images (shape {x.shape})")
    if not np.isfinite(x).all():
        raise DataError(f"{path}: array {key!r} contains NaN or infinite values")


def _check_y(path: Path, key: str, y: np.ndarray, n: int, xkey: str) -> None:
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: array {key!r} has dtype {y.dtype}; expected integer class "
                        "labels. Fix: save it with y.astype(np.int64)")
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"{path}: array {key!r} has shape {y.shape}; expected ({n},), one "
                        f"label per image of {xkey!r}")
    if y.min() < 0:
        raise DataError(f"{path}: array {key!r} has negative labels (min {y.min()}); "
                        "expected labels 0, 1, ..., classes-1")


def _stat(path: Path, z, key: str, c: int) -> tuple[float, ...] | None:
    if key not in z.files:
        return None
    v = np.asarray(z[key], dtype=np.float64).reshape(-1)
    if v.size == 1:
        v = np.repeat(v, c)
    if v.size != c or not np.isfinite(v).all():
        raise DataError(f"{path}: array {key!r} has {z[key].shape}; expected ({c},), one "
                        "finite value per channel")
    return tuple(float(a) for a in v)


def _not_npz(path: Path, why: str) -> str:
    return (f"{path}: not a valid .npz archive with arrays x and y ({why}). Fix: write it with "
            f"numpy.savez(PATH, x=images, y=labels); layout: {NPZ_LAYOUT}")


def load_npz(path: str | Path, split: str = "test") -> Dataset:
    """Images from a ``.npz`` written by ``numpy.savez``.

    Layout: ``x`` (N, C, H, W) and ``y`` (N,) used for every split, or ``x_train``/``y_train``
    and ``x_test``/``y_test``. Pixels are assumed in [0, 1] unless the file has ``mean`` and
    ``std`` arrays; then x is normalised as (x - mean) / std with the file's values and its
    pixel range is taken as observed. Without them x is normalised with its own per-channel
    mean and population std (of the train arrays when split). ``classes`` = max label + 1, or a
    scalar ``classes`` array in the file.

    Raises:
        DataError: unreadable file, missing arrays, wrong shapes or dtypes, pixels outside
            [0, 1] without mean/std.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> import numpy as np
        >>> path = Path(tempfile.mkdtemp()) / "tiny.npz"
        >>> rng = np.random.default_rng(0)
        >>> np.savez(path, x=rng.random((6, 1, 4, 4)), y=np.array([0, 1, 2, 0, 1, 2]))
        >>> data = load_npz(path)
        >>> len(data), data.input_shape, data.split, data.classes
        (6, (1, 4, 4), 'all', 3)
    """
    check_split(split)
    p = Path(path)
    if p.is_file() and p.stat().st_size == 0:
        raise DataError(_not_npz(p, "the file is empty"))
    try:
        z = np.load(p, allow_pickle=False)
    except OSError as e:
        raise DataError(f"{p}: cannot read the file ({e.strerror or e}); expected a .npz "
                        f"archive with {NPZ_LAYOUT}") from None
    except Exception:  # noqa: BLE001 - text, a corrupt zip, pickles: numpy's message misleads
        raise DataError(_not_npz(p, "not a zip archive of .npy arrays, or a corrupt one")) from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(_not_npz(p, "it holds a single .npy array"))
    with z:
        has_split = "x_train" in z.files
        xkey, ykey = (f"x_{split}", f"y_{split}") if has_split else ("x", "y")
        stat_key = "x_train" if has_split else "x"
        for k in (xkey, ykey, stat_key):
            if k not in z.files:
                raise DataError(f"{p}: no array {k!r}; the file has {sorted(z.files)}; "
                                f"expected {NPZ_LAYOUT}")
        try:
            x, y, xs = z[xkey], z[ykey], z[stat_key]
        except ValueError as e:  # object arrays refuse to load without pickle
            raise DataError(f"{p}: cannot read the arrays ({e}); expected real numbers "
                            f"without pickled objects: {NPZ_LAYOUT}") from None
        except Exception as e:  # noqa: BLE001 - a corrupt member of the zip archive
            raise DataError(_not_npz(p, f"a corrupt archive: {type(e).__name__}")) from None
        _check_x(p, xkey, x)
        _check_x(p, stat_key, xs)
        _check_y(p, ykey, y, x.shape[0], xkey)
        if xs.shape[1:] != x.shape[1:]:
            raise DataError(f"{p}: {xkey!r} images are {x.shape[1:]} but {stat_key!r} images "
                            f"are {xs.shape[1:]}; expected one (C, H, W) for both")
        c = x.shape[1]
        mean, std = _stat(p, z, "mean", c), _stat(p, z, "std", c)
        if (mean is None) != (std is None):
            raise DataError(f"{p}: has only one of 'mean' and 'std'; store both or neither")
        classes = int(z["classes"]) if "classes" in z.files else None
    pixels = torch.from_numpy(x.astype(np.float64))
    if mean is None:
        lo, hi = float(min(x.min(), xs.min())), float(max(x.max(), xs.max()))
        if lo < 0 or hi > 1:
            raise DataError(f"{p}: pixel values lie in [{lo:g}, {hi:g}]; expected [0, 1]. Fix: "
                            "divide uint8 images by 255, or store 'mean' and 'std' arrays "
                            "saying how to normalise x")
        mean, std = channel_stats(torch.from_numpy(xs.astype(np.float64)))
        pixel_range = (0.0, 1.0)
    else:
        if std is None:
            raise DataError(f"{p}: stores 'mean' without 'std'; store both or neither")
        if min(std) <= 0:
            raise DataError(f"{p}: 'std' must be positive; got {std}")
        lo, hi = float(x.min()), float(x.max())
        pixel_range = (min(0.0, lo), max(1.0, hi))
    need = int(y.max()) + 1
    if classes is not None and classes < need:
        raise DataError(f"{p}: 'classes' is {classes} but labels go up to {need - 1}")
    return Dataset(x=normalise(pixels, mean, std), y=torch.from_numpy(y.astype(np.int64)),
                   name=str(path), split=split if has_split else "all",
                   classes=classes or need, mean=mean, std=std, pixel_range=pixel_range)


def _read_images(root: Path, image_size: int | None) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    """(pixels (N, C, H, W) in [0, 1], labels (N,), class names) of an ImageFolder tree."""
    from PIL import Image
    from torchvision.datasets import ImageFolder
    from torchvision.transforms.functional import pil_to_tensor

    try:
        folder = ImageFolder(str(root), allow_empty=False,
                             is_valid_file=lambda f: f.lower().endswith(IMAGE_SUFFIXES))
    except (FileNotFoundError, RuntimeError) as e:
        raise DataError(f"{root}: not an image folder ({e}); expected one sub-folder per class "
                        f"holding image files ({', '.join(IMAGE_SUFFIXES[:4])}, ...), e.g. "
                        f"{root}/cat/001.png") from None
    gray_modes = ("1", "L", "LA", "I", "I;16", "F")
    images = []
    for file, _ in folder.samples:
        with Image.open(file) as opened:
            opened.load()
            images.append((file, opened.copy()))
    gray = all(image.mode in gray_modes for _, image in images)
    tensors = []
    for file, original in images:
        im: Image.Image = original.convert("L" if gray else "RGB")
        if image_size is not None:
            im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
        elif im.size != images[0][1].size:
            raise DataError(f"{root}: images differ in size: {images[0][0]} is "
                            f"{images[0][1].size[0]}x{images[0][1].size[1]} but {file} is "
                            f"{im.size[0]}x{im.size[1]} (width x height). Fix: pass "
                            "image_size=S to resize every image to S x S")
        tensors.append(pil_to_tensor(im).double() / 255.0)
    labels = torch.tensor([t for _, t in folder.samples], dtype=torch.int64)
    return torch.stack(tensors), labels, tuple(folder.classes)


def load_image_folder(path: str | Path, split: str = "test", image_size: int | None = None,
                      ) -> Dataset:
    """Images from a folder laid out as torchvision's ImageFolder: ``path/CLASS/IMAGE``.

    If ``path`` has ``train`` and ``test`` sub-folders, ``split`` picks one (normalisation from
    ``train``); otherwise the whole folder is the data for every split. Images are converted to
    grayscale (1 channel) when all of them are grayscale, else to RGB; pixels scale to [0, 1]
    and are normalised with per-channel mean and population std. All images must share one size
    unless ``image_size`` resizes them to image_size x image_size (bilinear).

    Raises:
        DataError: no class folders or images, or images of different sizes.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> root = Path(tempfile.mkdtemp())
        >>> for name, shade in (("dark", 30), ("light", 220)):  # two 5x5 gray images per class
        ...     (root / name).mkdir()
        ...     for i in range(2):
        ...         Image.new("L", (5, 5), shade + i).save(root / name / f"{i}.png")
        >>> images = load_image_folder(root)
        >>> images.x.shape, images.class_names, images.y.tolist(), images.split
        (torch.Size([4, 1, 5, 5]), ('dark', 'light'), [0, 0, 1, 1], 'all')
    """
    check_split(split)
    if image_size is not None and image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels; got {image_size}")
    root = Path(path)
    has_split = (root / "train").is_dir() and (root / "test").is_dir()
    pixels, labels, names = _read_images(root / split if has_split else root, image_size)
    if has_split and split != "train":
        train_pixels, _, train_names = _read_images(root / "train", image_size)
        if train_names != names:
            raise DataError(f"{root}: train classes {list(train_names)} differ from {split} "
                            f"classes {list(names)}; expected the same class folders in both")
        if train_pixels.shape[1:] != pixels.shape[1:]:
            raise DataError(f"{root}: train images are {tuple(train_pixels.shape[1:])} but "
                            f"{split} images are {tuple(pixels.shape[1:])}; pass image_size=S")
    else:
        train_pixels = pixels
    mean, std = channel_stats(train_pixels)
    return Dataset(x=normalise(pixels, mean, std), y=labels, name=str(path),
                   split=split if has_split else "all", classes=len(names), mean=mean, std=std,
                   class_names=names)
