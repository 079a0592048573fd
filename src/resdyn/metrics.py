"""Pure functions from spectra to numbers: singular value bins and stiffness measures.

Singular value bins (DESIGN §1, §4), in this order of precedence:
zero = σ ≤ zero_rtol·max(1, σ_max); plateau = 1 − plateau_tol ≤ σ ≤ 1 + plateau_tol (|σ − 1| ≤ tol);
above = σ > 1 + plateau_tol;
below = the rest (0 < σ < 1 − plateau_tol, not zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spectra.results import Density

ZERO_RTOL = 1e-6
PLATEAU_TOL = 0.01


@dataclass(frozen=True)
class SingularSummary:
    """Bins and summary numbers of a set of n singular values.

    Attributes:
        n: number of values.
        n_zero, n_plateau, n_above, n_below: bin counts (they sum to n).
        share_zero, share_plateau, share_above, share_below: counts / n.
        sigma_max: largest value (0 for none).
        condition: σ_max / σ_min over the non-zero values (inf if none is non-zero).
        rank: numerical rank = n − n_zero.
    """

    n: int
    n_zero: int
    n_plateau: int
    n_above: int
    n_below: int
    share_zero: float
    share_plateau: float
    share_above: float
    share_below: float
    sigma_max: float
    condition: float
    rank: int


def _shares(n: int, zero: int, plateau: int, above: int, below: int, sigma_max: float,
            condition: float) -> SingularSummary:
    d = max(n, 1)
    return SingularSummary(n, zero, plateau, above, below, zero / d, plateau / d, above / d,
                           below / d, sigma_max, condition, n - zero)


def singular_summary(values: np.ndarray, *, zero_rtol: float = ZERO_RTOL,
                     plateau_tol: float = PLATEAU_TOL) -> SingularSummary:
    """Bin singular values into zero / plateau / above / below and summarise them.

    Args:
        values: (n,) non-negative singular values, any order.
        zero_rtol: zero threshold relative to max(1, σ_max).
        plateau_tol: half-width of the plateau around 1.

    Returns:
        SingularSummary.

    Example:
        >>> s = singular_summary(np.array([2.0, 1.005, 0.5, 0.0]))
        >>> (s.n_above, s.n_plateau, s.n_below, s.n_zero, s.condition)
        (1, 1, 1, 1, 4.0)
    """
    s = np.asarray(values, dtype=np.float64).reshape(-1)
    if s.size and s.min() < 0:
        raise ValueError(f"singular values must be non-negative; got min {s.min()}")
    sigma_max = float(s.max()) if s.size else 0.0
    zero = s <= zero_rtol * max(1.0, sigma_max)
    # 1 − tol ≤ σ ≤ 1 + tol as a closed interval of floats (|σ − 1| ≤ tol would drop 0.99, 1.01)
    plateau = ~zero & (s >= 1.0 - plateau_tol) & (s <= 1.0 + plateau_tol)
    above = ~zero & ~plateau & (s > 1.0 + plateau_tol)
    below = ~zero & ~plateau & ~above
    nonzero = s[~zero]
    condition = float(sigma_max / nonzero.min()) if nonzero.size else float("inf")
    return _shares(s.size, int(zero.sum()), int(plateau.sum()), int(above.sum()),
                   int(below.sum()), sigma_max, condition)


def density_summary(density: Density, *, zero_rtol: float = ZERO_RTOL,
                    plateau_tol: float = PLATEAU_TOL) -> SingularSummary:
    """The same bins estimated from an SLQ density of σ² (counts rounded to integers).

    The estimates come from the quadrature rules (nodes θ = σ², weights); their standard errors
    are in ``density.count``. σ_max is the largest node's root; the condition number is not
    estimable from a density and is NaN.
    """
    top = float(np.sqrt(max(density.nodes.max(), 0.0)))
    z = (zero_rtol * max(1.0, top)) ** 2
    lo, hi = (1.0 - plateau_tol) ** 2, (1.0 + plateau_tol) ** 2
    zero = round(density.count(-np.inf, z)[0])
    # below: (z, lo); plateau: [lo, hi]; above: (hi, inf); nudge lo down so it is inclusive
    below = round(density.count(z, np.nextafter(lo, -np.inf))[0])
    plateau = round(density.count(np.nextafter(lo, -np.inf), hi)[0])
    above = density.n - zero - below - plateau
    return _shares(density.n, zero, plateau, max(above, 0), below, top, float("nan"))


@dataclass(frozen=True)
class EigenSummary:
    """Stiffness measures of a set of eigenvalues (DESIGN §1, paper 003).

    Attributes:
        n: number of eigenvalues.
        share_negative: share with Re λ < 0.
        stiffness_signed: max Re λ / min Re λ (negative when the real parts have both signs;
            NaN when min Re λ = 0).
        stiffness_ratio: max |Re λ| / min |Re λ| over Re λ ≠ 0 (NaN if none).
        spectral_radius: max |λ|.
        nan_reason: why each NaN measure is NaN, as "measure: why" joined by "; " (empty when
            none is NaN).
    """

    n: int
    share_negative: float
    stiffness_signed: float
    stiffness_ratio: float
    spectral_radius: float
    nan_reason: str = ""


def eigen_summary(values: np.ndarray, *, zero_rtol: float = 1e-12) -> EigenSummary:
    """Stiffness measures of eigenvalues.

    Args:
        values: (n,) complex (or real) eigenvalues.
        zero_rtol: |Re λ| ≤ zero_rtol·max(1, ρ) counts as Re λ = 0 in the classical ratio, so
            round-off does not masquerade as a tiny real part (ρ: spectral radius).

    Example:
        >>> e = eigen_summary(np.array([2.0, -1.0, 0.5 + 1j]))
        >>> (e.share_negative, e.stiffness_signed, e.stiffness_ratio, e.spectral_radius)
        (0.3333333333333333, -2.0, 4.0, 2.0)
    """
    lam = np.asarray(values, dtype=np.complex128).reshape(-1)
    nan = float("nan")
    if lam.size == 0:
        return EigenSummary(0, nan, nan, nan, nan, "; ".join(
            f"{m}: no eigenvalues" for m in ("share_negative", "stiffness_signed",
                                             "stiffness_ratio", "spectral_radius")))
    if not np.isfinite(lam).all():
        return EigenSummary(lam.size, nan, nan, nan, nan, "; ".join(
            f"{m}: {int((~np.isfinite(lam)).sum())} eigenvalue(s) not finite"
            for m in ("share_negative", "stiffness_signed", "stiffness_ratio",
                      "spectral_radius")))
    re = lam.real
    rho = float(np.abs(lam).max())
    lo, hi = float(re.min()), float(re.max())
    signed = hi / lo if lo != 0 else nan
    tiny = zero_rtol * max(1.0, rho)
    nz = np.abs(re[np.abs(re) > tiny])
    ratio = float(nz.max() / nz.min()) if nz.size else nan
    why = []
    if lo == 0:
        why.append("stiffness_signed: min Re λ = 0 (no eigenvalue has Re λ < 0), so "
                   f"max Re λ / min Re λ = {hi:.3g} / 0 is {'undefined' if hi == 0 else 'unbounded'}")
    if not nz.size:
        why.append(f"stiffness_ratio: every |Re λ| <= {tiny:.3g} (zero_rtol·max(1, ρ)), so no "
                   "real part is non-zero to divide by")
    return EigenSummary(lam.size, float((re < 0).mean()), float(signed), ratio, rho,
                        "; ".join(why))


#: p(n) of :func:`eigenvalues_with_bounds`: its bound is p·ε·‖A‖_F / |yᴴx|.
EIG_ROUND_OFF_FACTOR = 10.0


def eigenvalues_with_bounds(matrix) -> tuple[np.ndarray, np.ndarray]:
    """All eigenvalues of a dense square matrix A, each with its own error bound.

    LAPACK geev (``scipy.linalg.eig``) is backward stable: the computed λ̂_i are exact
    eigenvalues of A + E with ‖E‖ of order ε·‖A‖. To first order an eigenvalue moves by at most
    ‖E‖ / |y_iᴴ x_i| (x_i, y_i its unit right and left eigenvectors; 1 / |y_iᴴ x_i| is its
    condition number, 1 for a normal matrix). The bound is the LAPACK Users' Guide's one for
    the nonsymmetric eigenproblem (EERRBD = EPSMCH·ANORM / RCONDE) times the modest factor p(n)
    that guide leaves out: p·ε·‖A‖_F / |y_iᴴ x_i| with p = :data:`EIG_ROUND_OFF_FACTOR` (geev's
    error measured against 40-digit eigenvalues reached 3.3 ε·‖A‖_F / |yᴴx| for n = 4 to 1024)
    and the Frobenius norm (≥ ‖A‖₂) standing in for ‖A‖. Exactly defective eigenvalues
    (y_iᴴ x_i = 0) get an infinite bound.

    Args:
        matrix: (n, n) real or complex, numpy or torch; solved in float64/complex128.

    Returns:
        (values, bounds): (n,) complex128 eigenvalues in LAPACK's order and (n,) float64 bounds.

    Example:
        >>> lam, err = eigenvalues_with_bounds(np.array([[1.0, -2.0], [2.0, 1.0]]))
        >>> np.sort_complex(lam), bool(err.max() < 1e-14)
        (array([1.-2.j, 1.+2.j]), True)
    """
    import scipy.linalg

    a = np.asarray(matrix)
    a = a.astype(np.complex128 if np.iscomplexobj(a) else np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"expected a square matrix; got shape {a.shape}")
    if a.shape[0] == 0:
        return np.zeros(0, np.complex128), np.zeros(0)
    values, left, right = scipy.linalg.eig(a, left=True, right=True)
    # geev normalises every eigenvector to unit 2-norm; normalise again against round-off
    s = np.abs(np.einsum("ij,ij->j", left.conj(), right))
    s /= np.linalg.norm(left, axis=0) * np.linalg.norm(right, axis=0)
    eps = EIG_ROUND_OFF_FACTOR * np.finfo(np.float64).eps * float(np.linalg.norm(a))
    with np.errstate(divide="ignore"):
        bounds = np.where(s > 0, eps / s, np.inf)
    return values.astype(np.complex128), bounds.astype(np.float64)


def share_below(values, bounds, shift: float = 0.0) -> float:
    """Share of eigenvalues with Re λ − shift < 0 beyond their own error: Re λ − shift < −bound.

    A value whose |Re λ − shift| is within its bound (see :func:`eigenvalues_with_bounds`) is not
    distinguishable from Re λ = shift and is not counted. NaN for no values or when any bound
    is unknown (NaN).

    Example:
        >>> share_below([1 - 1e-10, 1 - 2e-16, 0.5], [1e-15, 1e-15, 1e-15], shift=1.0)
        0.6666666666666666
    """
    re = np.asarray(values, dtype=np.complex128).reshape(-1).real - shift
    err = np.asarray(bounds, dtype=np.float64).reshape(-1)
    if re.size == 0 or err.shape != re.shape or np.isnan(err).any():
        return float("nan")
    return float(np.mean(re < -err))


def plateau(values: np.ndarray, width: float = 0.02) -> tuple[float, float]:
    """Position and share of the densest window of singular values.

    The plateau of a scree plot is where the values bunch: the window [a, a + width] holding the
    most values (zeros excluded). Returns (median of the values in it, their share of all values).

    Example:
        >>> plateau(np.array([0.5, 1.0, 1.005, 1.01, 0.0]))
        (1.005, 0.6)
    """
    v = np.sort(np.asarray(values, dtype=np.float64))
    v = v[v > ZERO_RTOL * max(1.0, float(v.max(initial=0.0)))]
    if v.size == 0:
        return float("nan"), 0.0
    ends = np.searchsorted(v, v + width, side="right")
    i = int(np.argmax(ends - np.arange(v.size)))
    window = v[i:ends[i]]
    return float(np.median(window)), float(window.size / len(values))


def stopping_rule(d_scaled: float, eps: float) -> int:
    """Paper 002's depth rule L = ceil(d_scaled / ε): the blocks per section that make the mean
    scaled perturbation d_scaled / L at most ε.

    The quotient is rounded to 9 decimals first, so 3.2 / 0.1 (32.000000000000004 in floating
    point) gives 32, not 33.

    Example:
        >>> [stopping_rule(d, 0.1) for d in (4.11, 3.12, 4.58)]
        [42, 32, 46]
    """
    if eps <= 0:
        raise ValueError(f"eps must be positive; got {eps}")
    return int(np.ceil(round(d_scaled / eps, 9)))


@dataclass(frozen=True)
class PowerLaw:
    """y ≈ c · L^(−p), fitted by least squares on log y against log L.

    Attributes:
        c, p: the fit; p_low, p_high: its confidence interval (``level``, Student t with n − 2
        degrees of freedom; NaN with fewer than 3 points); r2: of the log-log fit; n: points.
    """

    c: float
    p: float
    p_low: float
    p_high: float
    r2: float
    n: int
    level: float


def power_law(depths, values, level: float = 0.95) -> PowerLaw:
    """Fit ``values`` ≈ c · depths^(−p) (both positive), with a confidence interval on p.

    Example:
        >>> fit = power_law([2, 4, 8, 16], [4.0 / L for L in (2, 4, 8, 16)])
        >>> round(fit.p, 6), round(fit.c, 6)
        (1.0, 4.0)
    """
    from scipy import stats

    x, y = np.log(np.asarray(depths, dtype=float)), np.log(np.asarray(values, dtype=float))
    if x.size < 2 or not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
        raise ValueError("power_law needs at least two positive (depth, value) points")
    res = stats.linregress(x, y)
    half = (stats.t.ppf(0.5 + level / 2, x.size - 2) * res.stderr if x.size > 2
            else float("nan"))
    p = -float(res.slope)
    return PowerLaw(float(np.exp(res.intercept)), p, float(p - half), float(p + half),
                    float(res.rvalue ** 2),
                    int(x.size), level)


def crossing_depth(depths, values, eps: float) -> float:
    """The L at which ``values`` (mean scaled perturbation per depth) first falls below ε,
    interpolated on log-log axes between the two trained depths around it; NaN if it never
    does, the first depth if it already starts below."""
    L, v = np.asarray(depths, dtype=float), np.asarray(values, dtype=float)
    below = np.flatnonzero(v < eps)
    if below.size == 0:
        return float("nan")
    i = int(below[0])
    if i == 0:
        return float(L[0])
    x0, x1, y0, y1 = np.log(L[i - 1]), np.log(L[i]), np.log(v[i - 1]), np.log(v[i])
    return float(np.exp(x0 + (np.log(eps) - y0) * (x1 - x0) / (y1 - y0)))
