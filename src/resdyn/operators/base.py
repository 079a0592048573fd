"""Matrix-free linear operators on flat vectors: the one vector convention of resdyn.

A vector is a flat tensor ``(n,)``; a block of vectors is ``(n, k)`` (one vector per column).
An operator of shape ``(m, n)`` maps ``(n,)`` to ``(m,)`` (matvec), ``(m,)`` to ``(n,)``
(rmatvec, the adjoint), and blocks ``(n, k)`` to ``(m, k)`` (matmat) and ``(m, k)`` to ``(n, k)``
(rmatmat). Subclasses implement the four products; everything else (dense materialisation,
rows/columns, the scipy bridge, the adjoint and products) is derived here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg as spla
import torch
from torch import Tensor

#: Bytes of one batched intermediate (vectors × the wider side) while materialising: the size at
#: which a chunk's activations stay in cache. Measured on CIFAR-shaped ResNet-56 units (2-core
#: CPU, seconds per 1000 rows): 16384 wide, float64: 0.94 with 64 vectors (8 MiB), 0.84 with
#: 128, 1.84 with 256; 8192 wide, float32: 0.18 with 256 (8 MiB), 0.34 with 512; 4096-8192
#: float64 and 4096 float32 best at 8 MiB within 10 %.
CHUNK_BYTES = 8 * 2**20
#: Most vectors per chunk (narrow operators: more gains nothing, measured flat from 256 up).
CHUNK_MAX = 1024


class LinearOperator:
    """Base class: a linear map ``(n,) -> (m,)`` known through its products.

    Subclasses are frozen dataclasses with no hidden state that define ``shape``, ``dtype``,
    ``device``, ``matmat`` and ``rmatmat``; ``matvec``/``rmatvec`` default to one-column blocks.

    Attributes:
        zero_rows: optional (m,) bool tensor of rows known to be exactly zero (e.g. outputs killed
            by a ReLU); spectra solvers drop them for free speed. None when nothing is known.

    Example:
        >>> import torch
        >>> A = MatrixOperator(torch.tensor([[1., 2.], [3., 4.]]))
        >>> isinstance(A, LinearOperator), A.shape
        (True, (2, 2))
        >>> A.matvec(torch.tensor([1., 1.])), A.rmatvec(torch.tensor([1., 0.]))
        (tensor([3., 7.]), tensor([1., 2.]))
    """

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device
    zero_rows: Tensor | None = None

    def matmat(self, v: Tensor) -> Tensor:
        """J @ V: (n, k) -> (m, k)."""
        raise NotImplementedError

    def rmatmat(self, w: Tensor) -> Tensor:
        """Jᵀ @ W: (m, k) -> (n, k)."""
        raise NotImplementedError

    def matvec(self, v: Tensor) -> Tensor:
        """J @ v: (n,) -> (m,)."""
        return self.matmat(v.reshape(-1, 1)).reshape(-1)

    def rmatvec(self, w: Tensor) -> Tensor:
        """Jᵀ @ w: (m,) -> (n,)."""
        return self.rmatmat(w.reshape(-1, 1)).reshape(-1)

    @property
    def T(self) -> LinearOperator:  # noqa: N802 (numpy/scipy spelling)
        """The adjoint operator, shape (n, m)."""
        return Adjoint(self)

    def __matmul__(self, other: LinearOperator) -> LinearOperator:
        return compose(self, other)

    def chunk_size(self) -> int:
        """Vectors per batch when materialising: :data:`CHUNK_BYTES` of the wider side per
        intermediate, at most :data:`CHUNK_MAX`.
        """
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        return max(1, min(CHUNK_MAX, CHUNK_BYTES // (itemsize * max(1, *self.shape))))

    def rows(self, index: Tensor | Sequence[int], out: Tensor | None = None) -> Tensor:
        """Selected rows J[index, :], shape (len(index), n), by VJPs against unit vectors.

        Args:
            index: (r,) row indices.
            out: optional preallocated (r, n) tensor to fill (avoids a concatenated copy).
        """
        m, n = self.shape
        return self._unit_products(index, m, n, self.rmatmat, out)

    def columns(self, index: Tensor | Sequence[int], out: Tensor | None = None) -> Tensor:
        """Selected columns J[:, index] as rows of the result, shape (len(index), m).

        Returned transposed (one column of J per row) so a caller can fill a row-major buffer
        chunk by chunk; ``columns(idx).T`` is J[:, idx].
        """
        m, n = self.shape
        return self._unit_products(index, n, m, self.matmat, out)

    def _unit_products(self, index: Tensor | Sequence[int], size: int, width: int,
                       apply, out: Tensor | None) -> Tensor:
        """Rows ``apply(e_i).T`` for the unit vectors e_i (length ``size``), i in ``index``."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.device)
        out = _buffer(out, (len(index), width), self)
        step = self.chunk_size()
        for s in range(0, len(index), step):
            idx = index[s:s + step]
            e = torch.zeros(size, len(idx), dtype=self.dtype, device=self.device)
            e[idx, torch.arange(len(idx), device=self.device)] = 1
            out[s:s + len(idx)] = apply(e).T
        return out

    def dense(self) -> Tensor:
        """The matrix J, shape (m, n), built from the cheaper side (m VJPs or n JVPs).

        Memory: one (m, n) tensor plus a chunk of work; see :meth:`chunk_size`.
        """
        m, n = self.shape
        if m <= n:
            return self.rows(torch.arange(m, device=self.device))
        return self.columns(torch.arange(n, device=self.device)).T.contiguous()

    def aslinearoperator(self) -> spla.LinearOperator:
        """A scipy.sparse.linalg.LinearOperator on float64 numpy vectors (for ARPACK & co.).

        Products cross to this operator's device and dtype and back to numpy on the CPU.
        """
        return _ScipyBridge(self)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype}, "
                f"device={self.device})")


