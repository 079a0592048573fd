"""`resdyn dynamics` end to end on a shipped digits ResNet and the digits ViT: its tables agree
with computations held out of the study (stage Jacobians, residual Jacobians), its claims are
judged with the numbers, and its command line runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from conftest import assert_figure

from resdyn import capture, load_data, load_model, units
from resdyn.cli import app
from resdyn.operators import residual_jacobian, stage_jacobian
from resdyn.studies import DYNAMICS, DynamicsConfig, run_study
from resdyn.studies.dynamics import DIGITS_FAMILY
from resdyn.studies.identity_sweep_claims import POWER_TOLERANCE

CLAIMS = list(DYNAMICS.claims)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    model, data = load_model("digits-resnet20"), load_data("digits")
    cfg = DynamicsConfig(images=2, k=3, family_images=1,  # the default family: five depths
                         coupling_images=2)
    out = tmp_path_factory.mktemp("dyn")
    return run_study(DYNAMICS, model, data, cfg, out, model_name="digits-resnet20"), model, data


def test_exact_exponents_at_a_stage_end_are_the_stage_jacobians_singular_values(run):
    result, model, data = run
    ly = result.tables["lyapunov"]
    image = int(ly["image"].iloc[0])
    us = units(model, data.input_shape)
    first = [u for u in us if u.stage == 0]
    x = capture(model, data.x[image:image + 1], us).inputs[first[0].name][0]
    sigma = torch.linalg.svdvals(stage_jacobian(first, x).dense()).numpy()
    depth = len(first)
    got = ly[(ly["path"] == "exact") & (ly["image"] == image) & (ly["depth"] == depth)]
    expected = np.log(sigma[:3]) / depth
    np.testing.assert_allclose(got.sort_values("i")["exponent"], expected, rtol=1e-9, atol=1e-12)


def test_residual_table_holds_the_top_singular_values_of_each_residual_jacobian(run):
    result, model, data = run
    res = result.tables["residual"]
    row = res.iloc[4]
    us = {u.name: u for u in units(model, data.input_shape)}
    x = capture(model, data.x[int(row["image"]):int(row["image"]) + 1],
                list(us.values())).inputs[row["unit"]][0]
    sigma = torch.linalg.svdvals(residual_jacobian(us[row["unit"]], x).dense()).numpy()
    np.testing.assert_allclose(row["sigma"], sigma[:3], rtol=1e-10)
    assert int(row["rank"]) == int((sigma > row["resolution"]).sum())


def test_depth_law_has_the_five_shipped_depths_and_every_claim_is_judged_or_says_why(run):
    result, _, _ = run
    law = result.tables["depth_law"]
    assert law["units"].tolist() == [9, 15, 21, 27, 54]
    assert law["model"].tolist() == list(DIGITS_FAMILY)
    summary = json.loads((result.out / "summary.json").read_text())
    assert [c["claim"] for c in summary["claims"]] == CLAIMS
    for c in summary["claims"]:
        assert c["evidence"] and any(ch.isdigit() for ch in c["evidence"]), c
    ra4 = next(c for c in summary["claims"] if c["claim"].startswith("RA4"))
    # the verdict from the table: least squares of log σ₁ on log L, p = −slope, and its 95 %
    # interval (Student t, n − 2 degrees of freedom); RA4 holds when it contains 1
    from scipy import stats

    logL, logs = np.log(law["units"].to_numpy(float)), np.log(law["sigma1_median"].to_numpy())
    slope, intercept = np.polyfit(logL, logs, 1)
    resid = logs - (slope * logL + intercept)
    se = np.sqrt(resid @ resid / (len(law) - 2) / ((logL - logL.mean()) ** 2).sum())
    half = stats.t.ppf(0.975, len(law) - 2) * se
    # held when the whole interval lies within POWER_TOLERANCE of 1, not when it lies wholly
    # farther, undecided otherwise
    low, high, tol = -slope - half, -slope + half, POWER_TOLERANCE
    verdict = ("yes" if 1 - tol < low and high < 1 + tol else
               "no" if high < 1 - tol or low > 1 + tol else "undecided")
    assert ra4["verdict"] == verdict, (ra4, -slope, half)
    near = 0.0 if low <= 1 <= high else min(abs(low - 1), abs(high - 1))
    assert ra4["low"] == pytest.approx(near) and ra4["side"] == "below"
    assert ra4["high"] == pytest.approx(max(abs(low - 1), abs(high - 1)))
    assert f"p = {-slope:.3f}" in ra4["evidence"] and "L=9" in ra4["evidence"]
    qr = result.tables["qr_error"]  # against a recomputation from the lyapunov table
    ly = result.tables["lyapunov"]
    wide = ly.pivot_table(index=["image", "depth", "i"], columns="path", values="exponent")
    wide = wide[np.isfinite(wide["exact"]) & np.isfinite(wide["qr"])]
    expected = (wide["qr"] - wide["exact"]).abs().groupby(["depth", "i"]).median()
    got = qr.set_index(["depth", "i"])["error"]
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False,
                                   rtol=1e-12)
    assert set(qr["i"]) == {1, 2, 3}
    for fig in DYNAMICS.figures:
        assert_figure(result.out / f"{fig}.png")


def test_zero_rows_are_counted_never_nan(run):
    ly = run[0].tables["lyapunov"]
    assert not ly["exponent"].isna().any()
    zeros = ly[np.isneginf(ly["exponent"])]
    assert (zeros.groupby(["path", "image", "depth"]).size()
            == zeros.groupby(["path", "image", "depth"])["n_zero"].first()).all()


def test_coupling_table_and_claim_on_the_resnet(run):
    result, _, _ = run
    c = result.tables["coupling"]
    assert set(c["model"]) == {"digits-resnet20"} and c["image"].nunique() == 2
    assert set(c["across"]) == {"depth"} and set(c["K"]) == {10, 30, 50}  # one "token": the map
    blocks = result.tables["coupling_blocks"]
    assert "stages.1.0" not in set(blocks["block"])  # a down-sampling unit: no partner
    d = c[(c["l1"] != c["l2"]) & (c["orientation"] == "ujv") & (c["K"] == 10)]
    claim = next(v for k, v in result.claims.items() if k.startswith("blocks are coupled"))
    m, level = d["m"].median(), d["random"].median()
    assert f"{m:.3f} against the random level {level:.3f}" in claim.evidence
    per_image = d.groupby("image")[["m", "random"]].median()
    ratios = per_image["m"] / per_image["random"]
    test, = claim.tests  # the ratio per image, its median, bootstrapped over the 2 images
    assert test.interval.value == pytest.approx(ratios.median(), rel=1e-12)
    assert (test.interval.low, test.interval.high) == (ratios.min(), ratios.max())
    assert claim.held is (True if ratios.max() < 0.5 else False if ratios.min() > 0.5 else None)


def test_dynamics_on_the_vit_and_from_the_command_line(tmp_path):
    out = tmp_path / "vit"
    r = CliRunner().invoke(app, ["dynamics", "--model", "digits-vit", "--images", "1", "--k",
                                 "2", "--family", "none", "--out", str(out)])
    assert r.exit_code == 0, r.output
    ly = pd.read_parquet(out / "lyapunov.parquet")
    assert ly["depth"].max() == 8 and set(ly["path"]) == {"exact", "qr"}
    c = pd.read_parquet(out / "coupling.parquet")  # the class token (0) read, 17 tokens
    assert set(c["across"]) == {"depth", "tokens"} and set(c["token_out_1"]) == {0}
    assert len(pd.read_parquet(out / "line_shape.parquet")) == 17
    summary = json.loads((out / "summary.json").read_text())
    ra4 = next(c for c in summary["claims"] if c["claim"].startswith("RA4"))
    assert ra4["verdict"] == "not judged"
