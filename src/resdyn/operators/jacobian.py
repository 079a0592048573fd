"""Jacobians of functions, modules, residual units and stages as matrix-free operators.

J·v is a JVP and Jᵀ·w a VJP (torch.func); blocks go through ``vmap`` so one batched network
pass serves many vectors. Modules are analysed on a private deep copy in float64 and eval mode:
the user's model is never modified, and in-place activations cannot touch the stored point.

For a unit x -> σ(α·S(x) + R(x)) the Jacobian is J = diag(σ'(α·S(x) + R(x)))·(α·J_S + J_R);
autodiff applies this formula exactly, and rows where an output ReLU is off (pre-activation ≤ 0)
are recorded in ``zero_rows`` because they are exactly zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, vjp, vmap

from .._threads import threads_for
from .._torch import differentiable_attention
from ..models.surgery import analysis_copy, copy_unit
from ..models.units import Unit
from .base import LinearOperator
from .forward_ad import jvp

Flat = Callable[[Tensor], Tensor]


@contextmanager
def computing(width: int) -> Iterator[None]:
    """The context of every product of an operator ``width`` wide: its threads
    (:func:`resdyn._threads.threads_for`) and attention that forward-mode AD can differentiate
    (:func:`resdyn._torch.differentiable_attention`)."""
    with threads_for(width), differentiable_attention():
        yield


class AtPoint(LinearOperator):
    """An operator linearised at a flat point ``x`` with ``out_size`` outputs.

    Subclasses are dataclasses with the fields ``x`` (n,) and ``out_size`` (m); shape, dtype and
    device follow from them.
    """

    x: Tensor
    out_size: int

    @property
    def shape(self) -> tuple[int, int]:  # type: ignore[override]
        return (self.out_size, self.x.numel())

    @property
    def dtype(self) -> torch.dtype:  # type: ignore[override]
        return self.x.dtype

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return self.x.device


@dataclass(frozen=True, eq=False, repr=False)
class JacobianOperator(AtPoint):
    """J = dF/dx at a point, for F: (n,) -> (m,) on flat vectors.

    The constructor does no work; use :func:`function_jacobian`, :func:`module_jacobian`,
    :func:`unit_jacobian`, :func:`residual_jacobian` or :func:`stage_jacobian` to build one.

    Attributes:
        fn: F on flat vectors, (n,) -> (m,); must be a pure function (no state is kept).
        x: (n,) the point of linearisation (float64 unless asked otherwise).
        out_size: m.
        zero_rows: optional (m,) bool mask of rows known to be exactly zero.
        factors: optional :class:`BranchFactors`, J = D·(α·I + J_outer·J_inner), for a unit
            whose identity shortcut and branch structure are known.

    Example:
        >>> import torch
        >>> x = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
        >>> J = function_jacobian(lambda v: v ** 2, x)  # J = diag(2x)
        >>> isinstance(J, JacobianOperator), J.shape, J.matvec(torch.ones(3))
        (True, (3, 3), tensor([0., 2., 4.], dtype=torch.float64))
    """

    fn: Flat
    x: Tensor
    out_size: int
    zero_rows: Tensor | None = None
    factors: BranchFactors | None = None

    def matvec(self, v: Tensor) -> Tensor:
        """J v by one JVP: (n,) -> (m,)."""
        with computing(max(self.shape)):
            return jvp(self.fn, (self.x,), (v.to(self.x),))[1]

    def rmatvec(self, w: Tensor) -> Tensor:
        """Jᵀ w by one VJP: (m,) -> (n,)."""
        with computing(max(self.shape)):
            return vjp(self.fn, self.x)[1](w.to(self.x))[0]

    def matmat(self, v: Tensor) -> Tensor:
        """J V by vmapped JVPs in chunks: (n, k) -> (m, k)."""
        def one(col: Tensor) -> Tensor:
            return jvp(self.fn, (self.x,), (col,))[1]

        with computing(max(self.shape)):
            return _blocked(self, one, v.to(self.x), self.out_size)

    def rmatmat(self, w: Tensor) -> Tensor:
        """Jᵀ W by vmapped VJPs (one forward pass per call): (m, k) -> (n, k)."""
        with computing(max(self.shape)):
            pull = vjp(self.fn, self.x)[1]
            return _blocked(self, lambda col: pull(col)[0], w.to(self.x), self.x.numel())


@dataclass(frozen=True, eq=False)
class BranchFactors:
    """A unit's Jacobian as J = D·(α·I + J_outer·J_inner), D the output ReLU's 0/1 diagonal.

    For a unit σ(α·x + outer(inner(x))) with an identity shortcut, where ``inner`` ends in a
    ReLU: the branch Jacobian J_outer·J_inner has rank at most the number r of that ReLU's active
    outputs, which eigenvalue solvers exploit. Nothing is computed until asked, so building a
    unit's operator costs no extra pass for the solvers that do not use this.

    Attributes:
        alpha: the shortcut scale α.
        inner, outer: the branch's two parts on a batch of one; residual(x) = outer(inner(x)).
        x: (1, C, H, W) the point, in the working dtype.
    """

    alpha: float
    inner: Callable[[Tensor], Tensor]
    outer: Callable[[Tensor], Tensor]
    x: Tensor

    def _z(self) -> Tensor:
        with torch.no_grad():
            return self.inner(self.x.clone())

    def inner_jacobian(self) -> JacobianOperator:
        """(r_all, n) Jacobian of ``inner`` at x, zero rows where its ReLU is off."""
        return function_jacobian(self.inner, self.x, dtype=self.x.dtype,
                                 zero_rows=(self._z() == 0).reshape(-1))

    def outer_jacobian(self) -> JacobianOperator:
        """(n, r_all) Jacobian of ``outer`` at inner(x)."""
        return function_jacobian(self.outer, self._z(), dtype=self.x.dtype)

    def core(self, keep: Tensor | None = None) -> JacobianOperator:
        """J_inner·diag(keep)·J_outer (r_all, r_all), the Jacobian of
        z -> inner(x + keep·(outer(z) − outer(z₀))) at z₀ = inner(x): rows by VJPs through
        outer, the mask and inner in one pass; zero rows where the inner ReLU is off.
        ``keep``: (n,) 0/1 mask of the unit's live outputs (None: all).
        """
        x, z0 = self.x, self._z()
        mask = torch.ones_like(x) if keep is None else keep.to(x).reshape(x.shape)
        with torch.no_grad():
            base = self.outer(z0.clone())

        def h(z: Tensor) -> Tensor:
            return self.inner(x + mask * (self.outer(z.reshape(z0.shape).clone()) - base)
                              ).reshape(-1)

        return JacobianOperator(h, z0.reshape(-1), z0.numel(), (z0 == 0).reshape(-1))


def _blocked(op: LinearOperator, f: Callable[[Tensor], Tensor], block: Tensor, rows: int,
             ) -> Tensor:
    """f (vmapped over columns) applied to a block in chunks of ``op.chunk_size()`` columns."""
    step, k = op.chunk_size(), block.shape[1]
    g = vmap(f, in_dims=1, out_dims=1)
    if k <= step:
        return g(block)
    out = torch.empty(rows, k, dtype=op.dtype, device=op.device)
    for s in range(0, k, step):
        out[:, s:s + step] = g(block[:, s:s + step])
    return out


class _Pure:
    """F(x) = functional_call(module, state, x): the module's forward with fixed tensors."""

    def __init__(self, module: nn.Module, shape: tuple[int, ...]):
        self.module, self.shape = module, shape
        self.state = {**dict(module.named_parameters()), **dict(module.named_buffers())}

    def __call__(self, v: Tensor) -> Tensor:
        # clone: an in-place first op (ReLU(inplace=True)) must not rewrite the stored point
        return functional_call(self.module, self.state, (v.reshape(self.shape).clone(),)
                               ).reshape(-1)


