"""The block Krylov solver (method="block") against dense LAPACK and ARPACK, on every device at hand.

References are LAPACK in float64 on the CPU (numpy.linalg.svd / eigvals of the dense matrix) and
ARPACK (method="arpack"); agreement is asked to 1e-8 relative to σ_max or max|λ|. Each
device-parametrised test runs on "cpu" always and on "cuda" where a CUDA device is present.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

import resdyn.spectra.api as api
from resdyn import capture, load_data, load_model, units
from resdyn.operators import MatrixOperator, unit_jacobian
from resdyn.spectra import eigenvalues, singular_values

F64 = torch.float64
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device here (benchmarks/gpu_check.sh runs it "
                                          "on a GPU machine)"))]
pytestmark = pytest.mark.usefixtures("single_thread")


def _rel(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def _eig_distance(got: np.ndarray, ref: np.ndarray) -> float:
    """Largest distance of matched eigenvalues, a value matching its conjugate too: where k cuts
    a conjugate pair, solvers may return either member."""
    cost = np.minimum(np.abs(got[:, None] - ref[None, :]),
                      np.abs(got[:, None] - ref[None, :].conj()))
    i, j = linear_sum_assignment(cost)
    return float(cost[i, j].max())


def _first(values: np.ndarray, k: int, which: str) -> np.ndarray:
    key = {"LM": -np.abs(values), "LR": -values.real, "SR": values.real}[which]
    return values[np.argsort(key, kind="stable")[:k]]


def _with_spectrum(s: np.ndarray, m: int, n: int, seed: int) -> torch.Tensor:
    """U·diag(s)·Vᵀ (m, n) with random orthonormal U, V."""
    g = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(m, len(s), generator=g, dtype=F64))[0]
    v = torch.linalg.qr(torch.randn(n, len(s), generator=g, dtype=F64))[0]
    return u @ torch.diag(torch.as_tensor(s)) @ v.T


@pytest.fixture(scope="module")
def digits_unit():
    """The Jacobian of a regular (1024 wide) and a down-sampling (1024 -> 512) unit of the
    shipped digits-resnet56 at a real image, and their dense matrices."""
    model, data = load_model("digits-resnet56"), load_data("digits")
    us = units(model, data.input_shape)
    acts = capture(model, data.x[:1], us)
    chosen = [u for u in us if u.name in ("stages.0.1", "stages.1.0")]
    return model, chosen, acts


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(600, 400), (400, 600), (500, 500)])
def test_top_singular_values_of_random_matrices(device, shape):
    a = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)), dtype=F64)
    ref = np.linalg.svd(a.numpy(), compute_uv=False)
    got = singular_values(MatrixOperator(a.to(device)), k=20, method="block")
    assert got.method == "block" and got.converged, got.message
    assert "restarts" in got.message and got.matvecs > 0 and got.shape == shape
    assert len(got.values) == 20 and np.all(np.diff(got.values) <= 0)
    assert _rel(got.values, ref[:20]) <= 1e-8
    assert got.residuals.max() <= 1e-10 * ref[0]
    arpack = singular_values(MatrixOperator(a), k=20, method="arpack")
    assert _rel(got.values, arpack.values) <= 1e-8


@pytest.mark.parametrize("device", DEVICES)
def test_clustered_spectrum_and_restarts(device):
    """A triple σ and a cluster 1e-6 apart at the top; a small basis forces thick restarts."""
    s = np.concatenate([[5.0] * 3, 4.0 - 1e-6 * np.arange(5), np.linspace(3.0, 0.1, 292)])
    a = _with_spectrum(s, 400, 300, seed=1)
    ref = np.linalg.svd(a.numpy(), compute_uv=False)
    got = singular_values(MatrixOperator(a.to(device)), k=10, method="block", block=4, basis=40)
    assert got.converged, got.message
    assert "after 0 restarts" not in got.message
    assert _rel(got.values, ref[:10]) <= 1e-8
    assert _rel(got.values, singular_values(a, k=10, method="arpack").values) <= 1e-8


def test_known_zero_rows_are_deflated_and_merged_back():
    """15 kept rows of 40: the Gram is 15x15; k = 20 asks for 5 of the known exact zeros."""
    g = torch.Generator().manual_seed(2)
    a = torch.randn(40, 30, generator=g, dtype=F64)
    killed = torch.zeros(40, dtype=torch.bool)
    killed[torch.randperm(40, generator=g)[:25]] = True
    a[killed] = 0
    ref = np.linalg.svd(a.numpy(), compute_uv=False)
    got = singular_values(MatrixOperator(a, zero_rows=killed), k=20, method="block")
    assert got.converged and got.structural_zeros == 25
    np.testing.assert_allclose(got.values, ref[:20], rtol=0, atol=1e-12 * ref[0])
    assert np.all(got.values[15:] == 0)


@pytest.mark.parametrize("device", DEVICES)
def test_unit_jacobian_matches_lapack_and_arpack(digits_unit, device):
    model, chosen, acts = digits_unit
    on = {u.name: u for u in units(copy.deepcopy(model).to(device), (1, 8, 8))}
    for unit in chosen:
        x = acts.inputs[unit.name][0]
        op = unit_jacobian(on[unit.name], x.to(device))
        ref_op = unit_jacobian(unit, x)
        dense = ref_op.dense().numpy()
        killed = int(ref_op.zero_rows.sum())
        ref = np.linalg.svd(dense, compute_uv=False)
        got = singular_values(op, k=20, method="block")
        assert got.converged and got.structural_zeros == killed > 0, got.message
        assert _rel(got.values, ref[:20]) <= 1e-8
        assert _rel(got.values, singular_values(ref_op, k=20, method="arpack").values) <= 1e-8
        if op.shape[0] != op.shape[1]:
            continue
        lam = np.linalg.eigvals(dense)
        for which in ("LR", "SR", "LM"):
            got = eigenvalues(op, k=6, which=which, method="block")
            assert got.converged and got.structural_zeros == killed, got.message
            scale = np.abs(lam).max()
            assert _eig_distance(got.values, _first(lam, 6, which)) <= 1e-8 * scale
            arpack = eigenvalues(ref_op, k=6, which=which, method="arpack")
            assert _eig_distance(got.values, arpack.values) <= 1e-8 * scale


@pytest.mark.parametrize("device", DEVICES)
def test_float32_products_within_the_float32_tolerance(digits_unit, device):
    model, chosen, acts = digits_unit
    unit = chosen[0]
    x = acts.inputs[unit.name][0]
    ref_op = unit_jacobian(unit, x)
    dense = ref_op.dense().numpy()
    on = units(copy.deepcopy(model).to(device), (1, 8, 8))[1]
    op = unit_jacobian(on, x.to(device), dtype=torch.float32)
    got = singular_values(op, k=20, method="block")
    assert got.converged and got.precision == "float32", got.message
    ref = np.linalg.svd(dense, compute_uv=False)
    assert _rel(got.values, ref[:20]) <= 1e-5
    lam = np.linalg.eigvals(dense)
    got = eigenvalues(op, k=6, which="LR", method="block")
    assert got.converged, got.message
    assert _eig_distance(got.values, _first(lam, 6, "LR")) <= 1e-5 * np.abs(lam).max()


@pytest.mark.parametrize("device", DEVICES)
def test_complex_pairs(device):
    """Rotation-scaling 2x2 blocks a ± ib in a random orthonormal basis, plus a real tail."""
    g = torch.Generator().manual_seed(3)
    re, im = np.array([3.0, 2.5, 2.0, -2.2, -2.8]), np.array([1.0, 2.0, 0.5, 1.5, 0.7])
    d = torch.zeros(300, 300, dtype=F64)
    for i, (a, b) in enumerate(zip(re, im, strict=True)):
        d[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor([[a, -b], [b, a]])
    d[10:, 10:] = torch.diag(torch.linspace(-1.5, 1.5, 290, dtype=F64))
    q = torch.linalg.qr(torch.randn(300, 300, generator=g, dtype=F64))[0]
    a = q @ d @ q.T
    lam = np.linalg.eigvals(a.numpy())
    for which, k in (("LR", 6), ("SR", 4), ("LM", 5)):
        got = eigenvalues(MatrixOperator(a.to(device)), k=k, which=which, method="block")
        assert got.converged and got.method == "block", got.message
        assert _eig_distance(got.values, _first(lam, k, which)) <= 1e-8 * np.abs(lam).max()
        assert np.all(np.diff(got.values.real) <= 0)  # sorted by descending real part
        if which == "LR":  # three whole pairs: both members, +imag first
            np.testing.assert_allclose(got.values, [3 + 1j, 3 - 1j, 2.5 + 2j, 2.5 - 2j,
                                                    2 + 0.5j, 2 - 0.5j], atol=1e-9)


def test_nonconvergence_is_reported_not_raised():
    s = 1.0 + 1e-3 * np.arange(200)[::-1]  # slowly decaying: many restarts needed
    a = _with_spectrum(s, 200, 200, seed=4)
    got = singular_values(a, k=6, method="block", maxiter=1, block=2, basis=12)
    assert not got.converged and len(got.values) == 6
    assert "did not converge" in got.message and "maxiter" in got.message
    lam = eigenvalues(a, k=6, which="LR", method="block", maxiter=1, block=2, basis=12)
    assert not lam.converged and "did not converge" in lam.message and len(lam.values) == 6


def test_bad_requests_raise_with_the_way_out():
    a = torch.eye(30, dtype=F64)
    with pytest.raises(ValueError, match="method='dense'"):
        singular_values(a, k=3, which="smallest", method="block")
    with pytest.raises(ValueError, match="LM, LR, SR.*method='arpack'"):
        eigenvalues(a, k=3, which="SM", method="block")
    with pytest.raises(ValueError, match="basis >= k \\+ block"):
        singular_values(a, k=10, method="block", block=4, basis=12)


def test_auto_picks_block_off_the_cpu(monkeypatch):
    monkeypatch.setattr(api, "memory_budget", lambda device: 2**40)
    on = {d: SimpleNamespace(shape=(4096, 4096), zero_rows=None, device=torch.device(d))
          for d in ("cpu", "cuda")}
    assert api.choose_singular(on["cpu"], 20)[0] == "arpack"
    method, reason = api.choose_singular(on["cuda"], 20)
    assert method == "block" and "stay on the device" in reason
    assert api.choose_eigen(on["cuda"], 6, "LR")[0] == "block"
    assert api.choose_eigen(on["cpu"], 6, "LR")[0] == "arpack"
    assert api.choose_eigen(on["cuda"], 6, "SM")[0] == "arpack"  # block has no SM
    assert api.choose_singular(on["cuda"], None)[0] == "dense"  # all values: unchanged
