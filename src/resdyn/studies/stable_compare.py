"""Paper 004's comparison: a standard (Euler) ResNet, an antisymmetric and a Hamiltonian network of
matched depth, width and training budget on each data set, then the same analyses for all:
eigenvalues of every block Jacobian (:mod:`resdyn.tasks.eigen`), singular-value bins
(:mod:`resdyn.tasks.spectrum`), random vs FGSM perturbation growth
(:mod:`resdyn.tasks.propagation`) and, for 2-D points, decision boundaries
(:mod:`resdyn.tasks.boundary`).

Each training is a task (:mod:`resdyn.tasks.training`) whose checkpoint is kept in the run
folder; the analyses of a network run after it. A unit is x + R(x) with no output activation,
so the residual branch's eigenvalues are those of the unit Jacobian minus 1: "Re λ" below is of
the branch, the ODE's right-hand side.

Its claims, and the notes with their numbers, are in :mod:`.stable_compare_claims`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data import load_data, load_images
from ..metrics import share_below
from ..models import STABLE_FAMILIES
from ..plots import stable as figs
from ..runs import ModelRef, Task
from ..tasks.boundary import boundary_task
from ..tasks.eigen import stiffness_task
from ..tasks.propagation import propagation_task
from ..tasks.spectrum import spectrum_tasks
from ..tasks.training import train_task
from . import stable_compare_claims
from .base import Context, Figure, Plan, Study, Table
from .options import (
    MAX_BATCH,
    MAX_BLOCKS,
    MAX_EPOCHS,
    MAX_GRID,
    MAX_IMAGES,
    MAX_SEED,
    MAX_WIDTH,
    option,
    options_class,
)


@dataclass(frozen=True)
@options_class
class CompareConfig:
    """The comparison (each field's meaning: its ``help``): one training budget for all
    networks; points (1×1 images) get the dense form (kernel 1), images kernel 3.

    Example:
        >>> cfg = CompareConfig(datasets=("swissroll",), epochs=5, resolution=40)
        >>> cfg.datasets, cfg.blocks, cfg.h
        (('swissroll',), 8, 0.5)
        >>> CompareConfig(h=0.0)
        Traceback (most recent call last):
            ...
        ValueError: h must be greater than 0; got 0.0
    """

    datasets: tuple[str, ...] = option(("swissroll", "peaks", "digits"), flag="data",
                                       short="-d", parse=lambda text: _data_sets(text),
                                       help="data sets, comma-separated")
    blocks: int = option(8, 1, MAX_BLOCKS, help="depth: residual blocks")
    width: int = option(8, 1, MAX_WIDTH, help="channels of every block")
    h: float = option(0.5, above=0, help="step size")
    gamma: float = option(0.01, 0, help="the antisymmetric network's damping")
    epochs: int = option(60, 1, MAX_EPOCHS, help="training epochs")
    lr: float = option(0.1, above=0, help="learning rate")
    batch_size: int = option(64, 1, MAX_BATCH, help="training batch size")
    seed: int = option(0, 0, MAX_SEED, help="training and the choice of test points")
    images: int = option(10, 2, MAX_IMAGES, short="-n", help="test points/images each network "
                         "is analysed on")
    eps: float = option(0.05, above=0, help="FGSM budget, a share of the data's range (random "
                        "perturbations of the same ℓ2 norm)")
    resolution: int = option(120, 2, MAX_GRID, help="grid points per side of the "
                             "decision-boundary maps (2-D data)")

    def __post_init__(self) -> None:
        if not self.datasets:
            raise ValueError("give at least one data set")


def _data_sets(text: str | list[str]) -> tuple[str, ...]:
    """--data: comma-separated data specs, each loaded once here so that an unknown or
    unreadable one fails before any training."""
    names = tuple(n.strip() for n in (text.split(",") if isinstance(text, str) else text)
                  if str(n).strip())
    for spec in names:
        load_data(spec, split="test")
    return names


def model_spec(family: str, cfg: CompareConfig, shape: tuple[int, ...]) -> str:
    kernel = 1 if shape[1:] == (1, 1) else 3
    gamma = cfg.gamma if family == "antisymmetric" else 0.0
    return (f"{family}-resnet(blocks={cfg.blocks},width={cfg.width},kernel={kernel},h={cfg.h},"
            f"gamma={gamma},size={shape[1]})")


def _key(text: str) -> str:
    return re.sub(r"[^\w.=+-]", "_", text)


def _plan(ctx: Context) -> Plan:
    cfg: CompareConfig = ctx.config
    (ctx.out / "checkpoints").mkdir(exist_ok=True)
    tasks = []
    for spec in cfg.datasets:
        data = load_images(spec, split="test")
        images = [int(i) for i in data.choose(cfg.images, cfg.seed)]
        eps, bounds = data.pixel_budget(cfg.eps), data.bounds
        for family in STABLE_FAMILIES:
            name = f"{_key(spec)}-{family}"
            path = ctx.out / "checkpoints" / f"{name}.safetensors"
            tags = {"data": spec, "family": family}
            tasks.append(Task("training", name, train_task,
                              dict(data=spec, spec=model_spec(family, cfg, data.input_shape),
                                   path=str(path), epochs=cfg.epochs, lr=cfg.lr,
                                   batch_size=cfg.batch_size, seed=cfg.seed), tags=tags))
            ref, after = ModelRef.checkpoint(path), (f"training/{name}",)
            names = [f"units.{b}" for b in range(cfg.blocks)]
            for i in images:
                one = dict(model=ref, input_shape=data.input_shape, x=data.x[i].clone(),
                           label=int(data.y[i]), image=i)
                tasks.append(Task("eigen", f"{name}-img{i}", stiffness_task,
                                  dict(**one, blocks=tuple(names), dense_max=4096, k=6,
                                       seed=cfg.seed, keep_values=True, error_bounds=True),
                                  after, tags))
                tasks.append(Task("propagation", f"{name}-img{i}", propagation_task,
                                  dict(**one, eps=eps, bounds=bounds, pgd_steps=5, seed=cfg.seed),
                                  after, tags))
                tasks += spectrum_tasks(ref, data, family, [i], names, "dense", None,
                                        key=f"{name}-", after=after, tags=tags)
            if data.input_shape[1:] == (1, 1) and data.input_shape[0] == 2:
                tasks.append(Task("boundaries", name, boundary_task,
                                  dict(model=ref, data=spec, resolution=cfg.resolution),
                                  after, tags))
    return Plan(tasks, {"datasets": list(cfg.datasets)})


# ---------------------------------------------------------------- the comparison table

def branch_share_negative(eig: pd.DataFrame) -> list[float]:
    """Per row of the eigen table: the share of the branch's eigenvalues λ − 1 with
    Re(λ − 1) < 0 beyond their own error bound (``values_err``, see
    :func:`resdyn.metrics.eigenvalues_with_bounds`): Re λ − 1 < −bound.

    A real part within its bound of 0 is not told from 0 and not counted: the dense solver's
    round-off (ε·‖J‖ for a well-conditioned eigenvalue, more for an ill-conditioned one), not a
    constant. NaN where the row kept no values or no bounds (results of an earlier version).
    """
    errs = eig["values_err"] if "values_err" in eig.columns else [None] * len(eig)
    out = []
    for re_, im, err in zip(eig["values_re"], eig["values_im"], errs, strict=True):
        if err is None or (np.ndim(err) == 0 and pd.isna(err)) or not len(re_):
            out.append(float("nan"))
            continue
        lam = np.asarray(re_, dtype=float) + 1j * np.asarray(im, dtype=float)
        out.append(share_below(lam, np.asarray(err, dtype=float), shift=1.0))
    return out


def comparison(tables, ctx) -> pd.DataFrame:
    """One row per (data, family): accuracy, branch eigenvalue and singular-value summaries,
    perturbation growth of FGSM and of equal-norm random perturbations."""
    tr, eig, sp, prop = (tables[n] for n in ("training", "eigen", "spectra", "propagation"))
    eig = eig[eig["method"] != "skipped"]
    eig = eig.assign(branch_max_re=eig["max_real"] - 1, branch_min_re=eig["min_real"] - 1,
                     branch_share_negative=branch_share_negative(eig))
    keys = ["data", "family"]
    e = eig.groupby(keys).agg(branch_max_re=("branch_max_re", "median"),
                              branch_max_re_q90=("branch_max_re", lambda v: v.quantile(0.9)),
                              branch_min_re=("branch_min_re", "median"),
                              branch_share_negative=("branch_share_negative", "median"),
                              stiffness_ratio=("stiffness_ratio", "median"),
                              spectral_radius=("spectral_radius", "median"))
    total = sp[["n_above", "n_plateau", "n_below", "n_zero"]].sum(axis=1)
    s = (sp.assign(above=sp["n_above"] / total, plateau=sp["n_plateau"] / total,
                   below=sp["n_below"] / total, sigma_max=sp["sigma_max"])
         .groupby(keys)[["above", "plateau", "below", "sigma_max"]].mean()
         .rename(columns=lambda c: f"sv_{c}"))
    last = prop["index"] == prop.groupby(keys + ["perturbation"])["index"].transform("max")
    first = prop["index"] == 0
    growth = {}
    for kind in ("fgsm", "random-fgsm"):
        p = prop[prop["perturbation"] == kind]
        out = p[last[p.index]].groupby(keys)["out_norm"].mean()
        inn = p[first[p.index]].groupby(keys)["in_norm"].mean()
        growth[f"growth_{kind.replace('-', '_')}"] = out / inn
    g = pd.DataFrame(growth)
    acc = tr.set_index(keys)[["test_accuracy", "seconds"]]
    out = acc.join(e).join(s).join(g).reset_index()
    order = {f: i for i, f in enumerate(STABLE_FAMILIES)}
    data_order = {d: i for i, d in enumerate(ctx.config.datasets)}
    return (out.assign(_d=out["data"].map(data_order), _f=out["family"].map(order))
            .sort_values(["_d", "_f"]).drop(columns=["_d", "_f"]).reset_index(drop=True))


COMPARE = Study(
    name="stable-compare", title="Stable architectures compared", config=CompareConfig,
    plan=_plan, revision=4, precisions=("float64",),
    precision_note="the share of Re(λ−1) < 0 counts eigenvalues against float64 error bounds, "
                   "which float32 products would exceed",
    changes="the eigen table's rows record J − I's share and indices (branch_share_negative, "
            "branch_stiffness_signed, branch_stiffness_ratio); since revision 3, the rows each "
            "block's output ReLU kills (known_zero_rows); since revision 2, each eigenvalue's "
            "error bound (values_err), and the share of Re(λ−1) < 0 counts a value as zero only "
            "within its own bound",
    tables={
        "training": Table(),
        "eigen": Table(),
        "spectra": Table(),
        "propagation": Table(),
        "boundaries": Table(),
        "comparison": Table(derive=comparison),
    },
    figures={
        "comparison": Figure(lambda t, ctx, p: figs.comparison(t["comparison"], p),
                             "per data set and network: test accuracy, median max Re λ of the "
                             "residual branch, and FGSM vs equal-norm random perturbation growth"),
        "boundaries": Figure(lambda t, ctx, p: figs.boundaries(t["boundaries"], p,
                                                               ctx.config.datasets),
                             "decision boundaries of each network on the 2-D toy sets, with the "
                             "test points"),
    },
    claims=stable_compare_claims.CLAIMS,
    notes=stable_compare_claims.notes,
)