class _UnitForward(nn.Module):
    """One variant of a unit as a module: "unit" (σ(αS + R)), "residual" (R) or "shortcut" (S)."""

    def __init__(self, unit: Unit, variant: str, alpha: float):
        super().__init__()
        self.inner, self.unit, self.variant, self.alpha = unit.module, unit, variant, alpha

    def forward(self, x: Tensor) -> Tensor:
        if self.variant == "unit":
            return self.unit.forward(x, self.alpha)
        p = self.unit.parts
        assert p is not None
        return p.residual(x) if self.variant == "residual" else p.shortcut(x)


def _device(module: nn.Module, x: Tensor) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else x.device


def function_jacobian(fn: Callable[[Tensor], Tensor], x: Tensor, *,
                      dtype: torch.dtype = torch.float64,
                      zero_rows: Tensor | None = None) -> JacobianOperator:
    """The Jacobian of any function at ``x``.

    Args:
        fn: maps a tensor shaped like ``x`` to a tensor of any shape; it must work in ``dtype``
            and be pure (torch.func transforms it).
        x: the point, any shape (n elements); converted to ``dtype``, device kept.
        dtype: working precision (float64 by default).
        zero_rows: optional (m,) bool mask of outputs known to have zero derivative.

    Returns:
        JacobianOperator of shape (m, n), m = fn(x).numel().

    Example:
        >>> import torch
        >>> A = torch.randn(3, 3, dtype=torch.float64)
        >>> J = function_jacobian(lambda x: x + A @ x, torch.zeros(3))
        >>> torch.allclose(J.dense(), torch.eye(3, dtype=torch.float64) + A)
        True
    """
    shape = tuple(x.shape)

    def flat(v: Tensor) -> Tensor:
        return fn(v.reshape(shape).clone()).reshape(-1)

    x0 = x.detach().to(dtype).reshape(-1)
    with torch.no_grad():
        m = flat(x0).numel()
    return JacobianOperator(flat, x0, m, zero_rows)


