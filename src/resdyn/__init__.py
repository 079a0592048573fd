"""resdyn: residual networks as nonlinear dynamical systems.

The public names, by layer: models and unit discovery, data, activations, Jacobian operators,
spectra, metrics, verification, training.
"""

from .capture import Activations, capture
from .check import JacobianCheck, check_jacobian, check_model
from .data import Dataset, check_compatible, data_names, load_data
from .metrics import eigen_summary, singular_summary
from .models import (
    CheckpointError,
    NoUnitsFound,
    Unit,
    UnitParts,
    UnknownModel,
    declare_unit,
    load_model,
    model_card,
    stages,
    units,
    zoo_names,
)
from .operators import LinearOperator, module_jacobian, stage_jacobian, unit_jacobian
from .spectra import eigenvalues, singular_values
from .train import evaluate, train, train_and_save

__version__ = "0.1.0"

__all__ = ["Activations", "CheckpointError", "Dataset", "JacobianCheck", "LinearOperator",
           "NoUnitsFound", "Unit", "UnitParts", "UnknownModel", "capture", "check_compatible",
           "check_jacobian", "check_model", "data_names", "declare_unit", "eigen_summary",
           "eigenvalues", "evaluate", "load_data", "load_model", "model_card", "module_jacobian",
           "singular_summary", "singular_values", "stage_jacobian", "stages", "train",
           "train_and_save", "unit_jacobian", "units", "zoo_names"]
