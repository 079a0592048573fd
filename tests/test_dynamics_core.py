"""Finite-time Lyapunov exponents and residual alignment against known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from resdyn import capture, declare_unit, load_data, load_model, units
from resdyn.dynamics import (
    Triplets,
    exact_exponents,
    numerical_rank,
    overlap_matrix,
    qr_exponents,
    random_overlap,
    rank_resolution,
    residual_triplets,
    self_alignment,
    straightness,
    subspace_overlap,
    unit_inputs,
    zero_threshold,
)
from resdyn.metrics import power_law
from resdyn.models import UnitParts
from resdyn.models.adapters import DECLARED
from resdyn.models.surgery import copy_unit
from resdyn.operators.jacobian import relu_off, residual_jacobian
from resdyn.spectra import singular_values
from resdyn.studies.dynamics_claims import ra4_claim

F64 = torch.float64
pytestmark = pytest.mark.usefixtures("single_thread")


class TanhBlock(nn.Module):
    """x -> x + W₂ tanh(W₁ x): smooth, no exact zeros."""

    def __init__(self, n: int):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(n, n), nn.Tanh(), nn.Linear(n, n))

    def forward(self, x):
        return x + self.f(x)


class Down(nn.Module):
    """x -> P x + W₂ tanh(W₁ x), R^n -> R^m: a down-sampling unit with a projection shortcut."""

    def __init__(self, n: int, m: int):
        super().__init__()
        self.s = nn.Linear(n, m, bias=False)
        self.f = nn.Sequential(nn.Linear(n, m), nn.Tanh(), nn.Linear(m, m))

    def forward(self, x):
        return self.s(x) + self.f(x)


class LinearUnit(nn.Module):
    """x -> x + A x, Jacobian exactly I + A."""

    def __init__(self, a: torch.Tensor):
        super().__init__()
        self.lin = nn.Linear(a.shape[1], a.shape[0], bias=False, dtype=a.dtype)
        with torch.no_grad():
            self.lin.weight.copy_(a)

    def forward(self, x):
        return x + self.lin(x)


class RankOneBranch(nn.Module):
    """R(x) = c·u·(uᵀx): J_R = c·u uᵀ."""

    def __init__(self, u: torch.Tensor, c: float):
        super().__init__()
        self.u = nn.Parameter(u / u.norm())
        self.c = nn.Parameter(torch.tensor(c))

    def forward(self, x):
        return self.c * (x @ self.u).unsqueeze(-1) * self.u


class RankOneUnit(nn.Module):
    def __init__(self, u: torch.Tensor, c: float):
        super().__init__()
        self.branch = RankOneBranch(u, c)

    def forward(self, x):
        return x + self.branch(x)


@pytest.fixture
def declared():
    declare_unit(TanhBlock, lambda m: UnitParts(residual=m.f))
    declare_unit(Down, lambda m: UnitParts(shortcut=m.s, residual=m.f, projection=True))
    declare_unit(LinearUnit, lambda m: UnitParts(residual=m.lin))
    declare_unit(RankOneUnit, lambda m: UnitParts(residual=m.branch))
    yield
    for cls in (TanhBlock, Down, LinearUnit, RankOneUnit):
        DECLARED.pop(cls, None)


@pytest.fixture(scope="module")
def digits():
    """digits-resnet20, its units, and the first unit's input for the first test image."""
    model = load_model("digits-resnet20")
    us = units(model)
    x = capture(model, load_data("digits").x[:1], us).inputs[us[0].name][0]
    return model, us, x


def _reference(unit_list, x, depth):
    """dF/dx of the first ``depth`` units composed (float64 copies), by autograd."""
    copies = [copy_unit(u, F64) for u in unit_list[:depth]]
    shape = (1, *unit_list[0].in_shape)

    def f(v):
        v = v.reshape(shape)
        for u in copies:
            v = u.forward(v)
        return v.reshape(-1)

    return torch.autograd.functional.jacobian(f, x.detach().to(F64).reshape(-1),
                                              vectorize=True).numpy()


def test_exact_exponents_match_the_svd_of_the_autograd_product(digits):
    _, us, x = digits
    chain = us[:4]
    assert [u.kind for u in chain].count("downsampling") == 1
    ex = exact_exponents(chain, x, 5)
    assert [e.depth for e in ex] == [1, 2, 3, 4] and {e.method for e in ex} == {"dense"}
    assert [e.width for e in ex] == [u.n_out for u in chain]
    for e in ex:
        ref = np.linalg.svd(_reference(chain, x, e.depth), compute_uv=False)[:5]
        sigma = np.exp(e.depth * e.values)
        assert np.max(np.abs(sigma - ref) / ref) <= 1e-10, e.depth
        assert e.n_zero == 0 and e.values.dtype == np.float64


