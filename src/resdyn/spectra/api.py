"""Entry points: :func:`singular_values` and :func:`eigenvalues`, methods picked by name.

Adding a solver is one function with the signature ``(op, k, which, **options)`` and one line in
``SINGULAR_METHODS`` or ``EIGEN_METHODS``.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable, Iterable

import numpy as np
import torch

from .._torch import precision_name
from ..operators.base import LinearOperator, MatrixOperator
from ._util import check_which
from .block import EIGEN_WHICH as BLOCK_EIGEN_WHICH
from .block import block_eigenvalues, block_singular_values
from .dense import dense_eigenvalues, dense_singular_values, svd_singular_values
from .krylov import arpack_eigenvalues, arpack_singular_values
from .lobpcg import lobpcg_singular_values
from .results import Eigenvalues, SingularValues
from .slq import slq_singular_values
from .zero import is_exactly_zero, zero_eigenvalues, zero_singular_values

SINGULAR_METHODS: dict[str, Callable[..., SingularValues]] = {
    "dense": dense_singular_values,
    "svd": svd_singular_values,
    "arpack": arpack_singular_values,
    "lobpcg": lobpcg_singular_values,
    "slq": slq_singular_values,
    "block": block_singular_values,
}
EIGEN_METHODS: dict[str, Callable[..., Eigenvalues]] = {
    "dense": dense_eigenvalues,
    "arpack": arpack_eigenvalues,
    "block": block_eigenvalues,
}
#: Every ``method=`` :func:`singular_values` accepts, "auto" first (for command-line help).
SINGULAR_METHOD_NAMES: tuple[str, ...] = ("auto", *SINGULAR_METHODS)
#: Every ``method=`` :func:`eigenvalues` accepts, "auto" first.
EIGEN_METHOD_NAMES: tuple[str, ...] = ("auto", *EIGEN_METHODS)
SINGULAR_WHICH = ("largest", "smallest")
EIGEN_WHICH = ("LM", "SM", "LR", "SR", "LI", "SI")
#: ARPACK pays off when k is at most this share of the (deflated) size.
ARPACK_SHARE = 0.1
#: Below this size dense is always cheap enough.
SMALL = 512
def memory_budget(device: torch.device) -> int:
    """Bytes a dense solve may use: half the available memory of ``device``.

    CPU: MemAvailable of /proc/meminfo (free plus reclaimable cache), else free pages, else
    an assumed 8 GiB.
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 2
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def _as_operator(op: LinearOperator | torch.Tensor | np.ndarray) -> LinearOperator:
    if isinstance(op, LinearOperator):
        return op
    if isinstance(op, np.ndarray | torch.Tensor):
        t = torch.as_tensor(op)
        if t.dim() != 2:
            raise ValueError(f"expected a matrix (m, n) or a LinearOperator; got shape "
                             f"{tuple(t.shape)}")
        return MatrixOperator(t if t.is_floating_point() else t.double())
    raise TypeError(f"expected a resdyn LinearOperator, a torch.Tensor or a numpy array; got "
                    f"{type(op).__name__}")


def _pick(name: str, table: dict[str, Callable], what: str) -> Callable:
    if name not in table:
        raise ValueError(f"unknown {what} method {name!r}; valid: auto, {', '.join(table)}")
    return table[name]


def _solve(op: LinearOperator, k: int | None, method: str, which: str,
           seed: int | torch.Generator | None, options: dict,
           choose: Callable[[LinearOperator, int | None, str], tuple[str, str]],
           table: dict[str, Callable], what: str):
    """Run the named solver (or the one ``choose`` picks for "auto") and record why.

    k is passed only when given (each solver has its own default: all values, or 6 for the
    top-k ones); seed only to the solvers that take one (the randomised ones).
    """
    reason = "requested"
    if method == "auto":
        method, reason = choose(op, k, which)
    solver = _pick(method, table, what)
    args: dict = {"which": which, **options}
    if k is not None:
        args["k"] = k
    if "seed" in inspect.signature(solver).parameters:
        args["seed"] = seed
    return dataclasses.replace(solver(op, **args), reason=reason,
                               precision=precision_name(op.dtype))


def _kept_rows(op: LinearOperator) -> int:
    return op.shape[0] - (int(op.zero_rows.sum()) if op.zero_rows is not None else 0)


def _gib(b: float) -> str:
    return f"{b / 2**30:.2f} GiB"


def _on_device(op: LinearOperator, method: str, reason: str, which: str,
               supported: tuple[str, ...]) -> tuple[str, str]:
    """ARPACK's choice, or "block" for an operator off the CPU (where block supports ``which``):
    ARPACK would carry every vector to the CPU and back, one product at a time."""
    if method != "arpack" or op.device.type == "cpu" or which not in supported:
        return method, reason
    return "block", (f"{reason}; block Krylov on {op.device}: the basis and batched products "
                     "stay on the device (ARPACK would move every vector to the CPU and back)")