def _buffer(out: Tensor | None, shape: tuple[int, int], op: LinearOperator) -> Tensor:
    if out is None:
        return torch.empty(shape, dtype=op.dtype, device=op.device)
    if tuple(out.shape) != shape:
        raise ValueError(f"out has shape {tuple(out.shape)}; expected {shape}")
    return out


@dataclass(frozen=True, eq=False, repr=False)
class MatrixOperator(LinearOperator):
    """An explicit matrix as an operator (tests, small blocks, reference answers).

    Args:
        matrix: (m, n) tensor.
        zero_rows: optional (m,) bool tensor of rows known to be zero.

    Example:
        >>> import torch
        >>> A = MatrixOperator(torch.arange(6.).reshape(2, 3))
        >>> A.shape, A.matmat(torch.ones(3, 2))
        ((2, 3), tensor([[ 3.,  3.],
                [12., 12.]]))
    """

    matrix: Tensor
    zero_rows: Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:  # type: ignore[override]
        return tuple(self.matrix.shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> torch.dtype:  # type: ignore[override]
        return self.matrix.dtype

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return self.matrix.device

    def matmat(self, v: Tensor) -> Tensor:
        return self.matrix @ v

    def rmatmat(self, w: Tensor) -> Tensor:
        return self.matrix.T @ w

    def dense(self) -> Tensor:
        return self.matrix.clone()


class Wrapper(LinearOperator):
    """An operator derived from another one, ``op``: same dtype and device."""

    op: LinearOperator

    @property
    def dtype(self) -> torch.dtype:  # type: ignore[override]
        return self.op.dtype

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return self.op.device


@dataclass(frozen=True, eq=False, repr=False)
class Adjoint(Wrapper):
    """Jᵀ of an operator J: shape (n, m); its products are J's adjoint products.

    Example:
        >>> import torch
        >>> A = MatrixOperator(torch.arange(6.).reshape(2, 3))
        >>> At = Adjoint(A)                  # what A.T gives
        >>> At.shape, torch.equal(At.dense(), A.dense().T)
        ((3, 2), True)
    """

    op: LinearOperator

    @property
    def shape(self) -> tuple[int, int]:  # type: ignore[override]
        return (self.op.shape[1], self.op.shape[0])

    def matmat(self, v: Tensor) -> Tensor:
        return self.op.rmatmat(v)

    def rmatmat(self, w: Tensor) -> Tensor:
        return self.op.matmat(w)

    def matvec(self, v: Tensor) -> Tensor:
        return self.op.rmatvec(v)

    def rmatvec(self, w: Tensor) -> Tensor:
        return self.op.matvec(w)

    @property
    def T(self) -> LinearOperator:  # noqa: N802
        return self.op


@dataclass(frozen=True, eq=False, repr=False)
class Composed(LinearOperator):
    """The product ``ops[0] @ ops[1] @ ... @ ops[-1]`` (apply the last one first).

    For a stage of units u1, ..., uL: ``compose(J_L, ..., J_1)``. Zero rows are those of the
    first (outermost) factor.

    Example:
        >>> import torch
        >>> A = MatrixOperator(torch.tensor([[1., 2.], [3., 4.]]))
        >>> B = MatrixOperator(torch.tensor([[0., 1.], [1., 0.]]))
        >>> torch.equal(Composed((A, B)).dense(), A.dense() @ B.dense())
        True
    """

    ops: tuple[LinearOperator, ...]

    @property
    def shape(self) -> tuple[int, int]:  # type: ignore[override]
        return (self.ops[0].shape[0], self.ops[-1].shape[1])

    @property
    def dtype(self) -> torch.dtype:  # type: ignore[override]
        return self.ops[0].dtype

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return self.ops[0].device

    @property
    def zero_rows(self) -> Tensor | None:  # type: ignore[override]
        return self.ops[0].zero_rows

    def matmat(self, v: Tensor) -> Tensor:
        for op in reversed(self.ops):
            v = op.matmat(v)
        return v

    def rmatmat(self, w: Tensor) -> Tensor:
        for op in self.ops:
            w = op.rmatmat(w)
        return w

    def matvec(self, v: Tensor) -> Tensor:
        for op in reversed(self.ops):
            v = op.matvec(v)
        return v

    def rmatvec(self, w: Tensor) -> Tensor:
        for op in self.ops:
            w = op.rmatvec(w)
        return w


@dataclass(frozen=True, eq=False, repr=False)
class Restricted(Wrapper):
    """The submatrix ``J[rows][:, cols]`` of an operator J without forming J.

    Products embed a vector into zeros on the missing coordinates, apply J (or Jᵀ) and keep the
    selected coordinates. Used to drop rows known to be zero (ReLU-killed outputs).

    Attributes:
        op: the (m, n) operator.
        rows_kept: (r,) long tensor of kept row indices, or None for all.
        cols_kept: (c,) long tensor of kept column indices, or None for all.

    Example:
        >>> import torch
        >>> A = MatrixOperator(torch.arange(6.).reshape(2, 3))
        >>> Restricted(A, cols_kept=torch.tensor([0, 2])).dense()
        tensor([[0., 2.],
                [3., 5.]])
    """

    op: LinearOperator
    rows_kept: Tensor | None = None
    cols_kept: Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:  # type: ignore[override]
        m, n = self.op.shape
        return (m if self.rows_kept is None else len(self.rows_kept),
                n if self.cols_kept is None else len(self.cols_kept))

    @staticmethod
    def _embed(v: Tensor, index: Tensor | None, size: int) -> Tensor:
        if index is None:
            return v
        full = torch.zeros(size, *v.shape[1:], dtype=v.dtype, device=v.device)
        full[index] = v
        return full

    def matvec(self, v: Tensor) -> Tensor:
        out = self.op.matvec(self._embed(v, self.cols_kept, self.op.shape[1]))
        return out if self.rows_kept is None else out[self.rows_kept]

    def rmatvec(self, w: Tensor) -> Tensor:
        out = self.op.rmatvec(self._embed(w, self.rows_kept, self.op.shape[0]))
        return out if self.cols_kept is None else out[self.cols_kept]

    def matmat(self, v: Tensor) -> Tensor:
        out = self.op.matmat(self._embed(v, self.cols_kept, self.op.shape[1]))
        return out if self.rows_kept is None else out[self.rows_kept]

    def rmatmat(self, w: Tensor) -> Tensor:
        out = self.op.rmatmat(self._embed(w, self.rows_kept, self.op.shape[0]))
        return out if self.cols_kept is None else out[self.cols_kept]


def restrict(op: LinearOperator, rows: Tensor | None = None, cols: Tensor | None = None,
             ) -> LinearOperator:
    """``J[rows][:, cols]`` as an operator; ``rows``/``cols`` are index tensors or bool masks.

    Example:
        >>> import torch
        >>> A = MatrixOperator(torch.arange(6.).reshape(2, 3))
        >>> restrict(A, rows=torch.tensor([1])).dense()
        tensor([[3., 4., 5.]])
    """
    def index(sel: Tensor | None, size: int) -> Tensor | None:
        if sel is None:
            return None
        sel = torch.as_tensor(sel, device=op.device)
        if sel.dtype == torch.bool:
            if sel.numel() != size:
                raise ValueError(f"mask has {sel.numel()} entries; the operator side has {size}")
            sel = torch.nonzero(sel).reshape(-1)
        return sel.to(torch.long)

    if rows is None and cols is None:
        return op
    return Restricted(op, index(rows, op.shape[0]), index(cols, op.shape[1]))


def compose(*ops: LinearOperator) -> Composed:
    """The product ops[0] @ ops[1] @ ... (the last is applied first).

    Raises:
        ValueError: no operators, or inner shapes that do not chain (names both shapes).

    Example:
        >>> import torch
        >>> A = MatrixOperator(torch.tensor([[1., 2.], [3., 4.]]))
        >>> compose(A, A).dense()
        tensor([[ 7., 10.],
                [15., 22.]])
        >>> compose(A, MatrixOperator(torch.ones(3, 1)))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ValueError: cannot compose (2, 2) with (3, 1): inner sizes differ (compose(A, B) applies ...
    """
    if not ops:
        raise ValueError("compose needs at least one operator")
    for a, b in zip(ops, ops[1:], strict=False):
        if a.shape[1] != b.shape[0]:
            raise ValueError(f"cannot compose {a.shape} with {b.shape}: inner sizes differ "
                             "(compose(A, B) applies B first, so A.shape[1] must be B.shape[0])")
    flat: list[LinearOperator] = []
    for op in ops:
        flat.extend(op.ops if isinstance(op, Composed) else (op,))
    return Composed(tuple(flat))


class _ScipyBridge(spla.LinearOperator):
    """scipy view of a resdyn operator: numpy float64 in and out, torch inside."""

    def __init__(self, op: LinearOperator):
        super().__init__(dtype=np.dtype(np.float64), shape=op.shape)
        self.op = op

    def _in(self, a: np.ndarray) -> Tensor:
        return torch.as_tensor(np.ascontiguousarray(a, dtype=np.float64)).to(
            device=self.op.device, dtype=self.op.dtype)

    @staticmethod
    def _out(t: Tensor) -> np.ndarray:
        return t.detach().to(device="cpu", dtype=torch.float64).numpy()

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self._out(self.op.matvec(self._in(x).reshape(-1)))

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._out(self.op.rmatvec(self._in(x).reshape(-1)))

    def _matmat(self, x: np.ndarray) -> np.ndarray:
        return self._out(self.op.matmat(self._in(x)))

    def _rmatmat(self, x: np.ndarray) -> np.ndarray:
        return self._out(self.op.rmatmat(self._in(x)))

    def _adjoint(self) -> spla.LinearOperator:
        return _ScipyBridge(self.op.T)
