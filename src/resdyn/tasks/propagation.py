"""How perturbations of one image grow unit by unit: FGSM, PGD and random ones of the same ℓ2
norms, with the growth the linearization predicts. The task of the stability study, which the
stable comparison plans too."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..capture import capture
from ..operators import unit_jacobian
from ..perturb import fgsm, pgd, propagate, random_like
from ..runs import ModelRef, current


def propagation_task(model: ModelRef, input_shape: tuple[int, ...], x: torch.Tensor, label: int,
                     image: int, eps: float | tuple[float, ...], bounds, pgd_steps: int,
                     seed: int) -> pd.DataFrame:
    """Propagated perturbations of one image: FGSM, PGD, and random of the same ℓ2 norms.

    Rows: one per (perturbation, unit) with the normalised magnitudes, the actual growth
    ‖δx_{k+1}‖/‖δx_k‖ and the growth the linearization predicts, ‖J_k δx_k‖/‖δx_k‖ with J_k at the
    clean input of unit k (for regular units equal to sqrt(Σ α_i² σ_i²)/‖δx_k‖ of paper 000, eq. 1).
    """
    run = current()
    net, unit_list = model.load(), model.units(input_shape)
    x, y = run.put(x[None]), run.put(torch.tensor([label]))
    clean = capture(net, x, unit_list)
    attacks = {"fgsm": fgsm(net, x, y, eps, bounds=bounds),
               "pgd": pgd(net, x, y, eps, steps=pgd_steps, bounds=bounds, seed=seed)}
    deltas = {name: a.delta for name, a in attacks.items()}
    for name, a in attacks.items():
        deltas[f"random-{name}"] = random_like(a.delta, seed=seed + 1)
    names = list(deltas)
    perturbed = capture(net, x + torch.cat([deltas[n] for n in names]), unit_list)
    predicted: dict[str, list[float]] = {n: [] for n in names}
    for u in unit_list:
        # one operator per unit, applied to every perturbation's incoming difference at once
        din = (perturbed.inputs[u.name] - clean.inputs[u.name]).to(run.dtype).flatten(1)  # (P, n)
        jv = unit_jacobian(u, clean.inputs[u.name][0], dtype=run.dtype).matmat(din.T)  # (m, P)
        for j, n in enumerate(names):
            nin = float(din[j].norm())
            predicted[n].append(float(jv[:, j].norm()) / nin if nin > 0 else np.nan)
    # all perturbations in one batch: sample j of the propagation is perturbation names[j]
    p = propagate(net, unit_list, x.expand(len(names), *x.shape[1:]),
                  torch.cat([deltas[n] for n in names]))
    table = p.to_frame()
    frames = []
    for j, name in enumerate(names):
        frame = table[table["sample"] == j].drop(columns="sample").reset_index(drop=True)
        frame["predicted_growth"] = predicted[name]
        frame["perturbation"] = name
        frame["image"] = image
        frame["label"] = label
        attack = attacks[name.removeprefix("random-")]
        frame["flipped"] = bool(p.pred_perturbed[j] != p.pred_clean[j])
        frame["delta_l2"] = float(deltas[name].flatten().norm())
        frame["attack_flipped"] = bool(attack.flipped[0])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