def module_jacobian(module: nn.Module, x: Tensor, *,
                    dtype: torch.dtype = torch.float64) -> JacobianOperator:
    """The Jacobian of any nn.Module at input ``x`` (as the module takes it, batch dim included).

    The module is deep-copied to ``dtype`` and eval mode; the original is untouched.

    Args:
        module: e.g. ``model.get_submodule("layer1.0.conv1")`` or a whole network.
        x: (1, *shape) input batch of one (or whatever shape the module expects).

    Returns:
        JacobianOperator of shape (module(x).numel(), x.numel()) on the module's device.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> lin = nn.Linear(3, 2)
        >>> J = module_jacobian(lin, torch.randn(1, 3))
        >>> J.shape, torch.allclose(J.dense(), lin.weight.double())
        ((2, 3), True)
    """
    clone = analysis_copy(module, dtype)
    x0 = x.detach().to(device=_device(clone, x), dtype=dtype)
    pure = _Pure(clone, tuple(x0.shape))
    with torch.no_grad():
        m = pure(x0.reshape(-1)).numel()
    return JacobianOperator(pure, x0.reshape(-1), m)


def _unit_input(unit: Unit, x: Tensor) -> Tensor:
    """x as a batch of one (1, *unit.in_shape); ValueError for any other shape."""
    shape = tuple(unit.in_shape)
    if x.dim() == len(shape):
        x = x.unsqueeze(0)
    if x.dim() != len(shape) + 1 or x.shape[0] != 1:
        dims = ", ".join("CHW"[i] if len(shape) == 3 else f"d{i}" for i in range(len(shape)))
        raise ValueError(f"unit {unit.name!r}: expected one input ({dims}) or (1, {dims}), e.g. "
                         f"capture(...).inputs[name][i]; got shape {tuple(x.shape)}")
    if tuple(x.shape[1:]) != shape:
        raise ValueError(f"unit {unit.name!r} takes inputs of shape {tuple(unit.in_shape)} (found "
                         f"by units() at the model's input shape); got {tuple(x.shape[1:])}. "
                         "Fix: pass the unit's own input, capture(model, images, "
                         "units).inputs[unit.name][i], or rediscover the units for images of "
                         "this size: units(model, (C, H, W))")
    return x


def _variant(unit: Unit, x: Tensor, variant: str, alpha: float, dtype: torch.dtype,
             ) -> JacobianOperator:
    if variant != "unit" and unit.parts is None:
        raise ValueError(f"unit {unit.name!r} ({type(unit.module).__name__}) has no known "
                         f"shortcut/residual split, so its {variant} branch cannot be separated")
    x = _unit_input(unit, x)
    u = copy_unit(unit, dtype)
    x0 = x.detach().to(device=_device(u.module, x), dtype=dtype)
    pure = _Pure(_UnitForward(u, variant, alpha), tuple(x0.shape))
    with torch.no_grad():
        m = pure(x0.reshape(-1)).numel()
    zero = relu_off(u, x0, alpha) if variant == "unit" else None
    factors = _branch_factors(u, x0, alpha) if variant == "unit" else None
    return JacobianOperator(pure, x0.reshape(-1), m, zero, factors)


def _branch_factors(unit: Unit, x: Tensor, alpha: float) -> BranchFactors | None:
    """The factored form of a square unit with an identity shortcut and a known branch split."""
    p = unit.parts
    if p is None or p.split is None or p.projection or unit.in_shape != unit.out_shape:
        return None
    return BranchFactors(alpha, *p.split, x)