def _tanh_net(widths, seed=0):
    torch.manual_seed(seed)
    blocks = []
    for a, b in zip(widths, widths[1:], strict=False):
        blocks.append(TanhBlock(a) if a == b else Down(a, b))
    return nn.Sequential(*blocks).double().eval()


def test_qr_log_volume_is_the_log_determinant_at_every_depth(declared):
    net = _tanh_net([6] * 9)
    us = units(net, (6,))
    x = torch.randn(6, dtype=F64, generator=torch.Generator().manual_seed(1))
    qr = qr_exponents(us, x, 6, seed=3)
    for e in qr:
        prefix = net[:e.depth]
        dense = torch.autograd.functional.jacobian(lambda v, p=prefix: p(v.reshape(1, 6))[0], x)
        _, logdet = torch.linalg.slogdet(dense)
        assert e.n_zero == 0 and len(e.values) == 6
        assert abs(e.depth * e.values.sum() - float(logdet)) <= 1e-10, e.depth


def _linear_units(a, depth):
    net = nn.Sequential(*[LinearUnit(a) for _ in range(depth)]).double().eval()
    return units(net, (a.shape[0],))


def test_identical_symmetric_linear_units_have_the_exponents_log_abs_one_plus_eig(declared):
    g = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(torch.randn(4, 4, dtype=F64, generator=g))[0]
    eig = torch.tensor([0.2, 0.05, -0.1, -0.2], dtype=F64)  # |1 + a| = 1.2, 1.05, 0.9, 0.8
    expected = np.sort(np.log(np.abs(1 + eig.numpy())))[::-1]
    us = _linear_units(q @ torch.diag(eig) @ q.T, 200)
    x = torch.randn(4, dtype=F64, generator=g)
    for e in exact_exponents(us[:20], x, 4):
        np.testing.assert_allclose(e.values, expected, rtol=0, atol=1e-10)
    qr = qr_exponents(us, x, 4, seed=5)  # not seed 0: its Q_0 would be the eigenvectors q
    for e in qr:  # the log-volume is exact at every depth, single values converge as 1/l
        assert abs(e.values.sum() - expected.sum()) <= 1e-10
    err = [np.abs(qr[d - 1].values - expected).max() for d in (2, 200)]
    assert err[1] < 0.02 and err[1] < err[0] / 5, err


def test_nonsymmetric_linear_units_approach_log_abs_eig(declared):
    g = torch.Generator().manual_seed(1)
    v = torch.eye(4, dtype=F64) + 0.3 * torch.randn(4, 4, dtype=F64, generator=g)
    # well-conditioned eigenvectors: σ_4/σ_1 of B^60 stays above the zero rule's 1e-12·√4
    assert torch.linalg.cond(v) < 3
    mu = torch.tensor([1.2, 1.05, 0.9, 0.8], dtype=F64)  # moduli well separated
    b = v @ torch.diag(mu) @ torch.linalg.inv(v)
    expected = np.sort(np.log(np.abs(np.linalg.eigvals(b.numpy()))))[::-1]
    us = _linear_units(b - torch.eye(4, dtype=F64), 60)
    ex = exact_exponents(us, torch.randn(4, dtype=F64, generator=g), 4)
    err = [np.abs(ex[d - 1].values - expected).max() for d in (2, 60)]
    assert err[1] < 0.05 and err[1] < err[0] / 5, err


def test_a_symmetric_rank_one_branch_is_exactly_self_aligned(declared):
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(RankOneUnit(torch.randn(8, generator=g), 0.7)).double().eval()
    (u,) = units(net, (8,))
    t = residual_triplets(u, torch.randn(8, dtype=F64, generator=g), 1)
    assert t.left.shape == (8, 1) and t.right.shape == (8, 1)
    b = u.module.branch
    assert abs(t.sigma[0] - float(b.c.detach() * b.u.detach().norm() ** 2)) <= 1e-12
    assert abs(self_alignment(t)[0] - 1) <= 1e-12
    assert numerical_rank(*_rank_args(residual_triplets(u, torch.zeros(8), 8))) == 1


def _rank_args(t: Triplets):
    return t.sigma, rank_resolution((8, 8), t.sigma[0])


