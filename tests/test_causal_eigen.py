"""Causal sequence units: the Jacobian is block lower-triangular in tokens, so its eigenvalues
are those of the T diagonal d x d blocks. Checked against the dense autograd Jacobian of a tiny
masked-attention block, and through the stiffness task against its dense path."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import resdyn
from resdyn.metrics import EIG_ROUND_OFF_FACTOR, eigenvalues_with_bounds
from resdyn.models import UnitParts
from resdyn.operators import (
    MatrixOperator,
    causal_eigenvalues,
    diagonal_blocks,
    unit_jacobian,
    upper_blocks_zero,
)
from resdyn.runs import local_ref
from resdyn.tasks.eigen import stiffness_task

pytestmark = pytest.mark.usefixtures("single_thread")

T, D = 5, 4


class CausalAttention(nn.Module):
    """x + W_o·softmax(QKᵀ/√d + causal mask)·V on (..., T, d): one head, float64."""

    masked = True

    def __init__(self, d=D, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d).double() for _ in range(4))

    def branch(self, x):
        scores = self.q(x) @ self.k(x).transpose(-1, -2) / math.sqrt(x.shape[-1])
        if self.masked:
            later = torch.ones(x.shape[-2], x.shape[-2], dtype=torch.bool, device=x.device)
            scores = scores.masked_fill(later.triu(1), float("-inf"))
        return self.o(scores.softmax(-1) @ self.v(x))

    def forward(self, x):
        return x + self.branch(x)


class Leaky(CausalAttention):
    """The same block without the mask, still declared causal (it inherits the declaration)."""

    masked = False


class Plain(CausalAttention):
    """The same causal block declared as an ordinary unit: the stiffness task's dense path."""


class TokenLinear(nn.Module):
    """x + x·Wᵀ token by token: J = I_T ⊗ (I + W), causal (block diagonal)."""

    def __init__(self, w):
        super().__init__()
        self.lin = nn.Linear(len(w), len(w), bias=False).double()
        with torch.no_grad():
            self.lin.weight.copy_(torch.as_tensor(w))

    def forward(self, x):
        return x + self.lin(x)


resdyn.declare_unit(CausalAttention, lambda m: UnitParts(residual=m.branch, causal=True))
resdyn.declare_unit(Plain, lambda m: UnitParts(residual=m.branch))
resdyn.declare_unit(TokenLinear, lambda m: UnitParts(residual=m.lin, causal=True))


def model(*blocks):
    """Blocks on (T, d), then a head to 3 logits (the stiffness task needs a loss)."""
    torch.manual_seed(1)
    return nn.Sequential(*blocks, nn.Flatten(), nn.Linear(T * D, 3).double()).eval()


def unit_and_point(block, seed=2):
    unit = resdyn.units(model(block), (T, D))[0]
    return unit, torch.randn(T, D, dtype=torch.float64, generator=torch.Generator().manual_seed(
        seed))


def dense_jacobian(unit, x):
    """(n, n) autograd Jacobian of the unit's forward on the flat (T·d,) input."""
    def f(v):
        return unit.forward(v.reshape(1, T, D)).reshape(-1)
    return torch.autograd.functional.jacobian(f, x.reshape(-1))


def test_diagonal_blocks_are_the_dense_jacobians_diagonal_and_the_rest_above_is_zero():
    unit, x = unit_and_point(CausalAttention())
    assert unit.parts.causal and unit.in_shape == (T, D)
    full = dense_jacobian(unit, x).reshape(T, D, T, D)  # [t, a, s, i] = (J_ts)[a, i]
    blocks = diagonal_blocks(unit_jacobian(unit, x), T)
    assert blocks.shape == (T, D, D) and blocks.dtype == torch.float64
    for t in range(T):
        torch.testing.assert_close(blocks[t], full[t, :, t, :], rtol=0, atol=1e-12)
        for s in range(t + 1, T):
            assert (full[t, :, s, :] == 0.0).all(), (t, s)
        # the attention mixes tokens: the blocks below the diagonal are not zero
        assert all((full[t, :, s, :] != 0).any() for s in range(t))


