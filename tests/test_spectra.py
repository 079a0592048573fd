"""Spectral solvers against torch.linalg in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import resdyn.spectra.api as api
from resdyn import capture, load_model, units
from resdyn.models.blocks import ResidualUnit
from resdyn.operators import MatrixOperator, unit_jacobian
from resdyn.spectra import (
    EIGEN_METHOD_NAMES,
    SINGULAR_METHOD_NAMES,
    eigenvalues,
    singular_values,
)
from resdyn.spectra.slq import kernel_density

F64 = torch.float64
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def unit_ops():
    """Jacobians of a regular (1024x1024) and a down-sampling (512x1024) unit with their dense J."""
    torch.manual_seed(0)
    model = load_model("cifar-resnet20", in_channels=1)
    us = units(model, (1, 8, 8))
    acts = capture(model, torch.randn(1, 1, 8, 8), us)
    ops = [unit_jacobian(u, acts.inputs[u.name][0]) for u in (us[1], us[3])]
    return [(op, op.dense()) for op in ops]


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("method", ["dense", "svd"])
def test_dense_singular_values_match_svdvals(unit_ops, method):
    for op, d in unit_ops:
        ref = torch.linalg.svdvals(d).numpy()
        res = singular_values(op, method=method)
        assert res.method == method and res.converged
        assert len(res.values) == min(op.shape)
        assert np.all(np.diff(res.values) <= 0)
        assert _rel(res.values, ref) <= 1e-10
        assert res.structural_zeros == int(op.zero_rows.sum()) > 0
        # one product per kept row (or column) of J: the killed rows cost nothing
        assert res.matvecs == min(op.shape[0] - res.structural_zeros, op.shape[1])
        # the bound covers our error; the reference itself is off by round-off (ε·σ_max·const)
        assert np.all(np.abs(res.values - ref) <= res.error_bound + 64 * 2.2e-16 * ref[0])


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 30), n=st.integers(1, 30), seed=st.integers(0, 999),
       zero_share=st.floats(0, 0.7))
def test_dense_with_zero_rows_any_shape(m, n, seed, zero_share):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(m, n, generator=g, dtype=F64)
    killed = torch.rand(m, generator=g) < zero_share
    a[killed] = 0
    ref = torch.linalg.svdvals(a).numpy()
    for mask in (killed, None):  # known zero rows, and zero rows found in the materialised block
        res = singular_values(MatrixOperator(a, zero_rows=mask), method="dense")
        assert len(res.values) == min(m, n)
        np.testing.assert_allclose(res.values, ref, rtol=0, atol=1e-10 * max(ref.max(), 1))


def test_arpack_top_k_matches_dense(unit_ops):
    for op, d in unit_ops:
        ref = torch.linalg.svdvals(d).numpy()
        res = singular_values(op, k=8, method="arpack")
        assert res.converged and res.method == "arpack"
        assert _rel(res.values, ref[:8]) <= 1e-8
        assert res.residuals.max() <= 1e-8 * ref[0]
        assert res.matvecs > 0


def test_arpack_smallest_uses_known_zeros(unit_ops):
    op, d = unit_ops[0]
    res = singular_values(op, k=5, method="arpack", which="smallest")
    assert res.converged and np.all(res.values == 0)  # 400+ ReLU-killed rows: exact zeros
    assert res.matvecs == 0


def test_arpack_nonconvergence_is_reported(unit_ops):
    op, _ = unit_ops[0]
    res = singular_values(op, k=20, method="arpack", maxiter=1, ncv=21)
    assert not res.converged
    assert "did not converge" in res.message and "maxiter" in res.message
    assert len(res.values) < 20  # only what converged, never padded
    ev = eigenvalues(op, k=6, method="arpack", maxiter=1, ncv=13)
    assert not ev.converged and "did not converge" in ev.message


def test_slq_density_within_error_bars(unit_ops):
    for op, d in unit_ops:
        sigma2 = torch.linalg.svdvals(d).numpy() ** 2
        res = singular_values(op, method="slq", probes=24, steps=60, seed=3)
        dens = res.density
        assert res.method == "slq" and len(res.values) == 0 and dens.n == min(op.shape)
        exact = kernel_density(sigma2[None, :], np.full((1, len(sigma2)), 1 / len(sigma2)),
                               dens.grid, dens.bandwidth)[0]
        err = np.abs(dens.density - exact)
        # within 4 standard errors, plus a hair for the quadrature error of the smoothed density
        assert np.all(err <= 4 * dens.stderr + 1e-3 * exact.max())
        assert dens.stderr.max() > 0
        # same mass on the grid as the exact smoothed density (the kernel at 0 spills below 0)
        assert np.trapezoid(dens.density, dens.grid) == pytest.approx(
            np.trapezoid(exact, dens.grid), abs=0.02)
        count, _ = dens.count(-np.inf, np.inf)
        assert count == pytest.approx(dens.n)
        zeros, zerr = dens.count(-np.inf, 1e-12)
        assert zeros >= res.structural_zeros


def test_slq_is_seeded(unit_ops):
    op, _ = unit_ops[1]
    a, b = (singular_values(op, method="slq", probes=4, steps=20, seed=s) for s in (5, 5))
    c = singular_values(op, method="slq", probes=4, steps=20, seed=6)
    np.testing.assert_array_equal(a.density.density, b.density.density)
    assert not np.array_equal(a.density.density, c.density.density)


def _match(values: np.ndarray, ref: np.ndarray, tol: float) -> None:
    """Equal as multisets (greedy nearest matching)."""
    assert len(values) == len(ref)
    left = list(ref)
    for v in values:
        i = int(np.argmin(np.abs(np.array(left) - v)))
        assert abs(left[i] - v) <= tol, (v, left[i])
        left.pop(i)


def test_dense_eigenvalues_match_eigvals(unit_ops, unit_eigvals):
    op, d = unit_ops[0]
    ref = unit_eigvals
    res = eigenvalues(op, method="dense")
    assert res.structural_zeros == int(op.zero_rows.sum())
    _match(res.values, ref, 1e-9 * np.abs(ref).max())
    assert np.all(np.diff(res.values.real) <= 0)
    full = eigenvalues(MatrixOperator(d), method="dense")  # zero rows found, not told
    _match(full.values, ref, 1e-9 * np.abs(ref).max())


KEYS = {"LM": lambda v: -np.abs(v), "SM": np.abs, "LR": lambda v: -v.real, "SR": lambda v: v.real}


def _top_k_agree(values: np.ndarray, ref: np.ndarray, which: str, tol: float) -> None:
    """Every value is an eigenvalue, and the criterion's top k agree (a conjugate pair may be
    split at the k-th place, so compare the criterion, not the values)."""
    for v in values:
        assert np.abs(ref - v).min() <= tol
    key = KEYS[which]
    np.testing.assert_allclose(np.sort(key(values)), np.sort(key(ref))[:len(values)], atol=tol)


@pytest.fixture(scope="module")
def unit_eigvals(unit_ops):
    return torch.linalg.eigvals(unit_ops[0][1]).numpy()


def test_arpack_eigenvalues_on_the_jacobian(unit_ops, unit_eigvals):
    op, _ = unit_ops[0]
    ref = unit_eigvals
    res = eigenvalues(op, k=4, method="arpack", which="LM")
    assert res.converged and res.structural_zeros == int(op.zero_rows.sum())
    _top_k_agree(res.values, ref, "LM", 1e-8 * np.abs(ref).max())


@pytest.mark.parametrize("which", ["LM", "LR", "SR", "SM"])
def test_arpack_eigenvalues_match_dense(unit_ops, unit_eigvals, which):
    """Arnoldi on the deflated block of J (as a matrix: fast products) against geev."""
    op, d = unit_ops[0]
    ref = unit_eigvals
    res = eigenvalues(MatrixOperator(d, zero_rows=op.zero_rows), k=6, method="arpack",
                      which=which)
    assert res.converged
    _top_k_agree(res.values, ref, which, 1e-8 * np.abs(ref).max())
    assert res.residuals.max() <= 1e-8 * np.abs(ref).max()


def test_eigenvalues_of_a_known_matrix():
    k0 = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=F64)  # rotation generator: ±i
    np.testing.assert_allclose(eigenvalues(k0).values, [1j, -1j], atol=1e-15)
    kplus = torch.tensor([[2.0, -2.0], [0.0, 2.0]], dtype=F64)
    np.testing.assert_allclose(eigenvalues(kplus).values, [2, 2], atol=1e-7)


def test_non_square_eigenvalues_raise(unit_ops):
    op, _ = unit_ops[1]
    with pytest.raises(ValueError, match=r"square operator; this one is 512x1024"):
        eigenvalues(op)


def test_unknown_names_list_valid_ones():
    a = torch.eye(3, dtype=F64)
    with pytest.raises(ValueError, match="valid: auto, dense, svd, arpack, lobpcg, slq"):
        singular_values(a, method="lanczos")
    with pytest.raises(ValueError, match="valid: auto, dense, arpack"):
        eigenvalues(a, method="qr")
    with pytest.raises(ValueError, match="valid: largest, smallest"):
        singular_values(a, which="LM")
    with pytest.raises(ValueError, match="k must be in"):
        singular_values(a, k=4)


def test_auto_records_its_choice(unit_ops, monkeypatch):
    d = unit_ops[0][1]
    op = MatrixOperator(d, zero_rows=unit_ops[0][0].zero_rows)  # the choice only sees sizes
    res = singular_values(op)
    assert res.method == "dense" and "budget" in res.reason
    res = singular_values(op, k=5)
    assert res.method == "arpack" and "k=5" in res.reason
    monkeypatch.setattr(api, "memory_budget", lambda device: 1000)
    res = singular_values(op, method="auto", probes=2, steps=5)
    assert res.method == "slq" and "SLQ" in res.reason
    assert eigenvalues(op, k=4).method == "arpack"
    with pytest.raises(ValueError, match="pass k"):
        eigenvalues(op)
    assert singular_values(op, method="dense").reason == "requested"


def test_smallest_values_take_the_dense_tail_and_arpack_warns(unit_ops):
    op, d = unit_ops[0]
    res = singular_values(op, k=5, which="smallest")  # auto: the dense tail, not ARPACK
    assert res.method == "dense" and "smallest" in res.reason
    ref = np.linalg.svd(d.numpy(), compute_uv=False)
    np.testing.assert_allclose(np.sort(res.values), np.sort(ref)[:5], atol=1e-6 * ref.max())
    big = MatrixOperator(torch.eye(600, dtype=torch.float64))
    with pytest.warns(UserWarning, match="method='dense'"):
        singular_values(big, k=2, which="smallest", method="arpack")


def test_method_names_are_the_valid_ones():
    assert SINGULAR_METHOD_NAMES == ("auto", "dense", "svd", "arpack", "lobpcg", "slq", "block")
    assert EIGEN_METHOD_NAMES == ("auto", "dense", "arpack", "block")
    a = torch.diag(torch.arange(1.0, 41.0, dtype=F64))
    for name in SINGULAR_METHOD_NAMES:
        options = {"probes": 2, "steps": 4} if name == "slq" else {}
        res = singular_values(a, k=3, method=name, **options)
        assert res.converged and (name == "auto" or res.method == name)


# --------------------------------------------------------------------------- LOBPCG


def test_lobpcg_top_k_matches_dense(unit_ops):
    """Top k of a regular and a down-sampling unit agree with svdvals to 1e-10·σ_1."""
    for op, d in unit_ops:
        ref = torch.linalg.svdvals(d).numpy()
        for k in (1, 6):
            res = singular_values(op, k=k, method="lobpcg", seed=1)
            assert res.method == "lobpcg" and res.converged, res.message
            assert len(res.values) == k and np.all(np.diff(res.values) <= 0)
            assert np.abs(res.values - ref[:k]).max() <= 1e-10 * ref[0]
            assert res.residuals.shape == (k,) and res.residuals.max() <= 1e-8 * ref[0]
            assert res.matvecs > 0 and res.structural_zeros == int(op.zero_rows.sum())


@settings(max_examples=10, deadline=None)
@given(m=st.integers(2, 60), n=st.integers(2, 60), k=st.integers(1, 5), seed=st.integers(0, 99))
def test_lobpcg_any_shape_and_known_zeros(m, n, k, seed):
    """Small sizes (scipy's dense fallback), more wanted values than kept rows, both sides."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(m, n, generator=g, dtype=F64)
    killed = torch.rand(m, generator=g) < 0.5
    a[killed] = 0
    k = min(k, m, n)
    ref = torch.linalg.svdvals(a).numpy()[:k]
    res = singular_values(MatrixOperator(a, zero_rows=killed), k=k, method="lobpcg", seed=seed)
    assert res.converged, res.message
    np.testing.assert_allclose(res.values, ref, rtol=0, atol=1e-10 * max(ref.max(), 1))


def test_lobpcg_is_seeded_and_reports_nonconvergence(unit_ops):
    op, _ = unit_ops[0]
    a, b = (singular_values(op, k=3, method="lobpcg", seed=4) for _ in range(2))
    np.testing.assert_array_equal(a.values, b.values)
    short = singular_values(op, k=6, method="lobpcg", maxiter=1)
    assert not short.converged and "did not converge" in short.message
    assert "maxiter" in short.message and len(short.values) == 6
    with pytest.raises(ValueError, match="largest singular values only.*arpack"):
        singular_values(op, k=3, method="lobpcg", which="smallest")
    with pytest.raises(ValueError, match="block=2 is smaller"):
        singular_values(op, k=3, method="lobpcg", block=2)


# --------------------------------------------------------------------------- exactly zero operator


@pytest.fixture(scope="module")
def dead_unit_op():
    """A unit whose output ReLU kills every output (bias -1000): J = 0, all rows known zero."""
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 2, 3, padding=1)
    with torch.no_grad():
        conv.bias.fill_(-1e3)
    (u,) = units(nn.Sequential(ResidualUnit(conv, nn.Identity(), nn.ReLU()).eval()), (2, 4, 4),
                 names=["0"])
    op = unit_jacobian(u, torch.rand(2, 4, 4))
    assert bool(op.zero_rows.all()) and op.shape == (32, 32)
    assert torch.equal(op.dense(), torch.zeros(32, 32, dtype=F64))
    return op


