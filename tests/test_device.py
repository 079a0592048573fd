"""The engine on every device at hand: the same answers as an independent CPU reference.

Each test takes ``device``: "cpu" always, "cuda" where a CUDA device is present (skipped with the
reason otherwise). ``benchmarks/gpu_check.sh`` runs this module on a GPU machine. References are
LAPACK on the CPU in float64: the SVD and eigenvalues of the full autograd Jacobian.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import reference_jacobian
from torch import nn

from resdyn import capture, load_data, load_model, units
from resdyn.models import stages
from resdyn.operators import stage_jacobian, unit_jacobian
from resdyn.spectra import eigenvalues, precision_dtype, singular_values

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device here (benchmarks/gpu_check.sh runs it "
                                          "on a GPU machine)"))]


@pytest.fixture(scope="module")
def digits():
    model, data = load_model("digits-resnet20"), load_data("digits")
    us = units(model, data.input_shape)
    return model, us, capture(model, data.x[:1], us)


def _unit_reference(unit, x) -> np.ndarray:
    return reference_jacobian(unit.module, x).numpy()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_dense_singular_values_of_a_unit(digits, device, precision, single_thread):
    model, us, acts = digits
    unit = us[1]
    x = acts.inputs[unit.name][0]
    expected = np.linalg.svd(_unit_reference(unit, x), compute_uv=False)
    model_on = copy.deepcopy(model).to(device)
    unit_on = units(model_on, (1, 8, 8))[1]
    op = unit_jacobian(unit_on, x.to(device), dtype=precision_dtype(precision))
    assert op.device.type == device
    got = singular_values(op, method="dense")
    assert got.precision == precision
    # within the path's own bound (Gram round-off, and the products' for float32), and within
    # the 1e-5·σ_max that float32 promises
    assert (np.abs(got.values - expected) <= got.error_bound + 1e-12 * expected[0]).all()
    assert np.abs(got.values - expected).max() <= 1e-5 * expected[0]


@pytest.mark.parametrize("device", DEVICES)
def test_stage_svd_and_arpack_match_the_reference(digits, device, single_thread):
    model, us, acts = digits
    stage = stages(us)[1]
    x = acts.inputs[stage[0].name][0]
    chain = nn.Sequential(*[u.module for u in stage])
    expected = np.linalg.svd(reference_jacobian(chain, x).numpy(), compute_uv=False)
    stage_on = stages(units(copy.deepcopy(model).to(device), (1, 8, 8)))[1]
    op = stage_jacobian(stage_on, x.to(device))
    for method in ("dense", "svd"):
        got = singular_values(op, method=method)
        # each within its own bound: the Gram path resolves σ only to √(a·ε)·σ_max
        assert (np.abs(got.values - expected) <= got.error_bound + 1e-12 * expected[0]).all()
    assert np.abs(got.values - expected).max() <= 1e-12 * expected[0]  # svd: every value
    top = singular_values(op, k=5, method="arpack")
    assert np.allclose(top.values, expected[:5], rtol=1e-8)


@pytest.mark.parametrize("device", DEVICES)
def test_factored_eigenvalues_of_a_unit(digits, device, single_thread):
    model, us, acts = digits
    unit = us[4]
    x = acts.inputs[unit.name][0]
    expected = np.linalg.eigvals(_unit_reference(unit, x))
    unit_on = units(copy.deepcopy(model).to(device), (1, 8, 8))[4]
    op = unit_jacobian(unit_on, x.to(device))
    assert op.factors is not None
    got = eigenvalues(op, method="dense")
    assert "branch of rank" in got.message
    # match each computed eigenvalue to its nearest reference value (both sets, both ways)
    distance = np.abs(got.values[:, None] - expected[None, :])
    scale = np.abs(expected).max()
    assert distance.min(axis=1).max() <= 1e-8 * scale
    assert distance.min(axis=0).max() <= 1e-8 * scale
