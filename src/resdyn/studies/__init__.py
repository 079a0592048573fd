"""Studies: one module per study on one pattern (:mod:`.base`), run by one runner (:mod:`.runner`)."""

from .base import Claim, Context, Figure, Plan, Study, Table
from .runner import StudyResult, run_study
from .spectra import SPECTRA, SpectraConfig
from .stability import STABILITY, StabilityConfig, run_stability

STUDIES = {s.name: s for s in (SPECTRA, STABILITY)}

__all__ = ["Claim", "Context", "Figure", "Plan", "SPECTRA", "STABILITY", "STUDIES",
           "SpectraConfig", "StabilityConfig", "Study", "StudyResult", "Table", "run_stability",
           "run_study"]