def test_independent_random_branches_overlap_like_random_subspaces(declared):
    n, k, pairs = 64, 4, 20
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(*[LinearUnit(torch.randn(n, n, generator=g) / math.sqrt(n))
                          for _ in range(2 * pairs)]).double().eval()
    ts = [residual_triplets(u, torch.zeros(n), k) for u in units(net, (n,))]
    overlaps = [subspace_overlap(a.left, b.left) for a, b in zip(ts[::2], ts[1::2], strict=True)]
    assert abs(np.mean(overlaps) - random_overlap(n, k)) <= 0.5 * k / n, np.mean(overlaps)
    m = overlap_matrix(ts[:5], side="right")
    assert m.shape == (5, 5) and np.allclose(np.diag(m), 1) and np.allclose(m, m.T)
    other = Triplets("x", np.ones(1), np.eye(3)[:, :1], np.eye(3)[:, :1], 0.0)
    assert np.isnan(overlap_matrix([ts[0], other])[0, 1])
    with pytest.raises(ValueError, match="same space"):
        subspace_overlap(ts[0].left, other.left)


def test_svds_path_matches_the_dense_triplets(declared):
    n = 64
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(LinearUnit(torch.randn(n, n, generator=g))).double().eval()
    (u,) = units(net, (n,))
    dense = residual_triplets(u, torch.zeros(n), 3)
    sparse = residual_triplets(u, torch.zeros(n), 3, dense_max=0, seed=1)
    assert sparse.method == "svds" and dense.method == "dense"
    np.testing.assert_allclose(sparse.sigma, dense.sigma, rtol=1e-10)
    np.testing.assert_allclose(self_alignment(sparse), self_alignment(dense), atol=1e-8)
    assert subspace_overlap(sparse.left, dense.left) == pytest.approx(1, abs=1e-10)


def test_straightness_of_a_line_and_a_right_angle():
    line = [torch.tensor([1.0, 2.0]) * t for t in range(5)]
    s = straightness(line)
    assert s["straightness"] == pytest.approx(1, abs=1e-12) and s["steps"] == 4
    assert s["step_cv"] == pytest.approx(0, abs=1e-12)
    assert s["step_mean"] == pytest.approx(math.sqrt(5))
    corner = straightness([torch.zeros(2), torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])])
    assert corner["straightness"] == pytest.approx(1 / math.sqrt(2), abs=1e-12)
    with pytest.raises(ValueError, match="one shape"):
        straightness([torch.zeros(2), torch.zeros(3)])


def test_the_wide_path_equals_the_dense_path(declared):
    net = _tanh_net([6, 6, 6, 4, 4, 4], seed=2)  # a 6 -> 4 down-sampling unit at depth 3
    us = units(net, (6,))
    assert [u.kind for u in us].count("downsampling") == 1
    x = torch.randn(6, dtype=F64, generator=torch.Generator().manual_seed(0))
    dense = exact_exponents(us, x, 3)
    wide = exact_exponents(us, x, 3, dense_max=0)
    assert {e.method for e in wide} == {"arpack"} and {e.method for e in dense} == {"dense"}
    for a, b in zip(dense, wide, strict=True):
        np.testing.assert_allclose(b.values, a.values, rtol=0, atol=1e-8)
    full = exact_exponents(us, x, 6, dense_max=0)  # k' = min(k, width): no room for ARPACK
    assert [len(e.values) for e in full] == [6, 6, 4, 4, 4] and full[0].method == "svd"
    qr = qr_exponents(us, x, 6)
    assert [len(e.values) for e in qr] == [6, 6, 4, 4, 4]


def test_relu_killed_rows_give_minus_infinity_never_nan(digits):
    _, us, x = digits
    chain = us[:2]
    killed = int(relu_off(copy_unit(us[0]), unit_inputs(chain, x)[0]).sum())
    assert killed > 0
    ex = exact_exponents(chain, x, chain[0].n_in)
    for e in ex:
        assert not np.isnan(e.values).any()
        assert e.n_zero >= killed and np.isneginf(e.values).sum() == e.n_zero
        assert np.all(np.isneginf(e.values[-e.n_zero:])) and np.isfinite(e.values[0])
        assert np.all(np.diff(e.values[np.isfinite(e.values)]) <= 0)