def relu_off(unit: Unit, x: Tensor, alpha: float = 1.0) -> Tensor | None:
    """(m,) bool mask of outputs where the unit's output ReLU is off (α·S(x) + R(x) ≤ 0).

    Those rows of J are exactly zero (torch's ReLU derivative at 0 is 0). None when the unit
    has no output ReLU or no known parts.

    Args:
        unit: from :func:`resdyn.units`.
        x: (1, *unit.in_shape) input batch of one, in the unit's own dtype.
        alpha: shortcut scale, as in :func:`unit_jacobian`.

    Example:
        >>> import torch
        >>> from resdyn import load_model, units
        >>> unit = units(load_model("cifar-resnet20", in_channels=1), (1, 8, 8))[1]
        >>> off = relu_off(unit, torch.randn(1, 16, 8, 8))
        >>> off.shape, off.dtype
        (torch.Size([1024]), torch.bool)
    """
    p = unit.parts
    if p is None or not isinstance(p.activation, nn.ReLU):
        return None
    with torch.no_grad():
        pre = alpha * p.shortcut(x.clone()) + p.residual(x.clone())
    return (pre <= 0).reshape(-1)


def unit_jacobian(unit: Unit | nn.Module, x: Tensor, name: str | None = None, *,
                  alpha: float = 1.0, dtype: torch.dtype = torch.float64) -> JacobianOperator:
    """J of the unit x -> σ(α·S(x) + R(x)) at x; alpha = 1 is the unit itself.

    Two forms:

    - ``unit_jacobian(unit, x)``: ``unit`` from :func:`resdyn.units`, ``x`` the unit's own
      input (``unit.in_shape``, with or without a batch dimension of 1), e.g.
      ``capture(model, xb, us).inputs[unit.name][i]``.
    - ``unit_jacobian(model, x, "stages.1.1")``: ``model`` a network, ``x`` an input of the
      network ((C, H, W), or a batch of one (1, C, H, W)) and the unit's name; the units are
      found at ``x``'s shape and the named unit's input is captured from the forward pass, so
      this is ``unit_jacobian(u, capture(model, x[None], [u]).inputs[u.name][0])``.

    Args:
        unit: a :class:`~resdyn.models.units.Unit`, or a model (with ``name``).
        x: the unit's input, or the model's (with ``name``).
        name: the unit's name (``Unit.name``, as ``resdyn units`` lists them); only with a model.
        alpha: shortcut scale; J = diag(σ'(α S(x) + R(x)))(α J_S + J_R).
        dtype: working precision (float64 by default).

    Returns:
        JacobianOperator of shape (n_out, n_in) with ``zero_rows`` set when σ is a ReLU.

    Raises:
        ValueError: an input whose shape is not ``unit.in_shape`` (the message names both), a
            model input that is not one input or a batch of one, a ``name`` the model has no
            unit of (the message lists the valid names), or alpha != 1 on a unit without a
            known split.
        TypeError: a model without ``name``, a name with a Unit, or neither a Unit nor a model.

    Example:
        >>> import torch
        >>> from resdyn import load_model, units
        >>> us = units(load_model("cifar-resnet20", in_channels=1), (1, 8, 8))
        >>> J = unit_jacobian(us[0], torch.randn(16, 8, 8))
        >>> J.shape
        (1024, 1024)
        >>> model = load_model("digits-resnet20")
        >>> unit_jacobian(model, torch.zeros(1, 8, 8), "stages.1.1").shape  # 32 channels x 4 x 4
        (512, 512)
    """
    if isinstance(unit, Unit):
        if name is not None:
            raise TypeError("unit_jacobian(unit, x) takes no name (the unit is given); the "
                            "named form is unit_jacobian(model, x, name)")
        return _variant(unit, x, "unit", alpha, dtype)
    if not isinstance(unit, nn.Module):
        raise TypeError(f"unit_jacobian takes a Unit (from resdyn.units) or a model "
                        f"(torch.nn.Module) with a unit name; got a {type(unit).__name__}")
    if name is None:
        raise TypeError("unit_jacobian(model, x, name): name the unit, e.g. "
                        "unit_jacobian(model, x, 'stages.1.1') (resdyn.units(model) lists them)")
    return _variant(*_named_unit(unit, x, name), "unit", alpha, dtype)


