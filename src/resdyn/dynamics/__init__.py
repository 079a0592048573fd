"""Residual networks as dynamical systems across depth: finite-time Lyapunov exponents of the
composed units (:mod:`.lyapunov`), the residual-alignment measurements of Li & Papyan
(:mod:`.alignment`), block coupling of Aubry et al. (:mod:`.coupling`), and the integration of
an ODE by forward Euler, a ResNet's forward pass, and by a reference integrator (:mod:`.ode`).
"""

from .alignment import (
    Triplets,
    numerical_rank,
    overlap_matrix,
    random_overlap,
    rank_resolution,
    residual_triplets,
    self_alignment,
    straightness,
    subspace_overlap,
)
from .coupling import (
    KS,
    Block,
    blocks,
    coupling,
    line_shape,
    random_level,
    read_rows,
    token_jacobian,
)
from .lyapunov import (
    Exponents,
    exact_exponents,
    qr_exponents,
    unit_inputs,
    zero_threshold,
)

__all__ = ["KS", "Block", "Exponents", "Triplets", "blocks", "coupling",
           "exact_exponents", "line_shape", "numerical_rank", "random_level", "read_rows",
           "token_jacobian",
           "overlap_matrix", "qr_exponents", "random_overlap", "rank_resolution",
           "residual_triplets", "self_alignment", "straightness", "subspace_overlap",
           "unit_inputs", "zero_threshold"]
