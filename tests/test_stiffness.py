"""Stiffness study (paper 003): metrics on known spectra, a linear block's eigenvalues, Arnoldi
against dense, correlations against scipy.stats, Benjamini–Hochberg by hand, bad input."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn
from typer.testing import CliRunner

from resdyn import load_model
from resdyn.cli import app
from resdyn.data import load_data
from resdyn.metrics import eigen_summary
from resdyn.models.blocks import ResidualUnit
from resdyn.runs import local_ref
from resdyn.studies import STIFFNESS, StiffnessConfig, run_study
from resdyn.studies.stiffness import stiffness_task
from resdyn.studies.stiffness_stats import benjamini_hochberg, correlations

pytestmark = pytest.mark.usefixtures("single_thread")


def test_metrics_on_known_spectra():
    diag = eigen_summary(np.array([4.0, 2.0, 1.0, 0.5]))
    assert (diag.share_negative, diag.stiffness_signed, diag.stiffness_ratio,
            diag.spectral_radius) == (0.0, 8.0, 8.0, 4.0)
    # 2x2 rotation blocks a ± ib: real parts a, moduli sqrt(a² + b²)
    rot = eigen_summary(np.array([-1 + 2j, -1 - 2j, 3 + 4j, 3 - 4j]))
    assert rot.share_negative == 0.5 and rot.spectral_radius == 5.0
    assert rot.stiffness_signed == -3.0 and rot.stiffness_ratio == 3.0
    mixed = eigen_summary(np.array([-35.0, 1.0, 0.5, -2.0]))
    assert mixed.stiffness_signed == pytest.approx(1.0 / -35.0) and mixed.share_negative == 0.5
    assert mixed.stiffness_ratio == 70.0


class Linear(nn.Module):
    def __init__(self, c=2):
        super().__init__()
        torch.manual_seed(1)
        self.body = nn.Sequential(*[ResidualUnit(nn.Conv2d(c, c, 3, padding=1, bias=False),
                                                 nn.Identity(), nn.Identity()) for _ in range(2)])
        self.head = nn.Linear(c * 16, 3)

    def forward(self, x):
        return self.head(self.body(x).flatten(1))


def _conv_matrix(conv, shape):
    n = int(np.prod(shape))
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    with torch.no_grad():
        return conv(basis).reshape(n, -1).T


def _task(net, **kw):
    args = dict(input_shape=(2, 4, 4), x=torch.randn(2, 4, 4, dtype=torch.float64), label=1,
                image=0, blocks=("body.0", "body.1"), dense_max=1024, k=4, seed=0,
                keep_values=True)
    return stiffness_task(local_ref(net), **{**args, **kw})


def test_linear_block_eigenvalues_are_one_plus_eig_a():
    net = Linear().double().eval()
    rows = _task(net)
    a = _conv_matrix(net.body[0].residual, (2, 4, 4))
    expect = np.sort_complex(1 + np.linalg.eigvals(a.numpy()))
    got = np.sort_complex(np.array(rows["values_re"][0]) + 1j * np.array(rows["values_im"][0]))
    np.testing.assert_allclose(got, expect, atol=1e-12)
    m = eigen_summary(expect)
    assert rows["share_negative"][0] == m.share_negative
    assert rows["spectral_radius"][0] == pytest.approx(m.spectral_radius, rel=1e-12)
    assert rows["method"][0] == "dense" and bool(rows["converged"][0])


def test_arnoldi_extremes_agree_with_dense_on_a_mid_size_block():
    model = load_model("digits-resnet20").double()
    data = load_data("digits")
    args = dict(input_shape=(1, 8, 8), x=data.x[3].double(), label=int(data.y[3]), image=3,
                blocks=("stages.1.1",), k=6, seed=0, keep_values=False)
    ref = local_ref(model)
    dense = stiffness_task(ref, dense_max=1024, **args).set_index("block").loc["stages.1.1"]
    arnoldi = stiffness_task(ref, dense_max=100, **args).set_index("block").loc["stages.1.1"]
    assert dense["method"] == "dense" and arnoldi["method"] == "arpack" and arnoldi["converged"]
    assert arnoldi["max_real"] == pytest.approx(dense["max_real"], rel=1e-8)
    assert arnoldi["min_real"] == pytest.approx(dense["min_real"], abs=1e-8)
    assert np.isnan(arnoldi["share_negative"]) and "every eigenvalue" in arnoldi["nan_reason"]
    skipped = stiffness_task(ref, dense_max=1024, **args).set_index("block").loc["stages.1.0"]
    assert skipped["method"] == "skipped" and "not square" in skipped["note"]


def test_correlations_equal_scipy_on_a_planted_correlation():
    rng = np.random.default_rng(0)
    n = 60
    metric = rng.normal(size=n)
    loss = 0.8 * metric + 0.6 * rng.normal(size=n)
    labels = np.arange(n) % 6
    correct = loss < 0.5
    table = pd.DataFrame({"block": "b", "index": 4, "method": "dense", "image": np.arange(n),
                          "label": labels, "loss": loss, "correct": correct,
                          "share_negative": metric})
    c = correlations(table, ["share_negative"]).set_index(["level", "target"])
    r, p = stats.pearsonr(metric, loss)
    assert c.loc[("image", "loss"), "r"] == pytest.approx(r, rel=1e-12)
    assert c.loc[("image", "loss"), "p"] == pytest.approx(p, rel=1e-9)
    assert c.loc[("image", "loss"), "r"] > 0.6 and c.loc[("image", "loss"), "significant"]
    per_label = table.groupby("label").agg(m=("share_negative", "mean"), acc=("correct", "mean"))
    r, _ = stats.pearsonr(per_label["m"], per_label["acc"])
    assert c.loc[("label", "accuracy"), "r"] == pytest.approx(r, rel=1e-12)
    assert c.loc[("label", "accuracy"), "n"] == 6


def test_benjamini_hochberg_by_hand():
    # sorted p: 0.005, 0.01, 0.03, 0.04, 0.2 (m = 5): p·m/rank = 0.025, 0.025, 0.05, 0.05, 0.2,
    # then the running minimum from the largest rank down
    p = np.array([0.04, 0.005, 0.2, 0.01, 0.03, np.nan])
    np.testing.assert_allclose(benjamini_hochberg(p), [0.05, 0.025, 0.2, 0.025, 0.05, np.nan])


def test_study_on_a_shipped_model(tmp_path):
    r = run_study(STIFFNESS, load_model("digits-resnet20"), load_data("digits"),
                  StiffnessConfig(images=4, keep_values=2), tmp_path / "run")
    t = r.tables["stiffness"]
    assert set(t["method"]) == {"dense", "skipped"} and t["image"].nunique() == 4
    assert len(t[t["method"] == "skipped"]) == 2 * 4  # two down-sampling blocks per image
    assert (t.groupby("image")["values_re"].apply(lambda v: v.map(len).sum()) > 0).sum() == 2
    assert set(r.tables["correlations"]["level"]) == {"image", "label"}
    assert len(r.claims) == 2 and len(r.figures) == 3


def test_bad_input_is_one_line_with_status_2(tmp_path):
    runner = CliRunner()
    base = ["stiffness", "--model", "digits-resnet20", "--out", str(tmp_path / "o")]
    for extra, message in ((["--blocks", "stages.1.0"], "not square"),
                           (["--blocks", "stages.9.9"], "unknown block"),
                           (["--images", "5000"], "asked for 5000 images"),
                           (["--metrics", "stiffness,share_negative"], "unknown metric")):
        r = runner.invoke(app, base + extra)
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output
