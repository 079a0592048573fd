"""Studies: one module per study on one pattern (:mod:`.base`), run by one runner (:mod:`.runner`),
listed in :mod:`.registry`."""

from .base import Claim, Context, Figure, Plan, Study, Table
from .dynamics import DYNAMICS, DynamicsConfig
from .identity import IDENTITY, IdentityConfig
from .identity_sweep import SWEEP, SweepConfig
from .intervals import Interval, Test, bootstrap
from .registry import STUDIES
from .runner import StudyResult, run_study
from .shortcuts import run_stability
from .spectra import SPECTRA, SpectraConfig
from .stability import STABILITY, StabilityConfig
from .stable_compare import COMPARE, CompareConfig
from .stable_ode import ODE, OdeConfig
from .stiffness import STIFFNESS, StiffnessConfig

__all__ = ["COMPARE", "Claim", "CompareConfig", "Context", "DYNAMICS", "DynamicsConfig", "Figure",
           "IDENTITY", "IdentityConfig", "Interval", "Test", "bootstrap",
           "ODE", "OdeConfig", "Plan", "SPECTRA", "STABILITY", "STIFFNESS", "STUDIES", "SWEEP",
           "SpectraConfig", "StabilityConfig", "StiffnessConfig", "Study", "StudyResult",
           "SweepConfig", "Table", "run_stability", "run_study"]