def _named_unit(model: nn.Module, x: Tensor, name: str) -> tuple[Unit, Tensor]:
    """The unit ``name`` of ``model`` and its input at the model input ``x`` (one input or a
    batch of one)."""
    from ..capture import capture
    from ..models.probe import natural_input_shape
    from ..models.units import units

    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor (the model's input); got a {type(x).__name__}")
    natural = natural_input_shape(model)
    if natural is not None and tuple(x.shape) == tuple(natural) or x.dim() == 3:
        batch = x.unsqueeze(0)
    elif natural is not None and tuple(x.shape[1:]) == tuple(natural) or x.dim() == 4:
        batch = x
    else:
        raise ValueError(f"unit_jacobian(model, x, name): x must be one input of the model "
                         f"((C, H, W)) or a batch of one ((1, C, H, W)); got shape "
                         f"{tuple(x.shape)}")
    if batch.shape[0] != 1:
        raise ValueError(f"unit_jacobian(model, x, name) linearizes at one input; got a batch "
                         f"of {batch.shape[0]} (pass x[i] for the i-th)")
    found = units(model, tuple(batch.shape[1:]))
    by_name = {u.name: u for u in found}
    if name not in by_name:
        raise ValueError(f"{type(model).__name__} has no unit {name!r}; its units are "
                         f"{', '.join(by_name)}")
    unit = by_name[name]
    p = next(model.parameters(), None)
    if p is not None:
        batch = batch.to(dtype=p.dtype, device=p.device)
    return unit, capture(model, batch, [unit]).inputs[name][0]


def residual_jacobian(unit: Unit, x: Tensor, *, dtype: torch.dtype = torch.float64,
                      ) -> JacobianOperator:
    """J_R, the Jacobian of the residual branch alone at x; shape (n_out, n_in).

    Raises:
        ValueError: the unit has no known shortcut/residual split.

    Example:
        The unit's Jacobian is D·(J_S + J_R), D the diagonal of its output ReLU
        (:func:`relu_off`):

        >>> import torch
        >>> from resdyn import load_model, units
        >>> unit = units(load_model("cifar-resnet20", in_channels=1), (1, 8, 8))[1]
        >>> x = torch.randn(16, 8, 8)
        >>> J_R, J_S = residual_jacobian(unit, x), shortcut_jacobian(unit, x)
        >>> D = torch.diag((~relu_off(unit, x[None])).double())
        >>> torch.allclose(unit_jacobian(unit, x).dense(), D @ (J_S.dense() + J_R.dense()))
        True
    """
    return _variant(unit, x, "residual", 1.0, dtype)


def shortcut_jacobian(unit: Unit, x: Tensor, *, dtype: torch.dtype = torch.float64,
                      ) -> JacobianOperator:
    """J_S, the Jacobian of the shortcut alone (identity or projection); shape (n_out, n_in).

    Example:
        >>> import torch
        >>> from resdyn import load_model, units
        >>> unit = units(load_model("cifar-resnet20", in_channels=1), (1, 8, 8))[1]
        >>> unit.kind, torch.equal(shortcut_jacobian(unit, torch.randn(16, 8, 8)).dense(),
        ...                        torch.eye(1024, dtype=torch.float64))
        ('regular', True)
    """
    return _variant(unit, x, "shortcut", 1.0, dtype)


class _Chain(nn.Module):
    def __init__(self, copies: Sequence[Unit]):
        super().__init__()
        self.copies = copies
        self.mods = nn.ModuleList([u.module for u in copies])

    def forward(self, x: Tensor) -> Tensor:
        for u in self.copies:
            x = u.forward(x)
        return x


def stage_jacobian(stage: Sequence[Unit], x: Tensor, *,
                   dtype: torch.dtype = torch.float64) -> JacobianOperator:
    """J of a stage (the composition u_L ∘ ... ∘ u_1 of its units) at the stage input x.

    Equals J_L ··· J_1 with each J_i at its own input (chain rule); zero rows are the last
    unit's killed outputs.

    Args:
        stage: units in forward order, e.g. one list of :func:`resdyn.stages`.
        x: (C, H, W) or (1, C, H, W) input of the first unit, of shape ``stage[0].in_shape``.

    Raises:
        ValueError: empty stage, or an input whose shape is not the first unit's in_shape.

    Example:
        >>> import torch
        >>> from resdyn import load_model, stages, units
        >>> us = units(load_model("cifar-resnet20", in_channels=1), (1, 8, 8))
        >>> first = stages(us)[0]          # three units, (16, 8, 8) -> (16, 8, 8)
        >>> stage_jacobian(first, torch.randn(16, 8, 8)).shape
        (1024, 1024)
    """
    if len(stage) == 0:
        raise ValueError("stage_jacobian needs at least one unit")
    x = _unit_input(stage[0], x)
    copies = [copy_unit(u, dtype) for u in stage]
    x0 = x.detach().to(device=_device(copies[0].module, x), dtype=dtype)
    with torch.no_grad():
        last_in = x0
        for u in copies[:-1]:
            last_in = u.forward(last_in.clone())
    pure = _Pure(_Chain(copies), tuple(x0.shape))
    with torch.no_grad():
        m = pure(x0.reshape(-1)).numel()
    return JacobianOperator(pure, x0.reshape(-1), m, relu_off(copies[-1], last_in))