def choose_singular(op: LinearOperator, k: int | None, which: str = "largest",
                    ) -> tuple[str, str]:
    """(method, reason) for ``method="auto"`` from the size, the free memory, ``which`` and
    the device.

    The smallest values go to the dense path whenever it fits: ARPACK without shift-invert
    converges slowly on them (see :data:`resdyn.spectra.krylov.SLOW_SMALLEST`). Where ARPACK
    would run on an operator off the CPU, the largest values go to "block" instead (on the CPU
    ARPACK stays: fewer products, measured faster; benchmarks/README.md, part (g)).

    Example:
        >>> import torch
        >>> from resdyn.operators import MatrixOperator
        >>> method, reason = choose_singular(MatrixOperator(torch.eye(100)), None)
        >>> method                           # all values of a small block: dense
        'dense'
    """
    return _on_device(op, *_choose_singular(op, k, which), which, ("largest",))


def _choose_singular(op: LinearOperator, k: int | None, which: str) -> tuple[str, str]:
    r, n = _kept_rows(op), op.shape[1]
    a, b = min(r, n), max(r, n)
    need = 8 * (a * b + a * a)  # the float64 block and its Gram
    budget = memory_budget(op.device)
    fits = need <= budget
    if which == "smallest" and fits:
        return "dense", (f"the smallest values: the whole tail from a {a}x{b} block + Gram "
                         f"({_gib(need)} <= budget {_gib(budget)}); ARPACK is slow on them")
    if k is not None and a > SMALL and k <= ARPACK_SHARE * a:
        return "arpack", f"k={k} <= {ARPACK_SHARE:.0%} of the deflated size {a}"
    if fits:
        return "dense", f"{a}x{b} block + Gram need {_gib(need)} <= budget {_gib(budget)}"
    if k is not None and k < a:
        return "arpack", f"dense needs {_gib(need)} > budget {_gib(budget)}"
    return "slq", (f"all values requested but dense needs {_gib(need)} > budget {_gib(budget)}: "
                   "density of σ² by SLQ instead")


def singular_values(op: LinearOperator | torch.Tensor | np.ndarray, k: int | None = None,
                    method: str = "auto", which: str = "largest",
                    seed: int | torch.Generator | None = 0, **options) -> SingularValues:
    """Singular values of an operator J (m, n).

    Args:
        op: a :class:`~resdyn.operators.LinearOperator` (e.g. ``unit_jacobian(unit, x)``) or a
            matrix (m, n).
        k: how many (None: all min(m, n) for dense/svd; arpack and lobpcg default to 6).
        method: one of :data:`SINGULAR_METHOD_NAMES`: "auto", "dense" (Gram + symmetric
            eigensolver, all values), "svd" (plain SVD, all values, slower, accurate tiny
            values), "arpack" (top/bottom k, matrix-free), "lobpcg" (top k, matrix-free, block
            products), "slq" (density of σ² with error bars, matrix-free).
        which: "largest" or "smallest" (lobpcg and block: largest only).
        seed: for the random start vectors / probes.
        **options: passed to the method (e.g. tol, maxiter, ncv for arpack; tol, maxiter,
            block for lobpcg; tol, maxiter, block, basis for block; probes, steps for slq).

    Returns:
        SingularValues (values descending, method, converged, residuals or error bound,
        matvecs, seconds; ``reason`` says why auto chose the method; ``precision`` the
        operator's dtype, e.g. ``unit_jacobian(..., dtype=torch.float32)`` for float32
        products, the dense paths solving in float64 whatever it is). An operator whose rows
        are all known zero (every output killed by the output ReLU) gets k (None: min(m, n))
        exact zeros without a solver, ``method="zero"``, for every method.

    Raises:
        ValueError: unknown method or which (the message lists the valid ones), bad k.

    Example:
        >>> import torch
        >>> A = torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64))
        >>> singular_values(A).values
        array([3., 2., 1.])
    """
    op = _as_operator(op)
    check_which(which, SINGULAR_WHICH)
    check_singular_request(method, k, [op.shape])
    if is_exactly_zero(op):
        return dataclasses.replace(zero_singular_values(op, k), precision=precision_name(op.dtype))
    return _solve(op, k, method, which, seed, options, choose_singular, SINGULAR_METHODS,
                  "singular value")