def test_causal_eigenvalues_are_those_of_the_whole_jacobian():
    unit, x = unit_and_point(CausalAttention())
    lam = causal_eigenvalues(unit_jacobian(unit, x), T)
    expect = np.linalg.eigvals(dense_jacobian(unit, x).numpy())
    assert lam.dtype == np.complex128 and lam.shape == (T * D,)
    np.testing.assert_allclose(np.sort_complex(lam), np.sort_complex(expect), rtol=1e-9,
                               atol=1e-12)
    # sorted as resdyn.spectra.eigenvalues: descending real part, then imaginary part
    np.testing.assert_array_equal(lam, lam[np.lexsort((-lam.imag, -lam.real))])


def test_block_triangular_matrix_known_answer():
    # T = 3 tokens of d = 2: diagonal blocks diag(1, 2), a rotation (±i), [[3, 1], [0, 3]]
    j = np.zeros((6, 6))
    j[0:2, 0:2] = np.diag([1.0, 2.0])
    j[2:4, 2:4] = [[0.0, -1.0], [1.0, 0.0]]
    j[4:6, 4:6] = [[3.0, 1.0], [0.0, 3.0]]
    j[np.tril_indices(6, -2)] += 7.0  # below the diagonal blocks: no effect on the eigenvalues
    j[2:4, 0:2], j[4:6, 0:4] = 7.0, 7.0
    op = MatrixOperator(torch.tensor(j))
    np.testing.assert_array_equal(causal_eigenvalues(op, 3), [3, 3, 2, 1, 1j, -1j])
    assert upper_blocks_zero(op, 3)
    assert upper_blocks_zero(op, 1)  # one token: nothing above the diagonal
    assert not upper_blocks_zero(op, 2)  # in blocks of 3 the rotation crosses the diagonal
    with pytest.raises(ValueError, match=r"block J\[0, 1\] .* not causal"):
        diagonal_blocks(op, 2)


def test_blocks_are_accurate_where_the_whole_matrix_is_not():
    # every diagonal block is Q_t diag(1, 2, ..., d) Q_tᵀ (symmetric: well-conditioned values),
    # random blocks below: each value k is a T-fold eigenvalue of J in a Jordan chain through
    # the lower blocks, which geev of the whole J resolves only to about ε^(1/T)
    g = torch.Generator().manual_seed(0)
    t, d = 6, 5
    j = torch.randn(t * d, t * d, generator=g, dtype=torch.float64).tril(-1)
    values = torch.arange(1.0, d + 1, dtype=torch.float64)
    for k in range(t):
        q = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
        j[k * d:(k + 1) * d, k * d:(k + 1) * d] = q @ torch.diag(values) @ q.T
    expect = np.repeat(values.numpy()[::-1], t)
    np.testing.assert_allclose(causal_eigenvalues(MatrixOperator(j), t), expect, rtol=0,
                               atol=1e-13)
    whole = np.sort_complex(np.linalg.eigvals(j.numpy()))[::-1]
    assert np.abs(whole - expect).max() > 1e-5


def test_upper_blocks_zero_tells_the_masked_block_from_the_unmasked_one():
    for block, causal in ((CausalAttention(), True), (Leaky(), False)):
        unit, x = unit_and_point(block)
        op = unit_jacobian(unit, x)
        assert upper_blocks_zero(op, T) is causal
        assert upper_blocks_zero(op, T, probes=1, seed=torch.Generator().manual_seed(5)) is causal


