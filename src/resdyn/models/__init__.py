"""Models: the zoo, resdyn's own ResNets, checkpoints, and residual units found from what a
forward pass computes."""

from .adapters import declare_unit
from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .discover import discover
from .interventions import calibrate_batchnorm
from .naming import UnknownModel
from .parts import UnitParts
from .probe import input_shape, natural_input_shape
from .resnets import Arch, ResNet, cifar_resnet, preresnet
from .stable import STABLE_FAMILIES, StableNet
from .units import NoUnitsFound, Unit, stage_name, stages, units, units_frame
from .vit import ViT
from .zoo import ModelCard, load_model, model_card, zoo_names

__all__ = ["Arch", "CheckpointError", "ModelCard", "NoUnitsFound", "ResNet", "STABLE_FAMILIES",
           "StableNet", "Unit", "UnitParts", "ViT", "calibrate_batchnorm", "declare_unit",
           "discover",
           "UnknownModel", "cifar_resnet", "load_checkpoint", "load_model", "model_card",
           "input_shape", "natural_input_shape", "preresnet", "save_checkpoint", "stage_name",
           "stages", "units", "units_frame",
           "zoo_names"]