def check_singular_request(method: str, k: int | None,
                           shapes: Iterable[tuple[int, int]] = ()) -> None:
    """Raise before any work if :func:`singular_values` would refuse ``method`` and ``k`` on
    an operator of one of ``shapes`` (m, n): a study checks its options against every block
    it will analyse before it claims a run folder.

    Raises:
        ValueError: unknown method (lists the valid ones), or k outside [1, min(m, n)].

    Example:
        >>> check_singular_request("dense", None, [(4, 5)])     # fine: returns None
        >>> check_singular_request("arpack", 9, [(4, 5)])
        Traceback (most recent call last):
            ...
        ValueError: k must be in [1, 4] (top-k values: the narrowest block analysed is 4 wide); got 9
    """
    if method != "auto":
        _pick(method, SINGULAR_METHODS, "singular value")
    if k is None:
        return
    narrowest = min((min(s) for s in shapes), default=None)
    if k < 1 or (narrowest is not None and k > narrowest):
        raise ValueError(f"k must be in [1, {narrowest}] (top-k values: the narrowest block "
                         f"analysed is {narrowest} wide); got {k}"
                         if narrowest is not None else f"k must be at least 1; got {k}")


def choose_eigen(op: LinearOperator, k: int | None, which: str = "LM") -> tuple[str, str]:
    """(method, reason) for ``method="auto"`` in :func:`eigenvalues`: dense where all values
    are asked for or the block is small, otherwise ARPACK on the CPU and "block" off it (for
    LM, LR and SR).

    ARPACK runs with a basis of at least 40 vectors (:data:`resdyn.spectra.krylov.EIGEN_NCV`):
    with scipy's default (20 for k = 6) it missed the real eigenvalue 2.7112956 among the 6 of
    largest real part of a 16384-wide CIFAR unit while reporting convergence; with 40 it finds
    it in as many products and agrees with the block solver to 1e-13 (benchmarks/README.md,
    part (g)).

    Raises:
        ValueError: all values requested but the dense solve does not fit in memory.

    Example:
        >>> import torch
        >>> from resdyn.operators import MatrixOperator
        >>> choose_eigen(MatrixOperator(torch.eye(100)), None)[0]
        'dense'
    """
    return _on_device(op, *_choose_eigen(op, k, which), which, BLOCK_EIGEN_WHICH)


def _choose_eigen(op: LinearOperator, k: int | None, which: str) -> tuple[str, str]:
    r = _kept_rows(op)
    need = 8 * 4 * r * r  # block, complex values, LAPACK workspace
    budget = memory_budget(op.device)
    if k is not None and r > SMALL and k <= ARPACK_SHARE * r:
        return "arpack", f"k={k} <= {ARPACK_SHARE:.0%} of the deflated size {r}"
    if need <= budget:
        return "dense", f"{r}x{r} block needs ~{_gib(need)} <= budget {_gib(budget)}"
    if k is not None and k < r - 1:
        return "arpack", f"dense needs ~{_gib(need)} > budget {_gib(budget)}"
    raise ValueError(f"all {op.shape[0]} eigenvalues need ~{_gib(need)} of memory, more than the "
                     f"budget {_gib(budget)}; pass k (e.g. k=20, which='LR') to use ARPACK")


def eigenvalues(op: LinearOperator | torch.Tensor | np.ndarray, k: int | None = None,
                method: str = "auto", which: str = "LM",
                seed: int | torch.Generator | None = 0, **options) -> Eigenvalues:
    """Eigenvalues of a square operator J (n, n), sorted by descending real part.

    Args:
        op: a square :class:`~resdyn.operators.LinearOperator` or matrix.
        k: how many (None: all, dense only).
        method: "auto", "dense" (LAPACK geev on the deflated block), "arpack" (Arnoldi) or
            "block" (block Arnoldi with its basis on the operator's device; what "auto" picks
            off the CPU where it would pick ARPACK on it, see :func:`choose_eigen`).
        which: with k: "LM", "SM", "LR", "SR", "LI" or "SI" (largest/smallest magnitude,
            real part, imaginary part), as in scipy.sparse.linalg.eigs (block: LM, LR, SR).
        seed: ARPACK start vector / block start block seed.
        **options: tol, maxiter, ncv for arpack; tol, maxiter, block, basis for block.

    Returns:
        Eigenvalues (complex128 values, method, converged, residuals, matvecs, seconds). An
        operator whose rows are all known zero gets k (None: n) exact zeros without a solver,
        ``method="zero"``.

    Raises:
        ValueError: a non-square operator (down-sampling units have singular values only),
            unknown method or which, bad k.

    Example:
        >>> import torch
        >>> eigenvalues(torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)).values
        array([0.+1.j, 0.-1.j])
    """
    op = _as_operator(op)
    m, n = op.shape
    if m != n:
        raise ValueError(f"eigenvalues need a square operator; this one is {m}x{n} (a "
                         "down-sampling unit or stage?). Use singular_values for non-square "
                         "Jacobians")
    check_which(which, EIGEN_WHICH)
    if k is not None and not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}]; got {k}")
    if method != "auto":
        _pick(method, EIGEN_METHODS, "eigenvalue")
    if is_exactly_zero(op):
        return dataclasses.replace(zero_eigenvalues(op, k), precision=precision_name(op.dtype))
    return _solve(op, k, method, which, seed, options, choose_eigen, EIGEN_METHODS, "eigenvalue")
