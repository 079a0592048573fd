"""The registry of resdyn's studies (name -> :class:`~resdyn.studies.base.Study`), and what each
writes into a run folder beyond the files of every run."""

from __future__ import annotations

from typing import Any

from .base import Study
from .dynamics import DYNAMICS
from .identity import IDENTITY
from .identity_sweep import SWEEP
from .spectra import SPECTRA
from .stability import STABILITY
from .stable_compare import COMPARE
from .stable_ode import ODE
from .stiffness import STIFFNESS

STUDIES = {s.name: s for s in (SPECTRA, STABILITY, IDENTITY, SWEEP, STIFFNESS, ODE, COMPARE,
                               DYNAMICS)}


def owned_names(identity: dict[str, Any] | None, running: Study | None = None) -> list[str]:
    """What resdyn writes into a run folder of ``identity`` beyond the files of every run: the
    study's tables and figures.

    The study is ``running`` (the one about to run) when the names match, else resdyn's own of
    that name; a folder of another user-defined study owns only the files of every run. A
    damaged identity (None) owns what any of resdyn's studies (and ``running``) writes.
    """
    if identity is None:
        studies = [*STUDIES.values(), *([running] if running is not None else [])]
    else:
        name = identity.get("study", "")
        found = running if running is not None and running.name == name else STUDIES.get(name)
        studies = [found] if found is not None else []
    return [name for study in studies for name in
            [f"{t}.parquet" for t in study.tables] + [f"{f}.png" for f in study.figures]]
