"""The spectra study: singular values of every unit (and stage) Jacobian, per image, as a table.

One task per (image, unit or stage): :func:`resdyn.tasks.spectrum.spectrum_task` loads the
model by reference, captures the image's activation entering the target and returns one row of
:func:`resdyn.tasks.spectrum.spectrum_row`. The stability study and the stable comparison plan
the same tasks for their spectra.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from torch import nn

from ..data import Dataset
from ..models.units import units
from ..plots.common import bin_shares
from ..spectra.api import check_singular_request
from ..tasks.spectrum import spectrum_tasks, target_names, target_shapes
from .base import Context, Figure, Plan, Study, Table
from .options import (
    IMAGES_HELP,
    MAX_IMAGES,
    MAX_K,
    MAX_SEED,
    SINGULAR_METHOD_HELP,
    TOP_K_HELP,
    option,
    options_class,
)


@dataclass(frozen=True)
@options_class
class SpectraConfig:
    """What the spectra study computes (each field's meaning: its ``help``).

    The Jacobian products' precision and the device are the run's (``run_study(precision=,
    device=)``), not the config's.

    Example:
        >>> SpectraConfig(images=2, k=6)
        SpectraConfig(images=2, seed=0, names=None, stages=False, method='auto', k=6)
        >>> SpectraConfig(images=0)
        Traceback (most recent call last):
            ...
        ValueError: images must be at least 1; got 0
        >>> SpectraConfig(method="qr")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ValueError: unknown singular value method 'qr'; valid: auto, dense, svd, ...
    """

    images: int = option(5, 1, MAX_IMAGES, short="-n", help=IMAGES_HELP)
    seed: int = option(0, 0, MAX_SEED, help="image choice and randomised methods")
    names: tuple[str, ...] | None = option(None, flag="units", none="all", help="all, or "
                                           "comma-separated unit (and stage) names")
    stages: bool = option(False, help="also each stage's Jacobian (the composition of its units)")
    method: str = option("auto", help=SINGULAR_METHOD_HELP)
    k: int | None = option(None, 1, MAX_K, flag="top-k", help=TOP_K_HELP)

    def __post_init__(self) -> None:
        check_singular_request(self.method, self.k)


def resolve(config: SpectraConfig, model: nn.Module, data: Dataset) -> SpectraConfig:
    """``config`` checked against the model: names exist, k fits every analysed block."""
    unit_list = units(model, data.input_shape)
    names = target_names(unit_list, config.names, config.stages)
    check_singular_request(config.method, config.k, target_shapes(unit_list, names))
    return config



def forward_order(spectra: pd.DataFrame, ctx: Context) -> pd.DataFrame:
    """Rows in the order of ``ctx.meta['names']`` (units, then stages), then by image."""
    rank = {n: i for i, n in enumerate(ctx.meta["names"])}
    return (spectra.assign(_o=spectra["name"].map(rank)).sort_values(["_o", "image"], kind="stable")
            .drop(columns="_o").reset_index(drop=True))


def _plan(ctx: Context) -> Plan:
    cfg: SpectraConfig = ctx.config
    unit_list = ctx.ref.units(ctx.dataset.input_shape)
    names = target_names(unit_list, cfg.names, cfg.stages)
    images = [int(i) for i in ctx.dataset.choose(cfg.images, cfg.seed)]
    return Plan(spectrum_tasks(ctx.ref, ctx.dataset, ctx.model_name, images, names, cfg.method,
                               cfg.k),
                {"names": names, "images": images})


def _notes(tables, ctx: Context) -> str:
    sp = tables["spectra"]
    shares = sp[["n_above", "n_plateau", "n_below", "n_zero"]].sum()
    total = max(int(shares.sum()), 1)
    return (f"Images {ctx.meta['images']}; {len(sp)} spectra by "
            f"{', '.join(sorted(set(sp['method'])))}. Shares of all singular values: above 1.01 "
            f"{shares['n_above'] / total:.3f}, plateau 0.99–1.01 {shares['n_plateau'] / total:.3f}"
            f", below {shares['n_below'] / total:.3f}, zero {shares['n_zero'] / total:.3f}.\n")


SPECTRA = Study(
    name="spectra", title="Singular spectra", config=SpectraConfig, plan=_plan, resolve=resolve,
    tables={"spectra": Table(order=forward_order)},
    figures={"bins": Figure(lambda t, ctx, path: bin_shares(t["spectra"], path, ctx.model_name),
                            "share of singular values above 1.01, on the plateau 0.99–1.01, "
                            "below and at zero, per unit (mean over images)")},
    notes=_notes)