def test_bad_input():
    op = MatrixOperator(torch.eye(6, dtype=torch.float64))
    with pytest.raises(ValueError, match="not a multiple of tokens = 4"):
        diagonal_blocks(op, 4)
    with pytest.raises(ValueError, match="positive int"):
        causal_eigenvalues(op, 0)
    with pytest.raises(ValueError, match="probes"):
        upper_blocks_zero(op, 3, probes=0)
    with pytest.raises(ValueError, match="6x3"):
        upper_blocks_zero(MatrixOperator(torch.ones(6, 3, dtype=torch.float64)), 3)


def task(net, blocks, **kw):
    args = dict(input_shape=(T, D), x=torch.randn(T, D, dtype=torch.float64,
                generator=torch.Generator().manual_seed(3)), label=1, image=0, blocks=blocks,
                dense_max=8, k=2, seed=0, keep_values=True)
    return stiffness_task(local_ref(net), **{**args, **kw}).set_index("block")


METRICS = ("max_real", "min_real", "share_negative", "stiffness_signed", "stiffness_ratio",
           "spectral_radius")


def values(row):
    return np.array(row["values_re"]) + 1j * np.array(row["values_im"])


def test_stiffness_task_takes_the_causal_blocks_and_agrees_with_the_dense_path():
    # dense_max = 8 ≥ d = 4 but < n = 20: a causal unit still gets every eigenvalue
    causal = task(model(CausalAttention()), ("0",)).loc["0"]
    plain = task(model(Plain()), ("0",), dense_max=T * D).loc["0"]
    assert causal["method"] == "causal-blocks" and bool(causal["converged"])
    assert causal["note"] == ("eigenvalues of the 5 diagonal 4×4 blocks (block lower-triangular "
                              "Jacobian)")
    assert plain["method"] == "dense"
    np.testing.assert_allclose(values(causal), values(plain), rtol=1e-9, atol=1e-12)
    for m in METRICS:
        assert causal[m] == pytest.approx(plain[m], rel=1e-9, abs=1e-12), m
    # a unit not declared causal, beyond dense_max, keeps the extremes (k per side) path
    extremes = task(model(Plain()), ("0",)).loc["0"]
    assert len(values(extremes)) == 4 and "Arnoldi path, n = 20 > dense_max = 8" in extremes[
        "nan_reason"]
    # a causal unit whose tokens are wider than dense_max: the same extremes path
    assert task(model(CausalAttention()), ("0",), dense_max=3).loc["0", "method"] != \
        "causal-blocks"


def test_error_bounds_per_block():
    # J = I_T ⊗ (I + W), W symmetric: each block's eigenvalues are 1 + eig(W), bound p·ε·‖I+W‖_F
    w = np.array([[0.5, 0.2, 0.0, 0.0], [0.2, -3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0],
                  [0.0, 0.0, 0.0, -1.0]])
    row = task(model(TokenLinear(w)), ("0",), error_bounds=True).loc["0"]
    assert row["method"] == "causal-blocks" and "‖J_tt‖_F" in row["note"]
    expect = np.sort(np.tile(1 + np.linalg.eigvalsh(w), T))[::-1]
    np.testing.assert_allclose(values(row), expect, rtol=0, atol=1e-14)
    # I + W's last row is exactly zero: an exact 0 with bound 0 per token; the other three
    # values of each (normal) block: p·ε·‖I + W‖_F, as eigenvalues_with_bounds gives the block
    eps = EIG_ROUND_OFF_FACTOR * np.finfo(float).eps * np.linalg.norm(np.eye(4) + w)
    np.testing.assert_allclose(eigenvalues_with_bounds((np.eye(4) + w)[:3, :3])[1], eps,
                               rtol=1e-9)
    err = np.array(row["values_err"])
    assert (err[values(row) == 0] == 0).all() and (values(row) == 0).sum() == T
    np.testing.assert_allclose(err[values(row) != 0], eps, rtol=1e-9)


def test_a_unit_declared_causal_that_is_not_is_refused():
    with pytest.raises(ValueError, match="'0' is declared causal .* but is not"):
        task(model(Leaky()), ("0",))
