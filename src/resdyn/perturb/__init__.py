"""Perturbations: adversarial attacks (FGSM, PGD), matched random noise, and their propagation."""

from .attacks import BALLS, Attack, fgsm, pgd, random_like
from .propagate import Propagation, propagate

__all__ = ["BALLS", "Attack", "Propagation", "fgsm", "pgd", "propagate", "random_like"]
