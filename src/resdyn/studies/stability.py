"""Stability study of paper 000: unit/stage spectra across images, perturbation propagation,
skip scaling and weight interpolation, declared on the Study pattern (:mod:`.base`).

Tasks (plain functions of a model reference and picklable arguments, in :mod:`resdyn.tasks`):
one spectrum per (image, unit or stage) (:mod:`resdyn.tasks.spectrum`), one propagation per image
(:mod:`resdyn.tasks.propagation`), one projection per (image, projection unit)
(:mod:`resdyn.tasks.projection`), one skip-scaled spectrum per α and one interpolated spectrum
per t (:mod:`resdyn.tasks.altered`). Claims and notes are in
:mod:`.stability_claims`, figures in :mod:`resdyn.plots.stability`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from torch import nn

from ..data import Dataset
from ..models import Unit, stage_name, stages, units
from ..plots import stability as figs
from ..plots.common import bin_shares
from ..runs import Task
from ..spectra import check_singular_request
from ..tasks.altered import interpolation_task, skip_task
from ..tasks.projection import projection_task
from ..tasks.propagation import propagation_task
from ..tasks.spectrum import spectrum_tasks, target_shapes
from . import stability_claims as sc
from .base import Context, Figure, Plan, Study, Table
from .options import (
    IMAGES_HELP,
    MAX_EPOCHS,
    MAX_IMAGES,
    MAX_K,
    MAX_SEED,
    SINGULAR_METHOD_HELP,
    TOP_K_HELP,
    option,
    options_class,
)
from .spectra import forward_order


@dataclass(frozen=True)
@options_class
class StabilityConfig:
    """What the study computes (each field's meaning: its ``help``).

    Every task computes on the run's device and builds its Jacobians in the run's precision
    (``run_study(device=, precision=)``).

    Example:
        >>> from resdyn import load_data, load_model
        >>> cfg = StabilityConfig(images=2, alphas=(0.0, 1.0))
        >>> cfg.unit is None, cfg.eps
        (True, 0.1)
        >>> resolved = resolve(cfg, load_model("digits-resnet20"), load_data("digits"))
        >>> resolved.unit, resolved.projection_units  # the defaults, made explicit for the run
        ('stages.0.2', ('stages.2.2',))
        >>> StabilityConfig(images=1)  # the study compares images
        Traceback (most recent call last):
            ...
        ValueError: images must be at least 2; got 1
    """

    images: int = option(5, 2, MAX_IMAGES, short="-n", help=IMAGES_HELP)
    seed: int = option(0, 0, MAX_SEED, help="image choice, random perturbations, PGD start and "
                       "interpolation noise")
    method: str = option("auto", help=SINGULAR_METHOD_HELP + " (with slq, densities without "
                         "values, skip scaling and interpolation use auto)")
    k: int | None = option(None, 1, MAX_K, flag="top-k", help=TOP_K_HELP)
    eps: float = option(0.1, above=0, help="FGSM/PGD budget in pixel units (the data's range, "
                        "normally [0, 1]; eps / std_c in the normalised input; per token for a "
                        "language model)")
    pgd_steps: int = option(10, 1, MAX_EPOCHS, help="PGD iterations (ℓ∞, random start)")
    alphas: tuple[float, ...] = option((0.0, 0.5, 1.0, 1.5, 2.0), help="skip-connection scales "
                                       "of the skip-scaling experiment")
    ts: tuple[float, ...] = option((0.0, 0.25, 0.5, 0.75, 1.0), 0.0, 1.0, help="interpolation "
                                   "parameters t of θ(t) = tθ + (1 − t)η")
    unit: str | None = option(None, help="the unit of skip scaling and interpolation (default: "
                              "the 5th unit of the first stage, or its last if shorter)")
    projection_units: tuple[str, ...] | None = option(
        None, help="units whose right singular vectors the adversarial perturbation is "
        "projected on (default: four spread over the last stage, ending at its last)")
    stage_spectra: bool = option(True, flag="stage-spectra", help="also the spectra of whole "
                                 "stages")

    def __post_init__(self) -> None:
        check_singular_request(self.method, self.k)


def fifth_unit(stage: Sequence[Unit]) -> Unit:
    """The paper's representative unit: the 5th of a stage (or its last, if shorter)."""
    return stage[min(4, len(stage) - 1)]


def default_projection_units(unit_list: Sequence[Unit]) -> tuple[str, ...]:
    """Up to four units of the last stage, every other one, ending at its last (paper: 12-18 of 18)."""
    last = [u for u in stages(unit_list)[-1] if u.kind == "regular"] or stages(unit_list)[-1]
    picks = sorted({len(last) - 1 - 2 * j for j in range(4) if len(last) - 1 - 2 * j >= 0})
    return tuple(last[i].name for i in picks)


def resolve(config: StabilityConfig, model: nn.Module, data: Dataset) -> StabilityConfig:
    """``config`` with the default focus and projection units made explicit (names checked)."""
    unit_list = units(model, data.input_shape)
    names = [u.name for u in unit_list]
    if config.unit is not None and config.unit not in names:
        raise ValueError(f"unknown unit {config.unit!r}; units: {names}")
    unknown = [n for n in config.projection_units or () if n not in names]
    if unknown:
        raise ValueError(f"unknown projection units {unknown}; units: {names}")
    analysed = names + ([stage_name(g) for g in stages(unit_list)] if config.stage_spectra else [])
    check_singular_request(config.method, config.k, target_shapes(unit_list, analysed))
    return replace(config, unit=config.unit or fifth_unit(stages(unit_list)[0]).name,
                   projection_units=tuple(config.projection_units
                                          or default_projection_units(unit_list)))


# ---------------------------------------------------------------- the study

def _plan(ctx: Context) -> Plan:
    cfg: StabilityConfig = ctx.config
    data, ref, shape = ctx.dataset, ctx.ref, ctx.dataset.input_shape
    unit_list = ref.units(shape)
    groups = stages(unit_list)
    images = [int(i) for i in data.choose(cfg.images, cfg.seed)]
    names = [u.name for u in unit_list] + ([stage_name(g) for g in groups] if cfg.stage_spectra
                                           else [])
    eps, bounds = data.pixel_budget(cfg.eps), data.bounds
    tasks = spectrum_tasks(ref, data, ctx.model_name, images, names, cfg.method, cfg.k)
    for i in images:
        one = dict(model=ref, input_shape=shape, x=data.x[i].clone(), label=int(data.y[i]), image=i)
        tasks.append(Task("propagation", f"img{i}", propagation_task,
                          dict(**one, eps=eps, bounds=bounds, pgd_steps=cfg.pgd_steps,
                               seed=cfg.seed)))
        tasks += [Task("projections", f"img{i}-{name}", projection_task,
                       dict(**one, unit=name, eps=eps, bounds=bounds))
                  for name in cfg.projection_units or ()]
    first = dict(model=ref, input_shape=shape, unit=cfg.unit, x=data.x[images[0]].clone(), image=images[0],
                 # skip scaling and interpolation read plateau positions off values: SLQ has none
                 method="auto" if cfg.method == "slq" else cfg.method, k=cfg.k)
    tasks += [Task("skip", f"img{images[0]}-alpha{a:g}", skip_task, dict(**first, alpha=a))
              for a in cfg.alphas]
    tasks += [Task("interpolation", f"img{images[0]}-t{t:g}", interpolation_task,
                   dict(**first, t=t, seed=cfg.seed)) for t in cfg.ts]
    return Plan(tasks, {"names": names, "stages": groups, "images": images,
                        "labels": [int(data.y[i]) for i in images]})


def _scree(tables, ctx: Context, path) -> None:
    groups = ctx.meta["stages"]
    picks = [[fifth_unit(g).name for g in groups], [g[0].name for g in groups]]
    titles = ["5th unit (or last)", "first unit"]
    if ctx.config.stage_spectra:
        picks.append([stage_name(g) for g in groups])
        titles.append("stage")
    figs.scree_grid(tables["spectra"], picks, titles, path, ctx.model_name)


STABILITY = Study(
    name="stability", title="Stability study", config=StabilityConfig, plan=_plan,
    resolve=resolve,
    tables={
        "spectra": Table(order=forward_order),
        "propagation": Table(order=lambda t, ctx: t.sort_values(["perturbation", "image", "index"])),
        "projections": Table(),
        "skip": Table(order=lambda t, ctx: t.sort_values("alpha", ignore_index=True)),
        "interpolation": Table(order=lambda t, ctx: t.sort_values("t", ignore_index=True)),
        "variation": Table(derive=lambda tables, ctx: sc.image_variation(tables["spectra"])),
    },
    figures={
        "fig1_scree": Figure(_scree, "singular values of the 5th and first unit of each stage and "
                             "of each stage's Jacobian, one line per image"),
        "fig2_bins": Figure(lambda t, ctx, p: bin_shares(t["spectra"], p, ctx.model_name),
                            "share of singular values above, on and below the plateau, and zero, "
                            "per unit (mean over images)"),
        "fig3_propagation": Figure(
            lambda t, ctx, p: figs.propagation(t["propagation"], p, ctx.model_name),
            "normalised magnitude of propagated FGSM, PGD and equal-norm random perturbations"),
        "fig4_growth": Figure(
            lambda t, ctx, p: figs.growth_and_projections(
                t["propagation"], t["projections"], p, ctx.model_name),
            "actual vs linearly predicted growth per unit; the FGSM perturbation on right "
            "singular vectors"),
        "fig5_interventions": Figure(
            lambda t, ctx, p: figs.interventions(t["skip"], t["interpolation"], p,
                                                            ctx.model_name),
            "scree plots with the skip scaled by α; singular values per interpolation t"),
    },
    claims=sc.CLAIMS,
    notes=sc.notes,
)
