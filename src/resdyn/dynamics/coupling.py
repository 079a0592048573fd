"""Block coupling (Aubry, Meng, Sugolov & Papyan, "Transformer Block Coupling and its
Correlation with Generalization in LLMs", ICLR 2025, arXiv 2407.07810).

A block maps the stream X (T tokens × d) to F^l(X) = X + f^l(X); f^l is its residual
contribution. For a transformer block f^l is the whole block (every sub-layer) minus the
identity; for a ResNet unit it is the unit's residual branch R on the whole feature map (one
"token" of d = C·H·W numbers). The per-token Jacobian

    J^l_{t₁t₂} = ∂f^l(X)_{t₂} / ∂x_{t₁}    (d × d)

is a JVP with the tangent at token t₁ read at token t₂ (:func:`token_jacobian`), or a VJP with
the cotangent at t₂ read at t₁. With J = U S Vᵀ and its top-K triplets, the coupling of J₁ to J₂ is

    m_K(J₁, J₂) = ‖ |U₂,ₖᵀ J₁ V₂,ₖ| − S₁,ₖ ‖_F / ‖S₁,ₖ‖₂

(|·| elementwise, as the paper's code removes the sign freedom of singular vectors; ‖S₁,ₖ‖₂ the
2-norm of the top-K singular values of J₁, the Frobenius norm of the diagonal S₁,ₖ): 0 when J₂'s
top-K singular vectors diagonalise J₁ with J₁'s own top singular values, as they do J₂
(:func:`coupling`). The "vju" orientation puts V₂,ₖᵀ J₁ U₂,ₖ in its place (for square J:
input and output singular vectors swapped). The random level (:func:`random_level`) is the same
measure with U₂,ₖ and V₂,ₖ replaced by independent Haar-random orthonormal frames of the same
sizes: where m_K stands far below it, the blocks are coupled.

The triplets come dense where d is small and matrix-free where it is large
(:func:`resdyn.spectra.triplets.singular_triplets`, block Krylov or ARPACK on the per-token
operator); m_K needs only K products of J₁ more (J₁ V₂,ₖ).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .._torch import Seed, generator
from ..models.surgery import copy_unit
from ..models.units import Unit
from ..operators.base import LinearOperator
from ..operators.jacobian import JacobianOperator, function_jacobian
from ..spectra.triplets import SingularTriplets
from .alignment import straightness

#: K of the paper and its code: the top 10, 30 and 50 singular triplets (capped by d).
KS = (10, 30, 50)
#: "ujv": U₂ᵀ J₁ V₂ (the paper's measure); "vju": V₂ᵀ J₁ U₂ (square J only).
ORIENTATIONS = ("ujv", "vju")

Frames = tuple[np.ndarray, np.ndarray]


def coupling(projected: np.ndarray, sigma1: np.ndarray, ks: Sequence[int] = KS,
             ) -> dict[int, float]:
    """m_K for every K of ``ks`` that the sizes allow, from the projection M = U₂ᵀ J₁ V₂.

    m_K = ‖ |M[:K, :K]| − diag(σ₁[:K]) ‖_F / ‖σ₁[:K]‖₂ (the leading K×K block of M is the
    projection on the top-K frames).

    Args:
        projected: (k, k) M (or V₂ᵀ J₁ U₂ for the "vju" orientation), k ≥ max K used.
        sigma1: (≥ k,) the singular values of J₁, descending.
        ks: the K wanted; those above min(k, len(sigma1)) are left out.

    Returns:
        {K: m_K}; NaN where σ₁[:K] is all zero (J₁ = 0: no scale).

    Example:
        >>> import numpy as np
        >>> coupling(np.diag([-2.0, 1.0]), np.array([2.0, 1.0]), ks=(1, 2))  # signs do not count
        {1: 0.0, 2: 0.0}
        >>> round(coupling(np.array([[0.0, 2.0], [1.0, 0.0]]), np.array([2.0, 1.0]), (2,))[2], 4)
        1.4142
    """
    m = np.abs(np.asarray(projected, dtype=np.float64))
    s = np.asarray(sigma1, dtype=np.float64)
    out = {}
    for k in ks:
        if k > min(m.shape[0], m.shape[1], len(s)):
            continue
        scale = float(np.linalg.norm(s[:k]))
        diff = float(np.linalg.norm(m[:k, :k] - np.diag(s[:k])))
        out[int(k)] = diff / scale if scale > 0 else float("nan")
    return out


def frames(t: SingularTriplets, orientation: str = "ujv") -> Frames:
    """(left, right) frames of J₂ an orientation projects J₁ on: (U₂, V₂) for "ujv", (V₂, U₂)
    for "vju" (square J only).

    Raises:
        ValueError: an unknown orientation, or "vju" of a non-square J.
    """
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {', '.join(ORIENTATIONS)}; got "
                         f"{orientation!r}")
    if orientation == "ujv":
        return t.left, t.right
    if t.shape[0] != t.shape[1]:
        raise ValueError(f"the 'vju' orientation needs a square J (its input and output "
                         f"singular vectors in one space); got {t.shape}")
    return t.right, t.left


def project(j1: Tensor | LinearOperator, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """M = leftᵀ·J₁·right: (m, k)ᵀ (m, n) (n, k) -> (k, k); matrix-free J₁ takes k products.

    Example:
        >>> import numpy as np, torch
        >>> e = np.eye(3)
        >>> float(project(torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)), e, e)[1, 1])
        2.0
    """
    r = torch.as_tensor(np.ascontiguousarray(right), dtype=torch.float64)
    if isinstance(j1, Tensor):
        image = j1.to(torch.float64) @ r.to(j1.device)
    else:
        image = j1.matmat(r.to(device=j1.device, dtype=j1.dtype)).to(torch.float64)
    return np.ascontiguousarray(left).T @ image.cpu().numpy()


def random_frames(m: int, n: int, k: int, seed: Seed = 0) -> Frames:
    """Independent Haar-random orthonormal frames (m, k) and (n, k) (QR of Gaussian matrices,
    signs fixed by R's diagonal); their leading K columns are Haar-random K-frames too.

    Example:
        >>> import numpy as np
        >>> u, v = random_frames(6, 5, 3)
        >>> u.shape, v.shape, bool(np.allclose(u.T @ u, np.eye(3)))
        ((6, 3), (5, 3), True)
    """
    g = generator(seed)
    out = []
    for size in (m, n):
        q, r = torch.linalg.qr(torch.randn(size, k, generator=g, dtype=torch.float64))
        out.append((q * torch.sign(torch.diagonal(r))).numpy())
    return out[0], out[1]


def random_level(j1: Tensor | LinearOperator, sigma1: np.ndarray, ks: Sequence[int] = KS, *,
                 draws: int = 3, seed: Seed = 0) -> dict[int, float]:
    """The mean of m_K(J₁, ·) over ``draws`` pairs of independent random orthonormal frames of
    J₁'s sizes in place of J₂'s singular vectors: what m_K is for blocks that share nothing.
    (The same for both orientations: the two frames are drawn alike.)

    Args:
        j1: (m, n) J₁, dense or an operator (then ``draws``·max K products).
        sigma1: its top singular values, descending.

    Returns:
        {K: mean m_K} for the K of ``ks`` the sizes allow.

    Example:
        >>> import torch
        >>> j = torch.diag(torch.linspace(1, 2, 50, dtype=torch.float64))
        >>> level = random_level(j, torch.linalg.svdvals(j).numpy(), (10,), draws=4)
        >>> 0.8 < level[10] < 1.2
        True
    """
    m, n = tuple(j1.shape)
    k = min(max(ks), m, n, len(sigma1))
    g = generator(seed)
    sums: dict[int, float] = {}
    for _ in range(draws):
        left, right = random_frames(m, n, k, g)
        for kk, value in coupling(project(j1, left, right), sigma1, ks).items():
            sums[kk] = sums.get(kk, 0.0) + value
    return {kk: s / draws for kk, s in sums.items()}


# ---------------------------------------------------------------- blocks and their Jacobians


@dataclass(frozen=True, eq=False)
class Block:
    """A block whose residual contribution f^l is measured: a transformer block (its units are
    its sub-layers, steps of one module) or a ResNet unit (f = its residual branch R).

    Attributes:
        name: the module's path.
        units: its units in forward order.
        in_shape, out_shape: of one input (without the batch dimension).
        tokens: T, the sequence length of (T, d) inputs; 1 for a feature map (C, H, W), whose
            d is C·H·W.
        read: the token a head reads: the last of a causal LM's sequence, the class token (0)
            of a ViT, 0 for a feature map.
        kind: "transformer block", "residual branch" or "unit minus identity" (a unit with no
            known split, square).

    Example:
        >>> from resdyn import load_model, units
        >>> [(b.name, b.tokens, b.read) for b in blocks(units(load_model("induction-gpt2")))]
        [('lm.transformer.h.0', 32, 31), ('lm.transformer.h.1', 32, 31)]
    """

    name: str
    units: tuple[Unit, ...]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    tokens: int
    read: int
    kind: str

    @property
    def d_in(self) -> int:
        return int(np.prod(self.in_shape)) // self.tokens

    @property
    def d_out(self) -> int:
        return int(np.prod(self.out_shape)) // self.tokens

    def residual(self, dtype: torch.dtype = torch.float64) -> Callable[[Tensor], Tensor]:
        """f^l on a batch of one (1, *in_shape) -> (1, *out_shape), on private copies of the
        units in ``dtype`` (the model is never touched)."""
        copies = [copy_unit(u, dtype) for u in self.units]
        if self.kind == "residual branch":
            parts = copies[0].parts
            assert parts is not None
            return parts.residual

        def f(x: Tensor) -> Tensor:
            y = x
            for u in copies:
                y = u.forward(y)
            return y - x

        return f


def blocks(unit_list: Sequence[Unit]) -> list[Block]:
    """The blocks of a model's units: the units of one module with named steps (a transformer
    block's attention and MLP) form one block, f = the steps composed minus the identity; any
    other unit is a block of its own, f = its residual branch (a unit with no known split:
    the unit minus the identity, when square; skipped otherwise).

    Example:
        >>> from resdyn import load_model, units
        >>> bs = blocks(units(load_model("digits-resnet20")))
        >>> len(bs), bs[0].kind, bs[0].tokens, bs[3].in_shape, bs[3].out_shape
        (9, 'residual branch', 1, (16, 8, 8), (32, 4, 4))
    """
    groups: dict[str, list[Unit]] = {}
    for u in unit_list:
        stepped = u.parts is not None and bool(u.parts.step)
        groups.setdefault(u.path if stepped else f"\0{u.name}", []).append(u)
    out = []
    for key, group in groups.items():
        first, last = group[0], group[-1]
        if key.startswith("\0"):
            if first.parts is not None:
                kind = "residual branch"
            elif first.in_shape == first.out_shape:
                kind = "unit minus identity"
            else:
                continue
        else:
            kind = "transformer block"
        seq = len(first.in_shape) == 2 and kind == "transformer block"
        tokens = first.in_shape[0] if seq else 1
        causal = any(u.parts is not None and u.parts.causal for u in group)
        out.append(Block(first.path or first.name if kind == "transformer block" else first.name,
                         tuple(group), first.in_shape, last.out_shape, tokens,
                         tokens - 1 if causal else 0, kind))
    return out


def token_jacobian(f: Callable[[Tensor], Tensor], block: Block, x: Tensor, t_in: int,
                   t_out: int, *, dtype: torch.dtype = torch.float64) -> JacobianOperator:
    """J_{t_in t_out} = ∂f(X)_{t_out} / ∂x_{t_in} (d_out × d_in), matrix-free: a JVP puts the
    tangent at token t_in and reads token t_out of a pass over the whole sequence.

    Args:
        f: ``block.residual(dtype)``.
        block: the block.
        x: (*in_shape) or (1, *in_shape), the block's input.
        t_in: the token the tangent sits at (0 for a feature map).
        t_out: the token read (0 for a feature map).

    Raises:
        ValueError: a token outside 0..T−1.
    """
    for t in (t_in, t_out):
        if not 0 <= t < block.tokens:
            raise ValueError(f"block {block.name!r} has {block.tokens} tokens; got token {t}")
    seq = x.detach().to(dtype).reshape(block.tokens, block.d_in)
    shape = (1, *block.in_shape)

    def g(v: Tensor) -> Tensor:
        stream = torch.cat([seq[:t_in], v.reshape(1, -1), seq[t_in + 1:]])
        return f(stream.reshape(shape)).reshape(block.tokens, block.d_out)[t_out]

    return function_jacobian(g, seq[t_in], dtype=dtype)


def read_rows(f: Callable[[Tensor], Tensor], block: Block, x: Tensor, t_out: int, *,
              dtype: torch.dtype = torch.float64) -> Tensor:
    """Every J_{t, t_out} (t = 0..T−1) dense, by d_out VJPs with the cotangent at token t_out.

    Returns:
        (T, d_out, d_in): ``[t]`` is J_{t, t_out}.
    """
    shape = (1, *block.in_shape)

    def g(v: Tensor) -> Tensor:
        return f(v.reshape(shape)).reshape(block.tokens, block.d_out)[t_out]

    rows = function_jacobian(g, x.detach().reshape(-1), dtype=dtype).dense()
    return rows.reshape(block.d_out, block.tokens, block.d_in).permute(1, 0, 2)


def line_shape(points: Sequence[Tensor]) -> float:
    """The line-shape score of a trajectory x⁰, ..., x^L: path length / chord,
    Σ_l ‖x^l − x^{l−1}‖ / ‖x^L − x⁰‖ (1 for points on a straight line in order, larger for a
    bent or back-tracking path; Gai & Zhang 2021, as Aubry et al. use it). Here it is taken on
    the states themselves, so it is 1 / RA1's straightness of the same points.

    Example:
        >>> import torch
        >>> line_shape([torch.zeros(2), torch.tensor([1., 0.]), torch.tensor([1., 1.])])
        1.414213562373095
    """
    s = straightness(points)["straightness"]
    return 1.0 / s if s > 0 else float("nan")


def pair_rows(j1: Tensor | LinearOperator, t1: SingularTriplets, t2: SingularTriplets,
              level: Mapping[int, float], ks: Sequence[int] = KS) -> list[dict]:
    """Rows {orientation, K, m, random} of m_K(J₁, J₂) in each orientation the shapes allow
    (J₁ and J₂ of one shape; "vju" for square ones only).

    Raises:
        ValueError: J₁ and J₂ of different shapes.
    """
    if t1.shape != t2.shape:
        raise ValueError(f"m_K compares Jacobians of one shape; got {t1.shape} and {t2.shape}")
    rows = []
    for orientation in ORIENTATIONS if t2.shape[0] == t2.shape[1] else ("ujv",):
        for k, m in coupling(project(j1, *frames(t2, orientation)), t1.sigma, ks).items():
            rows.append({"orientation": orientation, "K": k, "m": m, "random": level.get(k)})
    return rows
