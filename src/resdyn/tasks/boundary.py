"""Decision boundaries of a network on 2-D points: the predicted class on a grid over the data's
range, and the test points. A task of the stable comparison (paper 004)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..data import load_images
from ..runs import ModelRef, current


def boundary_task(model: ModelRef, data: str, resolution: int) -> pd.DataFrame:
    """Predicted class on a grid over the data's range, and the test points (raw coordinates)."""
    ds = load_images(data, split="test")
    lo, hi = ds.pixel_range
    g = np.linspace(lo, hi, resolution)
    gx, gy = np.meshgrid(g, g)
    pts = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float32)
    with torch.no_grad():
        grid = current().put(ds.from_pixels(pts.reshape(-1, 2, 1, 1)))
        pred = model.load()(grid).argmax(1).cpu().numpy()
    raw = ds.to_pixels(ds.x).reshape(-1, 2).numpy()
    return pd.concat([pd.DataFrame({"kind": "grid", "x": gx.ravel(), "y": gy.ravel(),
                                    "cls": pred}),
                      pd.DataFrame({"kind": "point", "x": raw[:, 0], "y": raw[:, 1],
                                    "cls": ds.y.numpy()})], ignore_index=True)
