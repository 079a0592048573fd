"""Shared test fixtures."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from resdyn._torch import one_thread


def reference_jacobian(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """dF/dx of module on a float64 eval copy by torch.autograd.functional.jacobian, on the CPU:
    the independent reference the engine's operators are tested against."""
    ref = copy.deepcopy(module).cpu().double().eval()
    shape = (1, *x.shape[-3:])
    return torch.autograd.functional.jacobian(
        lambda t: ref(t.reshape(shape)).reshape(-1), x.detach().cpu().double().reshape(-1),
        vectorize=True)


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread while a module's tests run, restored afterwards.

    The engine tests run many small products; on a busy 2-core machine OpenMP threads spin against
    each other and make them 10-30x slower (measured), while one thread is never much slower.
    """
    with one_thread():
        yield


def assert_figure(path, min_size: tuple[int, int] = (200, 150), colours: int = 3) -> None:
    """``path`` is a PNG image of at least ``min_size`` (width, height) pixels that draws
    something: not blank, at least ``colours`` distinct colours (axes, labels, data)."""
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(path)  # (H, W, 3|4) floats in [0, 1]
    assert img.ndim == 3 and img.shape[2] in (3, 4), (path, img.shape)
    height, width = img.shape[:2]
    assert width >= min_size[0] and height >= min_size[1], (path, width, height)
    rgb = np.round(img[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    distinct = len(np.unique(rgb, axis=0))
    assert distinct >= colours, (path, distinct)
    background = np.bincount(np.ravel_multi_index(rgb.T, (256, 256, 256))).max() / len(rgb)
    assert background < 0.99, (path, f"{background:.1%} of the pixels are one colour")


_LAYOUT = str.maketrans("", "", " \t\n│╭╮╰╯─")


def says(output: str, phrase: str) -> bool:
    """``phrase`` is in ``output`` however Rich laid it out: an error panel wraps at the
    terminal's width, and where a temporary path's length puts the break moves from machine to
    machine, so spaces, line breaks and the panel's frame are ignored on both sides."""
    return phrase.translate(_LAYOUT) in output.translate(_LAYOUT)


#: Tables of another machine (or device) differ in the last bits of their numbers: each column
#: is compared within its precision (resdyn.runs.compare.table_differences).
GRAM = 1e-7  # float64 spectra from a Gram matrix resolve σ to √ε·σ_max ≈ 1.5e-8·σ_max
FLOAT32 = 1e-5  # the network's forward pass is float32 (ε ≈ 6e-8), differences amplify it
ACROSS_MACHINES = {
    **dict.fromkeys(["values", "sigma_max", "inverse_condition", "max_abs", "mean_abs",
                     "relative", "sigma", "plateau_position", "plateau_window_share",
                     "share_near_alpha", "plateau_share", "resolution", "max_real", "min_real",
                     "stiffness_ratio", "stiffness_signed", "spectral_radius", "values_re",
                     "values_im"], GRAM),
    **dict.fromkeys(["in_norm", "out_norm", "growth", "predicted_growth", "delta_norm",
                     "delta_l2", "alpha", "abs", "scaled", "loss"], FLOAT32),
}


def across_machines(table):
    """σ_min/σ_max instead of the condition number: its error is ε-sized, while the condition
    number's grows as ε·cond² where the block is ill-conditioned."""
    if "condition" not in table:
        return table
    return table.assign(condition=1 / table["condition"]).rename(
        columns={"condition": "inverse_condition"})


def pytest_collection_modifyitems(config, items):
    """``RESDYN_TEST_ORDER=reverse`` runs the tests last to first (CI does), so a test that
    passes only after another has run fails there instead of on a user's machine."""
    import os

    if os.environ.get("RESDYN_TEST_ORDER") == "reverse":
        items.reverse()


def refuse_paths(root: str) -> None:
    """From now on, opening any path under ``root`` in this process raises PermissionError:
    run on a Dask worker (``client.run``), it makes a worker that cannot see the run folder."""
    import os
    import sys

    def hook(event, args):
        if event == "open" and isinstance(args[0], str | bytes | os.PathLike):
            path = os.path.abspath(os.fsdecode(args[0]))
            if path == root or path.startswith(root + os.sep):
                raise PermissionError(f"this worker cannot see {root}")

    sys.addaudithook(hook)