@pytest.mark.parametrize("method", SINGULAR_METHOD_NAMES)
@pytest.mark.parametrize("k", [None, 3])
def test_zero_operator_singular_values_need_no_solver(dead_unit_op, method, k):
    res = singular_values(dead_unit_op, k=k, method=method)
    assert res.method == "zero" and res.converged and res.matvecs == 0
    np.testing.assert_array_equal(res.values, np.zeros(32 if k is None else k))
    assert "exactly zero" in res.message and "every output killed" in res.message
    assert "exactly zero" in res.reason and res.structural_zeros == 32


@pytest.mark.parametrize("method", EIGEN_METHOD_NAMES)
@pytest.mark.parametrize("k", [None, 3])
def test_zero_operator_eigenvalues_need_no_solver(dead_unit_op, method, k):
    res = eigenvalues(dead_unit_op, k=k, method=method)
    assert res.method == "zero" and res.converged and res.matvecs == 0
    np.testing.assert_array_equal(res.values, np.zeros(32 if k is None else k, dtype=complex))
    assert "exactly zero" in res.message


def test_zero_operator_still_checks_the_request(dead_unit_op):
    with pytest.raises(ValueError, match="unknown singular value method"):
        singular_values(dead_unit_op, method="lanczos")
    with pytest.raises(ValueError, match="k must be in"):
        singular_values(dead_unit_op, k=33)
    with pytest.raises(ValueError, match="unknown eigenvalue method"):
        eigenvalues(dead_unit_op, method="qr")


def test_dense_records_its_resolution_and_flags_what_is_under_it():
    """σ from 1 down to 1e-14: the Gram path resolves values down to √(a·ε)·σ_max and flags the
    noise under it; the plain SVD resolves down to ε·n·σ_max."""
    g = torch.Generator().manual_seed(0)
    n = 200
    q1, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    s = torch.logspace(0, -14, n, dtype=torch.float64)
    a = q1 @ torch.diag(s) @ q2.T
    true = s.numpy()
    res = singular_values(a, method="dense")
    assert res.resolution == pytest.approx(np.sqrt(n * np.finfo(float).eps), rel=1e-6)
    resolved = true > res.resolution
    # the values above the resolution are accurate to it and no noise value rises above it
    np.testing.assert_allclose(res.values[:resolved.sum()], true[resolved], atol=res.resolution)
    assert (res.values >= res.resolution).sum() == resolved.sum()
    assert res.unresolved > 0  # the tail is noise (true values down to 1e-14), and said so
    svd = singular_values(a, method="svd")
    assert svd.resolution < 1e-12 and svd.unresolved <= 10
    np.testing.assert_allclose(svd.values, true, atol=svd.resolution)
    assert singular_values(a, k=3, method="arpack").resolution is None
