"""A residual step split into its parts: activation(shortcut(x) + residual(x)) (:class:`UnitParts`),
what every adapter (:mod:`resdyn.models.adapters`, :mod:`resdyn.models.decoders`) and discovery
(:mod:`resdyn.models.discover`) return."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

Fn = Callable[[Tensor], Tensor]


def identity(x: Tensor) -> Tensor:
    """x itself: the shortcut, branch and activation of :class:`UnitParts` by default."""
    return x


@dataclass(frozen=True)
class UnitParts:
    """A residual step written as activation(shortcut(x) + residual(x)).

    Attributes:
        shortcut: S, the identity (default) or a learned map.
        residual: R, the residual branch.
        activation: σ applied after the sum: a ReLU, the identity (default; pre-activation and
            pre-LN units) or a LayerNorm (post-LN transformer blocks).
        projection: True when the shortcut is a learned map (1x1 conv + BN), False for the
            identity.
        split: (inner, outer) with residual(x) = outer(inner(x)) and inner ending in a ReLU, or
            None. The branch Jacobian then factors as J_outer·J_inner, of rank at most the
            number of that ReLU's active outputs; eigenvalue solvers use this (see
            ``resdyn.spectra.dense``).
        family: a short name for tables and messages.
        step: the step's name inside its module when the module's forward is several steps
            (e.g. "self_attention", "mlp"), "" when the module is one unit. The unit is then
            called ``"<module path>.<step>"``; naming the step after the submodule at the core
            of its branch makes that name a module path too (weight interpolation uses it).
        causal: True when the unit's input and output are (T, d) token sequences and output
            token t depends only on input tokens s <= t (a causal decoder's attention or
            token-wise MLP): its Jacobian is block lower-triangular in tokens, so its
            eigenvalues are those of the T diagonal d×d blocks (``resdyn.operators.causal``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> parts = UnitParts(residual=nn.Linear(2, 2), activation=torch.relu)
        >>> x = torch.tensor([1.0, -1.0])
        >>> torch.equal(parts(x), torch.relu(x + parts.residual(x)))
        True
    """

    shortcut: Fn = identity
    residual: Fn = identity
    activation: Fn = identity
    projection: bool = False
    split: tuple[Fn, Fn] | None = None
    family: str = "declared"
    step: str = ""
    causal: bool = False

    def __call__(self, x: Tensor, alpha: float = 1.0) -> Tensor:
        """activation(alpha·shortcut(x) + residual(x))."""
        return self.activation(alpha * self.shortcut(x) + self.residual(x))
