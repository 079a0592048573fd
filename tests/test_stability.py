"""The stability study of paper 000: exact cases of its tasks and an end-to-end run."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import assert_figure
from torch import nn

from resdyn.data import load_data
from resdyn.metrics import plateau
from resdyn.models import cifar_resnet, units
from resdyn.models.blocks import ResidualUnit
from resdyn.runs import local_ref
from resdyn.studies import run_stability
from resdyn.studies.stability import STABILITY, StabilityConfig, resolve
from resdyn.studies.stability_claims import image_variation, partial
from resdyn.tasks.altered import interpolation_task, skip_task
from resdyn.tasks.propagation import propagation_task


def _conv_matrix(conv: nn.Conv2d, shape) -> torch.Tensor:
    n = int(np.prod(shape))
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    with torch.no_grad():
        return conv(basis).reshape(n, -1).T  # column j = A e_j


class Net(nn.Module):
    def __init__(self, activation: type[nn.Module] = nn.Identity, c: int = 2, classes: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(*[
            ResidualUnit(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.Identity(), activation())
            for _ in range(3)])
        self.head = nn.Linear(c * 16, classes)

    def forward(self, x):
        return self.head(self.body(x).flatten(1))


def test_skip_scaling_of_linear_unit_gives_alpha_i_plus_a():
    net = Net().double().eval()
    u = units(net, (2, 4, 4))[0]
    a = _conv_matrix(u.module.residual, (2, 4, 4))
    for alpha in (0.0, 0.5, 1.0, 1.7):
        row = skip_task(local_ref(net), (2, 4, 4), u.name, torch.randn(2, 4, 4, dtype=torch.float64),
                        alpha, 0, "dense", None)
        expect = torch.linalg.svdvals(alpha * torch.eye(32, dtype=torch.float64) + a).numpy()
        np.testing.assert_allclose(row["values"][0], expect, rtol=1e-10, atol=1e-12)


def test_interpolation_at_t1_keeps_spectrum_and_model():
    model = cifar_resnet(8, in_channels=1).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 8, 8)
    name = units(model, (1, 8, 8))[0].name
    one = interpolation_task(local_ref(model), (1, 8, 8), name, x, 1.0, 0, 3, "dense", None)
    from resdyn.capture import capture
    from resdyn.operators import unit_jacobian
    from resdyn.spectra import singular_values

    u = units(model, (1, 8, 8))[0]
    x_in = capture(model, x[None], [u]).inputs[name][0]
    ref = singular_values(unit_jacobian(u, x_in), method="dense").values
    np.testing.assert_allclose(one["values"][0], ref, rtol=1e-12, atol=1e-12)
    zero = interpolation_task(local_ref(model), (1, 8, 8), name, x, 0.0, 0, 3, "dense", None)
    assert not np.allclose(zero["values"][0], ref)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_predicted_growth_agrees_to_first_order_on_smooth_model():
    """With tanh activations, |predicted/actual − 1| = O(ε): it shrinks ~10x when ε does."""
    net = Net(nn.Tanh).double().eval()
    x = torch.randn(2, 4, 4, dtype=torch.float64)
    errs = []
    for eps in (1e-2, 1e-3):
        rows = propagation_task(local_ref(net), (2, 4, 4), x, 1, 0, eps, None, 2, 0)
        rows = rows[rows["perturbation"] == "fgsm"]
        errs.append(float((rows["predicted_growth"] / rows["growth"] - 1).abs().max()))
    assert errs[1] < 2e-3
    assert errs[1] < errs[0] / 5


def test_linear_network_growth_is_exact():
    """For linear units the linearization is the unit: predicted growth = actual to round-off."""
    net = Net().double().eval()
    rows = propagation_task(local_ref(net), (2, 4, 4), torch.randn(2, 4, 4, dtype=torch.float64),
                            0, 0, 0.3, None, 3, 0)
    np.testing.assert_allclose(rows["predicted_growth"], rows["growth"], rtol=1e-10)
    assert set(rows["perturbation"]) == {"fgsm", "pgd", "random-fgsm", "random-pgd"}
    adv = rows[rows["perturbation"] == "fgsm"]["delta_l2"].iloc[0]
    rnd = rows[rows["perturbation"] == "random-fgsm"]["delta_l2"].iloc[0]
    assert rnd == pytest.approx(adv, rel=1e-12)


def test_plateau_finds_the_densest_window():
    v = np.concatenate([np.linspace(0.2, 0.9, 30), np.full(50, 1.5) + np.linspace(0, 0.01, 50),
                        np.zeros(20)])
    pos, share = plateau(v)
    assert pos == pytest.approx(1.505, abs=1e-3) and share == pytest.approx(0.5)
    assert plateau(np.zeros(5)) == (pytest.approx(float("nan"), nan_ok=True), 0.0)


def test_image_variation_is_zero_for_identical_spectra():
    df = pd.DataFrame({"name": ["u", "u", "w", "w"], "kind": "regular", "stage": 0,
                       "values": [[2.0, 1.0], [2.0, 1.0], [2.0, 1.0], [1.0, 0.5]]})
    var = image_variation(df).set_index("name")
    assert var.loc["u", "max_abs"] == 0.0
    assert var.loc["w", "max_abs"] == 1.0 and var.loc["w", "mean_abs"] == 0.75
    assert var.loc["w", "relative"] == pytest.approx(0.75 / 1.125)


def test_partial_spectra_are_recognised():
    sizes = {"u": 4, "v": 3}
    full = pd.DataFrame({"name": ["u", "v"], "method": ["dense", "slq"],
                         "values": [[2.0, 1.0, 1.0, 0.0], []]})  # slq: bins from the density
    assert not partial(full, sizes)
    top = pd.DataFrame({"unit": ["u"], "method": ["arpack"], "values": [[2.0, 1.0]]})
    assert partial(top, sizes, "unit")


def test_config_rejects_bad_input():
    with pytest.raises(ValueError, match="images must be at least 2; got 1"):
        StabilityConfig(images=1)
    with pytest.raises(ValueError, match="ts must be at most 1.0"):
        StabilityConfig(ts=(0.5, 1.5))


def test_config_resolves_units_and_keeps_values_for_slq(tmp_path):
    model, data = cifar_resnet(8, in_channels=1).eval(), load_data("digits")
    with pytest.raises(ValueError, match="unknown unit 'stages.9.9'"):
        resolve(StabilityConfig(images=2, unit="stages.9.9"), model, data)
    cfg = resolve(StabilityConfig(images=2, method="slq"), model, data)
    assert cfg.unit == "stages.0.0"  # the 5th unit of a 1-unit stage is its last
    assert cfg.projection_units == ("stages.2.0",)
    from resdyn.runs.identity import model_digest
    from resdyn.runs.modelref import save_model
    from resdyn.studies.base import Context

    ctx = Context(model, save_model(model, model_digest(model), tmp_path), "m", data, cfg, tmp_path)
    tasks = STABILITY.plan(ctx).tasks
    methods = {t.analysis: t.kwargs["method"] for t in tasks if "method" in t.kwargs}
    # spectra as densities; skip scaling and interpolation need values (plateau positions)
    assert methods == {"spectra": "slq", "skip": "auto", "interpolation": "auto"}
    # tasks carry a reference to the model, never the model: each pickles small
    import pickle

    assert max(len(pickle.dumps(t)) for t in tasks) < 8_000


@pytest.mark.slow
def test_study_end_to_end_and_resume(tmp_path):
    """A whole study on a tiny model writes every table and figure; a rerun recomputes nothing."""
    model = cifar_resnet(8, in_channels=1).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = load_data("digits")
    cfg = StabilityConfig(images=2, alphas=(0.5, 1.0), ts=(0.0, 1.0), pgd_steps=2)
    r = run_stability(model, data, tmp_path, cfg, model_name="tiny")
    for name in ("spectra", "variation", "propagation", "projections", "skip", "interpolation"):
        assert (tmp_path / f"{name}.parquet").is_file()
    for fig in r.figures.values():
        assert_figure(fig)
    sp = r.tables["spectra"]
    assert len(sp) == 2 * (3 + 3) and set(sp["kind"]) == {"regular", "downsampling", "stage"}
    text = r.summary.read_text()
    assert "| most singular values of regular units lie near 1 (plateau) |" in text
    again = run_stability(model, data, tmp_path, cfg, model_name="tiny")
    assert again.tasks_run == 0
    n = r.tasks_run
    assert f"This run computed {n} of {n} tasks" in text
    assert f"computed 0 of {n} tasks" in again.summary.read_text()
    pd.testing.assert_frame_equal(again.tables["spectra"], sp)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