def test_a_long_non_normal_product_keeps_its_known_tiny_values_and_its_exact_zero(declared):
    """J_t = Q_t·D·Q_{t−1}ᵀ (Q_t orthogonal): J_l ⋯ J_1 = Q_l·D^l·Q_0ᵀ, so σ_i(l) = d_i^l and
    λ_i(l) = log d_i at every depth, exactly. At l = 60, σ_4/σ_1 = (0.79/1.25)^60 = 1.1e-12:
    a value the old rule (σ ≤ 1e-12·max(1, σ_1)·√n) read as zero; d_5 = 0 is a true zero."""
    depth, d = 60, torch.tensor([1.25, 1.1, 0.9, 0.79, 0.0], dtype=F64)
    n = len(d)
    g = torch.Generator().manual_seed(0)
    q = [torch.linalg.qr(torch.randn(n, n, dtype=F64, generator=g))[0] for _ in range(depth + 1)]
    net = nn.Sequential(*[LinearUnit(q[t + 1] @ torch.diag(d) @ q[t].T - torch.eye(n, dtype=F64))
                          for t in range(depth)]).double().eval()
    ex = exact_exponents(units(net, (n,)), torch.randn(n, dtype=F64, generator=g), n)
    expected = np.log(d[:4].numpy())
    sigma1, sigma4 = 1.25 ** depth, 0.79 ** depth
    assert sigma4 < 1e-12 * sigma1 * math.sqrt(n)  # the old rule's zero
    for e in ex:
        np.testing.assert_allclose(e.values[:4], expected, rtol=0, atol=1e-5)
        assert e.n_zero == 1 and np.isneginf(e.values[4]), e.depth
        assert e.resolution == pytest.approx(zero_threshold(1.25 ** e.depth, (n, n), e.depth))
    assert ex[-1].resolution < sigma4 / 10  # resolved with a margin: (5 + 60)·ε·σ_1 = 1.4e-14·σ_1
    assert zero_threshold(1e-9, (n, n), depth) == pytest.approx((5 + 60) * 2.0 ** -52 * 1e-9)


def test_the_rank_from_the_svd_equals_the_gram_paths_on_the_shipped_units(digits):
    """RA3's rank is read off the triplets' own SVD (resolution max(n)·ε·σ_1, numpy's
    matrix_rank tolerance); the Gram path (resolution √(n·ε)·σ_1) agrees wherever no value lies
    between the two resolutions: on digits-resnet20's units of every width (1024, the
    down-sampling 1024 → 512, 512, 256) at a test image, with no value there."""
    model, _, _ = digits
    image = load_data("digits").x[3:4]
    us = [u for u in units(model) if u.parts is not None]
    acts = capture(model, image, us)
    for u in (us[1], us[3], us[5], us[8]):
        x = acts.inputs[u.name][0]
        t = residual_triplets(u, x, 2)
        dense = residual_jacobian(u, x).dense().numpy()
        sigma = np.linalg.svd(dense, compute_uv=False)
        tol = sigma[0] * max(dense.shape) * np.finfo(float).eps  # numpy's matrix_rank default
        assert t.resolution == pytest.approx(tol)
        assert t.rank == numerical_rank(sigma, tol) > 0
        gram = singular_values(residual_jacobian(u, x), method="dense")
        between = int(((sigma > t.resolution) & (sigma <= gram.resolution)).sum())
        assert between == 0, u.name
        assert t.rank == int((np.asarray(gram.values) > gram.resolution).sum()), u.name
    wide = residual_triplets(us[8], acts.inputs[us[8].name][0], 2, dense_max=0)
    assert wide.method == "svds" and wide.rank is None and wide.resolution is None


def test_ra4_on_five_depths_recovers_a_planted_inverse_law_inside_its_interval():
    """σ₁ = c·L^(−1) (with 5 % seeded noise) at the five digits depths: p = 1 inside the
    fit's 95 % interval, and RA4 holds with those numbers in its evidence."""
    depths = np.array([9, 15, 21, 27, 54])
    exact = power_law(depths, 8.0 / depths)
    assert exact.p == pytest.approx(1.0, abs=1e-12) and exact.c == pytest.approx(8.0)
    noisy = 8.0 / depths * np.exp(np.random.default_rng(0).normal(0, 0.05, depths.size))
    fit = power_law(depths, noisy)
    assert fit.p_low < 1.0 < fit.p_high and fit.p_high - fit.p_low < 0.5 and fit.n == 5
    law = pd.DataFrame({"model": [f"r{L}" for L in depths], "units": depths,
                        "sigma1_median": noisy})
    claim = ra4_claim({"depth_law": law})
    assert claim.held is True
    assert f"p = {fit.p:.3f} (95 % interval {fit.p_low:.3f} to {fit.p_high:.3f}" in claim.evidence
    half = law.assign(sigma1_median=4.0 / np.sqrt(depths))  # p = 1/2: the interval misses 1
    assert ra4_claim({"depth_law": half}).held is False


def test_bad_input_is_refused_with_the_fix(digits):
    _, us, x = digits
    with pytest.raises(ValueError, match="consecutive"):
        exact_exponents([us[0], us[4]], x, 2)
    with pytest.raises(ValueError, match="takes one input of shape"):
        qr_exponents(us[:2], x[0], 2)
    with pytest.raises(ValueError, match="positive int"):
        qr_exponents(us[:2], x, 0)
    with pytest.raises(ValueError, match="not square"):
        self_alignment(Triplets("d", np.ones(1), np.eye(3)[:, :1], np.eye(2)[:, :1], 0.0))
    with pytest.raises(ValueError, match="1 <= k <= n"):
        random_overlap(3, 4)
