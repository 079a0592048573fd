"""float32 Jacobian products change nothing a study reports: σ within 1e-5·σ_max, same bins.

The rule for ``precision="float32"``: every singular value agrees with float64 to 1e-5·σ_max
and every bin count (above, plateau, below, zero) is identical, on the shipped digits models and
on a CIFAR-shaped ResNet-56. The results record the precision.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from resdyn import capture, load_data, load_model, units
from resdyn.metrics import singular_summary
from resdyn.models import calibrate_batchnorm, stages
from resdyn.operators import function_jacobian, stage_jacobian, unit_jacobian
from resdyn.spectra import PRECISIONS, precision_dtype, singular_values
from resdyn.tasks.spectrum import spectrum_row

TOLERANCE = 1e-5


def _bins(values: np.ndarray) -> tuple[int, int, int, int]:
    s = singular_summary(values)
    return s.n_above, s.n_plateau, s.n_below, s.n_zero


def _compare(target, x) -> float:
    """max |σ32 − σ64| / σ_max of one unit or stage; asserts the bins and the recorded precision."""
    rows = {p: spectrum_row(target, x, method="dense", precision=p) for p in PRECISIONS}
    v64, v32 = (np.asarray(rows[p]["values"]) for p in ("float64", "float32"))
    assert rows["float32"]["precision"] == "float32" and rows["float64"]["precision"] == "float64"
    assert _bins(v32) == _bins(v64), rows["float64"]["name"]
    return float(np.abs(v32 - v64).max() / v64[0])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits-resnet20", "digits-resnet56", "digits-resnet110"])
def test_float32_products_change_nothing_on_the_shipped_models(name, single_thread):
    model, data = load_model(name), load_data("digits")
    us = units(model, data.input_shape)
    images = 2 if name != "digits-resnet110" else 1
    acts = capture(model, data.x[:images], us)
    worst = 0.0
    for i in range(images):
        for u in us:
            worst = max(worst, _compare(u, acts.inputs[u.name][i]))
        for group in stages(us):
            worst = max(worst, _compare(group, acts.inputs[group[0].name][i]))
    assert worst <= TOLERANCE


@pytest.mark.slow
def test_float32_products_change_nothing_on_a_cifar_shaped_resnet56(single_thread):
    torch.manual_seed(0)
    model = calibrate_batchnorm(load_model("cifar-resnet56"), (3, 32, 32))
    us = units(model, (3, 32, 32))
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    acts = capture(model, x, us)
    chosen = [next(u for u in us if u.kind == "regular" and u.n_in == w) for w in (4096, 8192)]
    chosen.append(next(u for u in us if u.kind == "downsampling" and u.n_out == 4096))
    worst = max(_compare(u, acts.inputs[u.name][0]) for u in chosen)
    last = stages(us)[-1]
    worst = max(worst, _compare(last, acts.inputs[last[0].name][0]))
    assert worst <= TOLERANCE


def test_float32_path_computes_in_float64_and_widens_its_resolution(single_thread):
    """The Gram and eigensolve run in float64: a float32 operator of an exact matrix gives its
    σ to float32 round-off of the entries, and the resolution covers that round-off."""
    g = torch.Generator().manual_seed(0)
    q1, _ = torch.linalg.qr(torch.randn(300, 300, dtype=torch.float64, generator=g))
    q2, _ = torch.linalg.qr(torch.randn(300, 300, dtype=torch.float64, generator=g))
    sigma = torch.logspace(0, -4, 300, dtype=torch.float64)
    a = q1 @ torch.diag(sigma) @ q2.T
    res = {}
    for p, dtype in PRECISIONS.items():
        m = a.to(dtype)
        res[p] = singular_values(function_jacobian(lambda v, m=m: m @ v, torch.zeros(300),
                                                   dtype=dtype), method="dense")
    assert res["float32"].precision == "float32" and res["float64"].precision == "float64"
    d64 = np.abs(res["float64"].values - sigma.numpy()).max()
    d32 = np.abs(res["float32"].values - sigma.numpy()).max()
    assert d64 < 1e-12
    # float32 entries of a matrix with σ_max = 1: errors below ε₃₂, far from float32's own Gram
    # path, whose absolute σ error at the 1e-4 end would be about √(300·ε₃₂) ≈ 6e-3
    assert d32 < 1e-7
    assert res["float32"].resolution >= torch.finfo(torch.float32).eps
    assert res["float32"].error_bound.max() >= d32


def test_unknown_precision_is_refused_naming_the_valid_ones():
    with pytest.raises(ValueError, match="valid: float64, float32"):
        precision_dtype("float16")
    from resdyn.runs import RunContext
    with pytest.raises(ValueError, match="unknown precision 'half'; valid: float64, float32"):
        RunContext(precision="half")


def test_stage_and_unit_operators_take_the_precision(single_thread):
    model, data = load_model("digits-resnet20"), load_data("digits")
    us = units(model, data.input_shape)
    x = capture(model, data.x[:1], us).inputs[us[0].name][0]
    assert unit_jacobian(us[0], x, dtype=torch.float32).dtype == torch.float32
    assert stage_jacobian(stages(us)[0], x, dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize("method", ["arpack", "lobpcg"])
def test_iterative_methods_converge_on_float32_products(method, single_thread):
    """The top values by ARPACK and LOBPCG on float32 products converge (LOBPCG's default
    tolerance follows the precision: 1e-8 is below what float32 residuals can reach) and agree
    with float64 to 1e-5·σ_max."""
    model, data = load_model("digits-resnet56"), load_data("digits")
    us = units(model, data.input_shape)
    x = capture(model, data.x[:1], [us[2]]).inputs[us[2].name][0]
    ref = singular_values(unit_jacobian(us[2], x), k=5, method=method)
    got = singular_values(unit_jacobian(us[2], x, dtype=torch.float32), k=5, method=method)
    assert got.converged and got.precision == "float32", got.message
    assert np.abs(got.values - ref.values).max() <= 1e-5 * ref.values[0]
    assert got.matvecs <= 2 * ref.matvecs
