"""The demo: every study of the four papers on the embedded default, small, in one folder; the
stability, identity and stiffness studies on a ResNet, a ViT and a causal language model (the
shipped GPT-2 on the embedded token language), side by side in the report.

Each part is an ordinary study run in its own subfolder, named by paper (``000-stability``, so
the folders sort in the papers' order), which resumes on its own and can be opened alone; the
folder's ``report.html`` puts them on one page. Nothing is precomputed: the shipped digits
checkpoints are analysed and the toy networks and depth sweep are trained here.
``quick`` runs every part end to end at the smallest size that still exercises it (tests, CI).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..runs import Executor, Progress, RunContext
from ..runs.folder import check_out, claimed, locked
from .base import Study
from .dynamics import DYNAMICS, DynamicsConfig
from .identity import IDENTITY, IdentityConfig
from .identity_sweep import SWEEP, SweepConfig
from .registry import owned_names
from .runner import StudyResult, run_study
from .stability import STABILITY, StabilityConfig
from .stable_compare import COMPARE, CompareConfig
from .stable_ode import ODE, OdeConfig
from .stiffness import STIFFNESS, StiffnessConfig


@dataclass(frozen=True)
class Part:
    """One study of the demo: run ``study`` on ``model`` (zoo spec) and ``data`` into ``folder``."""

    folder: str
    study: Study
    model: str | None
    data: str | None
    config: Any


def parts(quick: bool = False) -> list[Part]:
    """The demo's studies: papers 000 (stability), 002 (identity and its depth sweep), 003
    (stiffness) and 004 (ODE examples, stable architectures compared); 000, 002 and 003 on the
    shipped digits ResNet, the shipped digits ViT (``-vit`` folders) and the shipped GPT-2 on
    the embedded token language (``-lm`` folders); then the dynamics study (Lyapunov exponents,
    residual alignment, block coupling). In folder order, as the report lists them."""
    if quick:
        return [
            Part("000-stability", STABILITY, "digits-resnet20", "digits",
                 StabilityConfig(images=2, k=8, pgd_steps=2, alphas=(0.0, 1.0), ts=(0.0, 1.0))),
            Part("000-stability-lm", STABILITY, "induction-gpt2", "induction",
                 StabilityConfig(images=2, k=8, pgd_steps=2, alphas=(0.0, 1.0), ts=(0.0, 1.0))),
            Part("000-stability-vit", STABILITY, "digits-vit", "digits",
                 StabilityConfig(images=2, k=8, pgd_steps=2, alphas=(0.0, 1.0), ts=(0.0, 1.0))),
            Part("002-identity", IDENTITY, "digits-resnet20", "digits", IdentityConfig(images=10)),
            Part("002-identity-lm", IDENTITY, "induction-gpt2", "induction",
                 IdentityConfig(images=10)),
            Part("002-identity-sweep", SWEEP, None, "digits",
                 SweepConfig(depths=(1, 2), epochs=1, images=10)),
            Part("002-identity-vit", IDENTITY, "digits-vit", "digits", IdentityConfig(images=10)),
            Part("003-stiffness", STIFFNESS, "digits-resnet20", "digits",
                 StiffnessConfig(images=3, keep_values=2)),
            Part("003-stiffness-lm", STIFFNESS, "induction-gpt2", "induction",
                 StiffnessConfig(images=3, keep_values=2)),
            Part("003-stiffness-vit", STIFFNESS, "digits-vit", "digits",
                 StiffnessConfig(images=3, keep_values=2)),
            Part("004-ode", ODE, None, None, OdeConfig(starts=2)),
            Part("004-stable-compare", COMPARE, None, None,
                 CompareConfig(datasets=("swissroll",), blocks=2, width=4, epochs=2, images=2,
                               resolution=30)),
            Part("005-dynamics", DYNAMICS, "digits-resnet20", "digits",
                 DynamicsConfig(images=1, k=2, family=("digits-resnet20",), family_images=1)),
        ]
    return [
        Part("000-stability", STABILITY, "digits-resnet56", "digits", StabilityConfig(images=5)),
        Part("000-stability-lm", STABILITY, "induction-gpt2", "induction",
             StabilityConfig(images=2)),
        Part("000-stability-vit", STABILITY, "digits-vit", "digits", StabilityConfig(images=5)),
        Part("002-identity", IDENTITY, "digits-resnet56", "digits", IdentityConfig(images=100)),
        Part("002-identity-lm", IDENTITY, "induction-gpt2", "induction",
             IdentityConfig(images=50)),
        Part("002-identity-sweep", SWEEP, None, "digits",
             SweepConfig(depths=(2, 4, 8, 16), epochs=8, images=50)),
        Part("002-identity-vit", IDENTITY, "digits-vit", "digits", IdentityConfig(images=100)),
        Part("003-stiffness", STIFFNESS, "digits-resnet56", "digits", StiffnessConfig(images=30)),
        Part("003-stiffness-lm", STIFFNESS, "induction-gpt2", "induction",
             StiffnessConfig(images=5)),
        Part("003-stiffness-vit", STIFFNESS, "digits-vit", "digits", StiffnessConfig(images=10)),
        Part("004-ode", ODE, None, None, OdeConfig()),
        Part("004-stable-compare", COMPARE, None, None,
             CompareConfig(datasets=("swissroll", "peaks"), epochs=30)),
        Part("005-dynamics", DYNAMICS, "digits-resnet20", "digits",
             DynamicsConfig(images=2, family_images=1)),
    ]


def _owned(identity: dict[str, Any] | None) -> list[str]:
    """What resdyn writes into the demo's folder (its parts' folders) and into each part's; for
    a damaged identity (None), the parts of either size and whatever a study writes."""
    if identity is None:
        return [p.folder for q in (False, True) for p in parts(q)] + owned_names(None)
    if "demo" in identity:
        return [p.folder for p in parts(bool(identity["demo"].get("quick")))]
    return owned_names(identity)


def run_demo(out: str | Path = "out/demo", *, quick: bool = False,
             executor: Executor | str = "serial",
             progress: Callable[[Part], Progress | None] | None = None,
             fresh: bool = False, device: str = "cpu", precision: str = "float64",
             threads: int | None = None) -> list[StudyResult]:
    """Run every part into ``out/<part>`` and write ``out/report.html`` (resumable).

    Args:
        out: the demo folder; a folder of another demo size is refused (``fresh`` empties it).
        quick: the smallest sizes (every study still runs end to end).
        executor: for every part.
        device: the run context's device for every part.
        precision: the run context's precision for every part; refused (before the folder is
            claimed) where a part's study does not compute in it.
        threads: the run context's torch threads for every part.
        progress: fn(part) -> the progress callback of that part's run (or None).

    Returns:
        the parts' :class:`StudyResult` in order.
    """
    out = check_out(out)
    RunContext.on(device, precision, threads)  # an absent device is refused before the folder is claimed
    refusing = [p.folder for p in parts(quick) if precision not in p.study.precisions]
    if refusing:
        raise ValueError(f"the demo's parts {', '.join(refusing)} do not compute in {precision} "
                         "(each study says why: resdyn.studies.STUDIES[name].precision_note); run "
                         f"the demo in float64, or the other studies one by one with --precision "
                         f"{precision}")
    executor = Executor(executor) if isinstance(executor, str) else executor
    executor.check_reachable()
    with locked(out):
        with claimed(out, {"demo": {"quick": quick}}, fresh=fresh, owned=_owned):
            return _parts(out, quick, executor, progress, device, precision, threads)


def _parts(out: Path, quick: bool, executor: Executor | str,
           progress: Callable[[Part], Progress | None] | None, device: str, precision: str,
           threads: int | None) -> list[StudyResult]:
    """run_demo's work in the claimed folder."""
    from ..report import write_report
    from .command_options import DataOptions, ModelOptions

    results = []
    for part in parts(quick):
        model, data = (ModelOptions(model=part.model, data=part.data).load()
                       if part.model and part.data else
                       (None, DataOptions(data=part.data).load() if part.data else None))
        results.append(run_study(
            part.study, model, data, part.config, out / part.folder, model_name=part.model,
            executor=executor, progress=progress(part) if progress else None,
            device=device, threads=threads, precision=precision))
    write_report(out)
    return results


def demo_table(results: list[StudyResult]) -> pd.DataFrame:
    """One row per part of a demo run: its study, folder, tasks run and resumed, and how many
    of its claims held, did not, were undecided and were not judged."""
    from ..report import run_title

    rows = []
    for r in results:
        said = [c.verdict for c in r.claims.values()]
        rows.append({"study": run_title(r.out), "folder": r.out.name, "tasks run": r.tasks_run,
                     "resumed": r.stats.resumed, "claims held": said.count("yes"),
                     "not held": said.count("no"), "undecided": said.count("undecided"),
                     "not judged": said.count("not judged")})
    return pd.DataFrame(rows)
