"""How an FGSM perturbation entering a unit projects onto the unit's right singular vectors:
α_i = ⟨δx_k, v_i⟩ against σ_i (paper 000, Fig. 4). A task of the stability study."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..capture import capture
from ..operators import unit_jacobian
from ..perturb import fgsm
from ..runs import ModelRef, current


def projection_task(model: ModelRef, input_shape: tuple[int, ...], unit: str, x: torch.Tensor,
                    label: int, image: int, eps: float | tuple[float, ...], bounds) -> pd.DataFrame:
    """α_i = ⟨δx_k, v_i⟩ of the FGSM perturbation entering ``unit`` against σ_i (paper 000, Fig. 4)."""
    run = current()
    net = model.load()
    u = next(u for u in model.units(input_shape) if u.name == unit)
    x, y = run.put(x[None]), run.put(torch.tensor([label]))
    delta = fgsm(net, x, y, eps, bounds=bounds).delta
    x_in = capture(net, torch.cat([x, x + delta]), [u]).inputs[unit]
    # the products in the run's precision, the SVD in float64 (as every dense solve)
    dense = unit_jacobian(u, x_in[0], dtype=run.dtype).dense().double()
    _, s, vh = torch.linalg.svd(dense, full_matrices=False)
    d = (x_in[1] - x_in[0]).double().reshape(-1)
    return pd.DataFrame({"image": image, "unit": unit, "index": np.arange(len(s)),
                         "sigma": s.cpu().numpy(), "alpha": (vh @ d).cpu().numpy(),
                         "delta_norm": float(d.norm())})
