"""Stability study of paper 000: unit/stage spectra across images, perturbation propagation,
skip scaling and weight interpolation, as independent tasks -> tidy tables -> figures -> summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..data import Dataset
from ..models import Unit, stage_name, stages, units
from ..models.interventions import interpolate_weights
from ..operators import unit_jacobian
from ..perturb import fgsm, pgd, propagate, random_like
from ..runs import Task, TaskStore, run_tasks, write_parquet
from ..runs.executor import Progress
from .spectra import spectrum_task


@dataclass(frozen=True)
class StabilityConfig:
    """What the study computes.

    Attributes:
        images: how many test images (the first ``images`` of a seeded permutation).
        seed: drives image choice, random perturbations, PGD start and interpolation noise.
        method, k: spectrum method and count for units and stages (see ``singular_values``);
            with "slq" (densities, no values) skip scaling and interpolation use "auto".
        eps: FGSM/PGD budget in pixel units (the data's pixel range, normally [0, 1]); converted
            per channel to the model's normalised input space as eps / std_c.
        pgd_steps: PGD iterations (ℓ∞, random start).
        alphas: skip-connection scales for the skip-scaling experiment.
        ts: interpolation parameters t of θ̂(t) = tθ + (1 − t)η.
        unit: the unit of the skip-scaling and interpolation experiments (default: the 5th unit of
            the first stage, or its last if shorter).
        projection_units: units whose right singular vectors the adversarial perturbation is
            projected on (default: four units spread over the last stage, ending at its last).
    """

    images: int = 5
    seed: int = 0
    method: str = "auto"
    k: int | None = None
    eps: float = 0.1
    pgd_steps: int = 10
    alphas: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0)
    ts: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    unit: str | None = None
    projection_units: tuple[str, ...] | None = None
    stage_spectra: bool = True

    def __post_init__(self) -> None:
        if self.images < 2:
            raise ValueError(f"the stability study compares images: need images >= 2; got {self.images}")
        if self.eps <= 0:
            raise ValueError(f"eps must be positive (pixel units); got {self.eps}")
        if any(not 0.0 <= t <= 1.0 for t in self.ts):
            raise ValueError(f"interpolation t must lie in [0, 1]; got {self.ts}")


def fifth_unit(stage: Sequence[Unit]) -> Unit:
    """The paper's representative unit: the 5th of a stage (or its last, if shorter)."""
    return stage[min(4, len(stage) - 1)]


def default_projection_units(unit_list: Sequence[Unit]) -> tuple[str, ...]:
    """Up to four units of the last stage, every other one, ending at its last (paper: 12-18 of 18)."""
    last = [u for u in stages(unit_list)[-1] if u.kind == "regular"] or stages(unit_list)[-1]
    picks = sorted({len(last) - 1 - 2 * j for j in range(4) if len(last) - 1 - 2 * j >= 0})
    return tuple(last[i].name for i in picks)


def choose_images(data: Dataset, n: int, seed: int) -> np.ndarray:
    """Indices of the study's images: the first ``n`` of a seeded permutation of the data."""
    if n > len(data.y):
        raise ValueError(f"asked for {n} images but {data.name} ({data.split}) has {len(data.y)}")
    return torch.randperm(len(data.y), generator=torch.Generator().manual_seed(seed))[:n].numpy()


# ---------------------------------------------------------------- tasks (plain functions)

def _eps_vector(data: Dataset, eps: float) -> tuple[float, ...]:
    scale = data.pixel_range[1] - data.pixel_range[0]
    return tuple(eps * scale / s for s in data.std)


def propagation_task(model: nn.Module, unit_list: Sequence[Unit], x: torch.Tensor, y: torch.Tensor,
                     image: int, eps: tuple[float, ...], bounds, pgd_steps: int, seed: int,
                     ) -> pd.DataFrame:
    """Propagated perturbations of one image: FGSM, PGD, and random of the same ℓ2 norms.

    Rows: one per (perturbation, unit) with the normalised magnitudes, the actual growth
    ‖δx_{k+1}‖/‖δx_k‖ and the growth the linearization predicts, ‖J_k δx_k‖/‖δx_k‖ with J_k at the
    clean input of unit k (for regular units equal to sqrt(Σ α_i² σ_i²)/‖δx_k‖ of paper 000, eq. 1).
    """
    from ..capture import capture

    x, y = x[None], y.reshape(1)
    clean = capture(model, x, unit_list)
    attacks = {"fgsm": fgsm(model, x, y, eps, bounds=bounds),
               "pgd": pgd(model, x, y, eps, steps=pgd_steps, bounds=bounds, seed=seed)}
    deltas = {name: a.delta for name, a in attacks.items()}
    for name, a in attacks.items():
        deltas[f"random-{name}"] = random_like(a.delta, seed=seed + 1)
    names = list(deltas)
    perturbed = capture(model, x + torch.cat([deltas[n] for n in names]), unit_list)
    predicted = {n: [] for n in names}
    for u in unit_list:
        # one operator per unit, applied to every perturbation's incoming difference at once
        din = (perturbed.inputs[u.name] - clean.inputs[u.name]).double().flatten(1)  # (P, n)
        jv = unit_jacobian(u, clean.inputs[u.name][0]).matmat(din.T)  # (m, P)
        for j, n in enumerate(names):
            nin = float(din[j].norm())
            predicted[n].append(float(jv[:, j].norm()) / nin if nin > 0 else np.nan)
    # all perturbations in one batch: sample j of the propagation is perturbation names[j]
    p = propagate(model, unit_list, x.expand(len(names), *x.shape[1:]),
                  torch.cat([deltas[n] for n in names]))
    table = p.to_frame()
    frames = []
    for j, name in enumerate(names):
        frame = table[table["sample"] == j].drop(columns="sample").reset_index(drop=True)
        frame["predicted_growth"] = predicted[name]
        frame["perturbation"] = name
        frame["image"] = image
        frame["label"] = int(y)
        attack = attacks[name.removeprefix("random-")]
        frame["flipped"] = bool(p.pred_perturbed[j] != p.pred_clean[j])
        frame["delta_l2"] = float(deltas[name].flatten().norm())
        frame["attack_flipped"] = bool(attack.flipped[0])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def projection_task(model: nn.Module, unit: Unit, unit_list: Sequence[Unit], x: torch.Tensor,
                    y: torch.Tensor, image: int, eps: tuple[float, ...], bounds) -> pd.DataFrame:
    """α_i = ⟨δx_k, v_i⟩ of the FGSM perturbation entering ``unit`` against σ_i (paper 000, Fig. 4)."""
    from ..capture import capture

    x, y = x[None], y.reshape(1)
    delta = fgsm(model, x, y, eps, bounds=bounds).delta
    both = capture(model, torch.cat([x, x + delta]), [unit])
    x_in = both.inputs[unit.name]
    J = unit_jacobian(unit, x_in[0]).dense()
    _, s, vh = torch.linalg.svd(J, full_matrices=False)
    d = (x_in[1] - x_in[0]).double().reshape(-1)
    alpha = vh @ d
    return pd.DataFrame({"image": image, "unit": unit.name, "index": np.arange(len(s)),
                         "sigma": s.numpy(), "alpha": alpha.numpy(),
                         "delta_norm": float(d.norm())})


def skip_task(unit: Unit, x_in: torch.Tensor, alpha: float, image: int, method: str,
              k: int | None) -> pd.DataFrame:
    """Spectrum of ``unit`` with its shortcut scaled by α (paper 000, Fig. 5 left)."""
    from ..spectra import singular_values

    res = singular_values(unit_jacobian(unit, x_in, alpha=alpha), k=k, method=method)
    v = np.asarray(res.values, dtype=np.float64)
    pos, share = plateau(v)
    return pd.DataFrame([{"image": image, "unit": unit.name, "alpha": alpha, "values": v.tolist(),
                          "plateau_position": pos, "plateau_window_share": share,
                          "share_near_alpha": float(np.mean(np.abs(v - alpha) <= 0.01)),
                          "method": res.method, "converged": bool(res.converged)}])


def interpolation_task(model: nn.Module, unit_name: str, input_shape: Sequence[int],
                       x: torch.Tensor, t: float, image: int, seed: int, method: str,
                       k: int | None) -> pd.DataFrame:
    """Spectrum of one unit after θ̂(t) = tθ + (1 − t)η (paper 000, eq. 3 and Fig. 5 right)."""
    from ..capture import capture
    from ..metrics import singular_summary
    from ..spectra import singular_values

    mixed = interpolate_weights(model, [unit_name], t, seed=seed)
    unit = next(u for u in units(mixed, input_shape) if u.name == unit_name)
    x_in = capture(mixed, x[None], [unit]).inputs[unit.name][0]
    res = singular_values(unit_jacobian(unit, x_in), k=k, method=method)
    v = np.asarray(res.values, dtype=np.float64)
    bins = singular_summary(v)
    pos, share = plateau(v)
    return pd.DataFrame([{"image": image, "unit": unit_name, "t": t, "values": v.tolist(),
                          "plateau_share": bins.share_plateau, "plateau_position": pos,
                          "plateau_window_share": share, "sigma_max": float(v.max()),
                          "method": res.method, "converged": bool(res.converged)}])


def plateau(values: np.ndarray, width: float = 0.02) -> tuple[float, float]:
    """Position and share of the densest window of singular values.

    The plateau of a scree plot is where the values bunch: the window [a, a + width] holding the
    most values (zeros excluded). Returns (median of the values in it, their share of all values).
    """
    v = np.sort(np.asarray(values, dtype=np.float64))
    v = v[v > 1e-6 * max(1.0, float(v.max(initial=0.0)))]
    if v.size == 0:
        return float("nan"), 0.0
    ends = np.searchsorted(v, v + width, side="right")
    i = int(np.argmax(ends - np.arange(v.size)))
    window = v[i:ends[i]]
    return float(np.median(window)), float(window.size / len(values))


# ---------------------------------------------------------------- the study

@dataclass(frozen=True)
class StabilityResult:
    """Where the study wrote its outputs (tables, figures, summary.md, report.html), and its tables."""

    out: Path
    tables: dict[str, pd.DataFrame] = field(repr=False)
    figures: dict[str, Path]
    summary: Path
    tasks_run: int


def stability_tasks(model: nn.Module, data: Dataset, config: StabilityConfig,
                    model_name: str) -> tuple[list[Task], dict[str, object]]:
    """The study as independent tasks (image x unit x analysis), plus what the report needs."""
    from ..capture import capture

    unit_list = units(model, data.input_shape)
    groups = stages(unit_list)
    idx = choose_images(data, config.images, config.seed)
    x, y = data.x[idx], data.y[idx]
    eps = _eps_vector(data, config.eps)
    bounds = data.bounds
    acts = capture(model, x, unit_list)
    by_name = {u.name: u for u in unit_list}
    if config.unit and config.unit not in by_name:
        raise ValueError(f"unknown unit {config.unit!r}; units: {list(by_name)}")
    focus = by_name[config.unit] if config.unit else fifth_unit(groups[0])
    proj_names = config.projection_units or default_projection_units(unit_list)
    unknown = [n for n in proj_names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown projection units {unknown}; units: {list(by_name)}")
    tasks: list[Task] = []
    for i, image in enumerate(idx):
        common = dict(model_name=model_name, image=int(image), label=int(y[i]), method=config.method,
                      k=config.k)
        for u in unit_list:
            tasks.append(Task("spectra", f"img{image}-{u.name}", spectrum_task,
                              dict(target=u, x=acts.inputs[u.name][i], **common)))
        if config.stage_spectra:
            for s, group in enumerate(groups):
                tasks.append(Task("spectra", f"img{image}-stage{s}", spectrum_task,
                                  dict(target=group, x=acts.inputs[group[0].name][i],
                                       as_stage=True, **common)))
        tasks.append(Task("propagation", f"img{image}", propagation_task,
                          dict(model=model, unit_list=unit_list, x=x[i], y=y[i], image=int(image),
                               eps=eps, bounds=bounds, pgd_steps=config.pgd_steps,
                               seed=config.seed)))
        for name in proj_names:
            tasks.append(Task("projections", f"img{image}-{name}", projection_task,
                              dict(model=model, unit=by_name[name], unit_list=unit_list, x=x[i],
                                   y=y[i], image=int(image), eps=eps, bounds=bounds)))
    first = int(idx[0])
    # skip scaling and interpolation read plateau positions off the values: SLQ has none
    values_method = "auto" if config.method == "slq" else config.method
    for alpha in config.alphas:
        tasks.append(Task("skip", f"img{first}-alpha{alpha:g}", skip_task,
                          dict(unit=focus, x_in=acts.inputs[focus.name][0], alpha=alpha,
                               image=first, method=values_method, k=config.k)))
    for t in config.ts:
        tasks.append(Task("interpolation", f"img{first}-t{t:g}", interpolation_task,
                          dict(model=model, unit_name=focus.name, input_shape=data.input_shape,
                               x=x[0], t=t, image=first, seed=config.seed, method=values_method,
                               k=config.k)))
    meta = {"units": unit_list, "stages": groups, "images": [int(i) for i in idx],
            "labels": [int(v) for v in y], "focus": focus.name, "projection_units": proj_names}
    return tasks, meta


def run_stability(model: nn.Module, data: Dataset, out: str | Path,
                  config: StabilityConfig = StabilityConfig(), *, model_name: str = "model",
                  executor: str = "serial", progress: Progress | None = None) -> StabilityResult:
    """Run the whole stability study of paper 000 and write tables, figures and summary.md.

    Finished tasks are kept under ``out/tasks``; running again with the same ``out`` resumes.
    The model is never modified (interventions work on copies).

    Args:
        model: eval-mode network; data: its data set (test split); out: output folder.
        config: what to compute; model_name: label used in tables and figures.

    Returns:
        :class:`StabilityResult` with the tables (spectra, variation, propagation, projections,
        skip, interpolation), figure paths and the summary path.

    Example:
        >>> from resdyn import load_model, load_data
        >>> r = run_stability(load_model("digits-resnet20"), load_data("digits"), "out/s20",
        ...                   StabilityConfig(images=2), model_name="digits-resnet20")
        >>> sorted(r.figures)[:2]
        ['fig1_scree', 'fig2_bins']
    """
    import json
    import time

    from .. import plots
    from ..report import write_report
    from .stability_summary import image_variation, markdown

    out = Path(out)
    start = time.perf_counter()
    tasks, meta = stability_tasks(model, data, config, model_name)
    store = TaskStore(out / "tasks")
    ran = run_tasks(tasks, store, executor, progress)
    tables = {name: store.load(name) for name in ("spectra", "propagation", "projections", "skip",
                                                  "interpolation")}
    tables["spectra"] = _forward_order(tables["spectra"], meta)
    tables["propagation"] = tables["propagation"].sort_values(["perturbation", "image", "index"])
    tables["skip"] = tables["skip"].sort_values("alpha", ignore_index=True)
    tables["interpolation"] = tables["interpolation"].sort_values("t", ignore_index=True)
    tables["variation"] = image_variation(tables["spectra"])
    for name, table in tables.items():
        write_parquet(table, out / f"{name}.parquet")
    groups = meta["stages"]
    picks = [[fifth_unit(g).name for g in groups], [g[0].name for g in groups]]
    titles = ["5th unit (or last)", "first unit"]
    if config.stage_spectra:
        picks.append([stage_name(g) for g in groups])
        titles.append("stage")
    sp, pr = tables["spectra"], tables["propagation"]
    figures = {
        "fig1_scree": plots.scree_grid(sp, picks, titles, out / "fig1_scree.png", model_name),
        "fig2_bins": plots.bin_shares(sp, out / "fig2_bins.png", model_name),
        "fig3_propagation": plots.propagation(pr, out / "fig3_propagation.png", model_name),
        "fig4_growth": plots.growth_and_projections(pr, tables["projections"],
                                                    out / "fig4_growth.png", model_name),
        "fig5_interventions": plots.interventions(tables["skip"], tables["interpolation"],
                                                  out / "fig5_interventions.png", model_name),
    }
    seconds = time.perf_counter() - start
    summary = out / "summary.md"
    summary.write_text(markdown(model_name, data.name, meta["images"], meta["labels"], sp, pr,
                                tables["skip"], tables["interpolation"], config.eps, seconds,
                                ran, len(tasks)))
    write_report(out / "report.html", f"Stability study: {model_name}", summary.read_text(),
                 figures)
    (out / "config.json").write_text(json.dumps({"model": model_name, "data": data.name,
                                                 **asdict(config)}, indent=2, default=str))
    return StabilityResult(out, tables, figures, summary, ran)


def _forward_order(spectra: pd.DataFrame, meta: dict[str, object]) -> pd.DataFrame:
    order = [u.name for u in meta["units"]] + [stage_name(g) for g in meta["stages"]]
    rank = {n: i for i, n in enumerate(order)}
    return (spectra.assign(_o=spectra["name"].map(rank)).sort_values(["_o", "image"])
            .drop(columns="_o").reset_index(drop=True))
