"""resdyn: residual networks as nonlinear dynamical systems."""

from .capture import Activations, capture
from .models import (
    CheckpointError,
    NoUnitsFound,
    Unit,
    UnknownModel,
    load_model,
    model_card,
    stages,
    units,
    zoo_names,
)

__version__ = "0.1.0"

__all__ = ["Activations", "CheckpointError", "NoUnitsFound", "Unit", "UnknownModel", "load_model", "model_card",
           "stages", "units", "zoo_names", "capture"]
