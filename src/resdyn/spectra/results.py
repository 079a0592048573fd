"""Named results of the spectral solvers (frozen dataclasses; numpy float64/complex128 arrays)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Density:
    """Stochastic Lanczos quadrature estimate of the spectral density of σ² (of JᵀJ or JJᵀ).

    The Gram matrix is the smaller side's, so its n eigenvalues are exactly the n = min(m, n_in)
    values σ_i². Each probe p gives a quadrature rule (nodes θ_pj, weights τ_pj, Σ_j τ_pj = 1);
    the density is the probe mean of Σ_j τ_pj·φ_h(t − θ_pj) with a Gaussian kernel φ_h.

    Attributes:
        grid: (g,) points t in σ² where the density is evaluated.
        density: (g,) estimated probability density of σ² (integrates to 1 over the real line).
        stderr: (g,) standard error of ``density`` from the spread over probes (std / sqrt(p)).
        nodes: (p, s) Ritz values θ (quadrature nodes) per probe.
        weights: (p, s) quadrature weights τ per probe.
        n: number of eigenvalues of the Gram matrix (= number of singular values).
        bandwidth: kernel width h (in σ² units).

    Example:
        >>> import torch
        >>> from resdyn.spectra import singular_values
        >>> J = torch.diag(torch.linspace(1, 2, 50, dtype=torch.float64))
        >>> d = singular_values(J, method="slq").density
        >>> d.n, d.grid.shape == d.density.shape == d.stderr.shape
        (50, True)
    """

    grid: np.ndarray
    density: np.ndarray
    stderr: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    n: int
    bandwidth: float

    def count(self, lo: float, hi: float) -> tuple[float, float]:
        """Estimated number of σ² in the interval (lo, hi] and its standard error.

        From the quadrature rules directly (no kernel): n · mean_p Σ_j τ_pj [lo < θ_pj ≤ hi].
        """
        per_probe = self.n * ((self.nodes > lo) & (self.nodes <= hi)).astype(float) * self.weights
        per_probe = per_probe.sum(axis=1)
        p = len(per_probe)
        err = per_probe.std(ddof=1) / np.sqrt(p) if p > 1 else float("nan")
        return float(per_probe.mean()), float(err)


@dataclass(frozen=True, eq=False)
class SingularValues:
    """Singular values of an operator J (m, n_in) with how they were obtained.

    Attributes:
        values: (k,) float64, descending. All min(m, n_in) values for ``dense`` without k;
            empty for ``slq`` (see ``density``).
        method: the solver that ran ("dense", "svd", "arpack", "lobpcg" or "slq"), or "zero"
            when none was needed (every row of J known zero: all values are exact zeros).
        converged: False when an iterative solver stopped short; ``message`` says what to try.
        message: convergence note or advice.
        residuals: (k,) ‖Jᵀu_i − σ_i v_i‖ (iterative methods) or None.
        error_bound: (k,) a priori bound on |σ̂_i − σ_i| (dense Gram path) or None.
        resolution: the σ below which a computed value is not resolved from zero: √δ,
            δ = a·ε·σ_max², on the Gram path (its eigenvalues of JJᵀ carry an absolute error
            ~ δ); ε·max(m, n)·σ_max for ``svd``; None for the iterative methods.
            :attr:`unresolved` counts the values under it that are not exact zeros.
        matvecs: number of products with J or Jᵀ (one vector each; block columns counted).
        seconds: wall time of the solve.
        shape: (m, n_in) of J.
        structural_zeros: rows dropped beforehand because they are known to be zero.
        reason: why ``method="auto"`` picked this method ("requested" otherwise).
        density: the SLQ estimate (``slq`` only).
        precision: the dtype of the products that gave the Jacobian's entries ("float64" or
            "float32", the operator's); the dense paths' Gram matrix and eigensolve are float64
            whatever it is.
        phases: seconds per phase of a dense solve ("build", "gram", "eigensolve"), else None.

    Example:
        >>> import torch
        >>> from resdyn.spectra import singular_values
        >>> sv = singular_values(torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)))
        >>> sv.values, sv.method, sv.converged, sv.shape
        (array([3., 2., 1.]), 'dense', True, (3, 3))
    """

    values: np.ndarray
    method: str
    converged: bool
    message: str
    residuals: np.ndarray | None
    error_bound: np.ndarray | None
    matvecs: int
    seconds: float
    shape: tuple[int, int]
    structural_zeros: int = 0
    reason: str = "requested"
    density: Density | None = None
    resolution: float | None = None
    precision: str = "float64"
    phases: dict[str, float] | None = None

    @property
    def unresolved(self) -> int:
        """Values above 0 but below :attr:`resolution`: noise of the solver, not exact."""
        if self.resolution is None:
            return 0
        v = np.asarray(self.values)
        return int(((v > 0) & (v < self.resolution)).sum())


@dataclass(frozen=True, eq=False)
class Eigenvalues:
    """Eigenvalues of a square operator J (n, n).

    Attributes:
        values: (k,) complex128 sorted by descending real part, then descending imaginary part.
        method, converged, message, matvecs, seconds, shape, structural_zeros, reason: as in
            :class:`SingularValues`.
        residuals: (k,) ‖J x_i − λ_i x_i‖ for unit eigenvectors x_i (arpack) or None (dense,
            LAPACK's backward-stable geev).
        precision: the dtype of the products, as in :class:`SingularValues` (geev is float64).

    Example:
        >>> import torch
        >>> from resdyn.spectra import eigenvalues
        >>> ev = eigenvalues(torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64))
        >>> ev.values, ev.method
        (array([0.+1.j, 0.-1.j]), 'dense')
    """

    values: np.ndarray
    method: str
    converged: bool
    message: str
    residuals: np.ndarray | None
    matvecs: int
    seconds: float
    shape: tuple[int, int]
    structural_zeros: int = 0
    reason: str = "requested"
    precision: str = "float64"


def sort_complex(values: np.ndarray) -> np.ndarray:
    """Sort by descending real part, then descending imaginary part."""
    values = np.asarray(values, dtype=np.complex128)
    return values[np.lexsort((-values.imag, -values.real))]
