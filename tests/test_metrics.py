"""Spectrum metrics against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resdyn.metrics import (
    EIG_ROUND_OFF_FACTOR,
    density_summary,
    eigen_summary,
    eigenvalues_with_bounds,
    share_below,
    singular_summary,
)
from resdyn.spectra.results import Density

EPS = np.finfo(float).eps
P = EIG_ROUND_OFF_FACTOR


def test_bins_known_answer():
    s = singular_summary(np.array([3.0, 1.02, 1.01, 1.0, 0.99, 0.985, 0.5, 1e-7, 0.0]))
    assert (s.n, s.n_above, s.n_plateau, s.n_below, s.n_zero) == (9, 2, 3, 2, 2)
    assert s.share_above == pytest.approx(2 / 9) and s.share_zero == pytest.approx(2 / 9)
    assert s.sigma_max == 3.0 and s.rank == 7
    assert s.condition == pytest.approx(3.0 / 0.5)


def test_zero_threshold_scales_with_sigma_max():
    # zero = σ ≤ 1e-6·max(1, σ_max): with σ_max = 1e4 the threshold is 1e-2
    s = singular_summary(np.array([1e4, 5e-3, 2e-2]))
    assert (s.n_zero, s.n_below, s.n_above) == (1, 1, 1)
    assert s.condition == pytest.approx(1e4 / 2e-2)
    # below 1 the threshold stays 1e-6
    s = singular_summary(np.array([0.5, 5e-7, 2e-6]))
    assert (s.n_zero, s.n_below) == (1, 2)


def test_thresholds_are_parameters():
    v = np.array([1.04, 0.97, 1e-3])
    s = singular_summary(v, plateau_tol=0.05, zero_rtol=1e-2)
    assert (s.n_plateau, s.n_zero, s.n_above, s.n_below) == (2, 1, 0, 0)


def test_empty_and_all_zero():
    s = singular_summary(np.array([]))
    assert s.n == 0 and s.sigma_max == 0.0 and s.condition == float("inf")
    s = singular_summary(np.zeros(4))
    assert s.n_zero == 4 and s.rank == 0 and s.condition == float("inf")
    with pytest.raises(ValueError, match="non-negative"):
        singular_summary(np.array([1.0, -0.5]))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=50))
def test_bins_partition(values):
    s = singular_summary(np.array(values))
    assert s.n_zero + s.n_plateau + s.n_above + s.n_below == s.n == len(values)
    assert s.share_zero + s.share_plateau + s.share_above + s.share_below == pytest.approx(1)
    assert s.rank == s.n - s.n_zero


def test_eigen_summary_known_answers():
    e = eigen_summary(np.array([2.0, -1.0, 0.5 + 1j, 0.5 - 1j]))
    assert e.share_negative == 0.25
    assert e.stiffness_signed == pytest.approx(2.0 / -1.0)
    assert e.stiffness_ratio == pytest.approx(2.0 / 0.5)
    assert e.spectral_radius == pytest.approx(2.0)
    # K₀ of paper 004: purely imaginary, no real part to compare
    k0 = eigen_summary(np.array([1j, -1j]))
    assert k0.share_negative == 0 and np.isnan(k0.stiffness_signed)
    assert np.isnan(k0.stiffness_ratio) and k0.spectral_radius == 1.0
    # exact zeros (ReLU-killed rows) and round-off are left out of the classical ratio
    z = eigen_summary(np.array([-4.0, -0.5, 0.0, 1e-18]))
    assert z.stiffness_ratio == pytest.approx(8.0) and z.share_negative == 0.5
    assert z.stiffness_signed == pytest.approx(1e-18 / -4.0)


def test_eigen_summary_says_why_a_measure_is_nan():
    assert eigen_summary(np.array([2.0, 0.5 + 1j, 0.5 - 1j])).nan_reason == ""
    z = eigen_summary(np.array([0.0, 3.0]))
    assert np.isnan(z.stiffness_signed) and z.stiffness_ratio == 1.0
    assert z.nan_reason.startswith("stiffness_signed: min Re λ = 0") and "; " not in z.nan_reason
    k0 = eigen_summary(np.array([1j, -1j]))
    assert [r.split(":")[0] for r in k0.nan_reason.split("; ")] == ["stiffness_signed",
                                                                     "stiffness_ratio"]


def _rotation(re: float, im: float) -> np.ndarray:
    return np.array([[re, -im], [im, re]])


def test_eigenvalue_bounds_are_round_off_times_the_condition_number():
    # normal: |yᴴx| = 1, the bound is p·ε‖A‖_F for every eigenvalue
    a = _rotation(1 - 1e-10, 1.9e-5)
    lam, err = eigenvalues_with_bounds(a)
    np.testing.assert_allclose(np.sort_complex(lam), [1 - 1e-10 - 1.9e-5j, 1 - 1e-10 + 1.9e-5j],
                               rtol=0, atol=1e-14)
    np.testing.assert_allclose(err, P * EPS * np.linalg.norm(a), rtol=1e-9)
    # triangular [[a, c], [0, b]]: |yᴴx| = |a − b| / sqrt((a − b)² + c²) for both eigenvalues
    a, b, c = 1 - 1e-6, 1 - 2e-6, 1.0
    tri = np.array([[a, c], [0.0, b]])
    lam, err = eigenvalues_with_bounds(tri)
    np.testing.assert_allclose(np.sort(lam.real), [b, a], rtol=0, atol=1e-14)
    s = abs(a - b) / np.hypot(a - b, c)
    np.testing.assert_allclose(err, P * EPS * np.linalg.norm(tri) / s, rtol=1e-6)
    with pytest.raises(ValueError, match="square"):
        eigenvalues_with_bounds(np.zeros((2, 3)))


def test_share_below_counts_only_real_parts_beyond_their_own_error():
    """Re λ − 1 of 1 ± i·t: −1e-10 (well conditioned) is negative; exactly 0 and round-off
    (an orthogonal similarity of the same blocks) are not; an ill-conditioned −1e-10 is not."""
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))
    blocks = np.zeros((4, 4))
    blocks[:2, :2] = _rotation(1.0, 1.9e-5)           # Re λ − 1 = 0 exactly
    blocks[2:, 2:] = _rotation(1 - 1e-10, 0.3)        # Re λ − 1 = −1e-10
    a = q @ blocks @ q.T                                # round-off ~1e-16 on every entry
    lam, err = eigenvalues_with_bounds(a)
    assert np.all(err < 1e-13)
    assert share_below(lam, err, shift=1.0) == 0.5
    assert share_below(*eigenvalues_with_bounds(blocks), shift=1.0) == 0.5
    # [[1 − 1e-10, 1], [0, 1 − 2e-10]]: Re λ − 1 = −1e-10, −2e-10 but the condition number is
    # ~1e10, so the bound (~4e-5) swamps them: not told from 0
    ill = np.array([[1 - 1e-10, 1.0], [0.0, 1 - 2e-10]])
    lam, err = eigenvalues_with_bounds(ill)
    assert np.all(lam.real - 1 < 0) and np.all(err > 1e-7)
    assert share_below(lam, err, shift=1.0) == 0.0
    assert np.isnan(share_below([], [])) and np.isnan(share_below([0.5], [np.nan]))
    assert share_below([-1.0, 1.0, 0.0], [0.0, 0.0, 0.0]) == pytest.approx(1 / 3)


def test_density_summary_matches_values_on_an_exact_rule():
    """A one-probe rule with nodes σ² and weights 1/n is the exact spectral measure."""
    sigma = np.array([3.0, 1.005, 0.995, 0.5, 0.2, 0.0, 0.0])
    dens = Density(np.zeros(1), np.zeros(1), np.zeros(1), sigma[None, :] ** 2,
                   np.full((1, len(sigma)), 1 / len(sigma)), len(sigma), 0.1)
    a, b = density_summary(dens), singular_summary(sigma)
    assert (a.n_zero, a.n_plateau, a.n_above, a.n_below) == (b.n_zero, b.n_plateau, b.n_above,
                                                             b.n_below) == (2, 2, 1, 2)
    assert a.sigma_max == pytest.approx(3.0) and np.isnan(a.condition)
