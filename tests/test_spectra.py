"""Spectral solvers against torch.linalg in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import resdyn.spectra.api as api
from resdyn import capture, load_model, units
from resdyn.operators import MatrixOperator, unit_jacobian
from resdyn.spectra import eigenvalues, singular_values
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
    with pytest.raises(ValueError, match="valid: auto, dense, svd, arpack, slq"):
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
