"""Stiffness study (paper 003): metrics on known spectra, a linear block's eigenvalues, Arnoldi
against dense, correlations against scipy.stats, Benjamini–Hochberg by hand, bad input."""

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from scipy import stats
from torch import nn

from resdyn import load_model
from resdyn.cli import app
from resdyn.data import load_data
from resdyn.metrics import EIG_ROUND_OFF_FACTOR, eigen_summary
from resdyn.models.blocks import ResidualUnit
from resdyn.plots.stiffness import nan_reasons
from resdyn.runs import local_ref
from resdyn.studies import STIFFNESS, StiffnessConfig, run_study
from resdyn.studies.stiffness_stats import benjamini_hochberg, correlations
from resdyn.tasks.eigen import BRANCH_METRICS, METRICS, stiffness_task

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


class Matrix(nn.Module):
    """One residual unit x + W x on points (c, 1, 1): its Jacobian is exactly I + W."""

    def __init__(self, w):
        super().__init__()
        w = torch.as_tensor(np.asarray(w), dtype=torch.float64)
        conv = nn.Conv2d(len(w), len(w), 1, bias=False).double()
        with torch.no_grad():
            conv.weight.copy_(w[:, :, None, None])
        self.body = nn.Sequential(ResidualUnit(conv, nn.Identity(), nn.Identity()))
        self.head = nn.Linear(len(w), 2).double()

    def forward(self, x):
        return self.head(self.body(x).flatten(1))


def matrix_task(w, **kw) -> pd.Series:
    """The stiffness task's row of the unit x + W x (J = I + W) at a random point."""
    c = len(w)
    args = dict(input_shape=(c, 1, 1), x=torch.randn(c, 1, 1, dtype=torch.float64), label=1,
                image=0, blocks=("body.0",), dense_max=64, k=1, seed=0, keep_values=True)
    return stiffness_task(local_ref(Matrix(w).eval()), **{**args, **kw}).iloc[0]


def test_nan_reason_only_for_the_metrics_that_are_nan():
    # J = diag(2, 3) (W = diag(1, 2)): all Re λ > 0, every metric finite, no reason
    pos = matrix_task(np.diag([1.0, 2.0]))
    assert (pos["min_real"], pos["max_real"]) == (2.0, 3.0)
    assert pos["stiffness_signed"] == 1.5 and pos["stiffness_ratio"] == 1.5
    assert pos["share_negative"] == 0.0 and pos["spectral_radius"] == 3.0
    assert pos["nan_reason"] == ""
    # J = diag(0, 2): min Re λ is exactly 0, so the signed index alone is NaN, and says why
    zero = matrix_task(np.diag([-1.0, 1.0]))
    assert (zero["min_real"], zero["max_real"]) == (0.0, 2.0)
    assert np.isnan(zero["stiffness_signed"]) and zero["stiffness_ratio"] == 1.0
    assert zero["nan_reason"].startswith("stiffness_signed: min Re λ = 0")
    assert "unbounded" in zero["nan_reason"] and "stiffness_ratio" not in zero["nan_reason"]
    # J = [[0, -1], [1, 0]]: λ = ±i, no real part at all: both indices NaN, each with its reason
    rot = matrix_task(np.array([[-1.0, -1.0], [1.0, -1.0]]))
    assert rot["min_real"] == rot["max_real"] == 0.0 and rot["spectral_radius"] == 1.0
    reasons = dict(r.split(": ", 1) for r in rot["nan_reason"].split("; "))
    assert set(reasons) == {"stiffness_signed", "stiffness_ratio"}
    assert "undefined" in reasons["stiffness_signed"] and "no real part" in reasons[
        "stiffness_ratio"]


def test_j_minus_i_measures_of_known_blocks():
    # J = I + W: the branch's eigenvalues are those of W, beside J's own measures
    pos = matrix_task(np.diag([1.0, 2.0]))  # J − I = diag(1, 2)
    assert (pos["branch_share_negative"], pos["branch_stiffness_signed"],
            pos["branch_stiffness_ratio"]) == (0.0, 2.0, 2.0)
    mixed = matrix_task(np.diag([-1.0, 1.0]))  # J = diag(0, 2), J − I = diag(−1, 1)
    assert (mixed["share_negative"], mixed["branch_share_negative"]) == (0.0, 0.5)
    assert (mixed["branch_stiffness_signed"], mixed["branch_stiffness_ratio"]) == (-1.0, 1.0)
    # with error bounds, Re(λ − 1) = −1e-10 is beyond its bound (~1e-14): counted, as the
    # stable comparison counts it
    t = 1.9e-5
    w = np.array([[-1e-10, -t, 0.0], [t, -1e-10, 0.0], [0.0, 0.0, 0.5]])
    assert matrix_task(w, error_bounds=True)["branch_share_negative"] == pytest.approx(2 / 3)
    # J − I = 0 on the ReLU-free identity: no negative share, both indices NaN with reasons
    zero = matrix_task(np.zeros((2, 2)))
    assert zero["branch_share_negative"] == 0.0 and np.isnan(zero["branch_stiffness_signed"])
    assert "branch_stiffness_signed: " in zero["nan_reason"]
    assert "branch_stiffness_ratio: " in zero["nan_reason"]


def test_error_bounds_path_gives_the_same_eigenvalues_with_their_bounds():
    """error_bounds=True: the same eigenvalues and metrics as the plain dense path, each with
    p·ε·‖J‖_F / |yᴴx|: p·ε·‖J‖_F for the eigenvalues of a normal J (|yᴴx| = 1)."""
    t = 1.9e-5
    w = np.array([[-1e-10, -t, 0.0], [t, -1e-10, 0.0], [0.0, 0.0, 0.5]])
    plain, bounded = matrix_task(w), matrix_task(w, error_bounds=True)
    expect = np.array([1.5, 1 - 1e-10 + 1j * t, 1 - 1e-10 - 1j * t])
    got = np.array(bounded["values_re"]) + 1j * np.array(bounded["values_im"])
    np.testing.assert_allclose(got, expect, rtol=0, atol=1e-14)
    np.testing.assert_allclose(plain["values_re"], bounded["values_re"], rtol=0, atol=1e-14)
    eps_norm = EIG_ROUND_OFF_FACTOR * np.finfo(float).eps * np.linalg.norm(np.eye(3) + w)
    np.testing.assert_allclose(bounded["values_err"], eps_norm, rtol=1e-9)
    assert "values_err" not in plain.index
    for m in ("share_negative", "stiffness_signed", "stiffness_ratio", "spectral_radius"):
        assert bounded[m] == pytest.approx(plain[m], rel=1e-12), m


def test_arnoldi_extremes_agree_with_dense_on_a_wide_block():
    # 1024 wide: "auto" picks ARPACK for the extremes (its k = 6 is under 10 % of the kept rows)
    model = load_model("digits-resnet20").double()
    data = load_data("digits")
    args = dict(input_shape=(1, 8, 8), x=data.x[3].double(), label=int(data.y[3]), image=3,
                blocks=("stages.0.1",), k=6, seed=0, keep_values=False)
    ref = local_ref(model)
    dense = stiffness_task(ref, dense_max=2048, **args).set_index("block").loc["stages.0.1"]
    arnoldi = stiffness_task(ref, dense_max=100, **args).set_index("block").loc["stages.0.1"]
    assert dense["method"] == "dense" and arnoldi["method"] == "arpack" and arnoldi["converged"]
    assert arnoldi["max_real"] == pytest.approx(dense["max_real"], rel=1e-8)
    assert arnoldi["min_real"] == pytest.approx(dense["min_real"], abs=1e-8)
    assert np.isnan(arnoldi["share_negative"]) and "every eigenvalue" in arnoldi["nan_reason"]
    # the reasons name exactly the NaN metrics, on both paths (the output ReLU's exact zeros
    # and no negative real part make min Re λ = 0 here: the signed index is NaN on both)
    assert arnoldi["min_real"] == dense["min_real"] == 0.0
    for row in (dense, arnoldi):
        named = {part.split(": ")[0] for part in row["nan_reason"].split("; ") if part}
        assert named == {m for m in METRICS + BRANCH_METRICS if np.isnan(row[m])}
    assert nan_reasons([arnoldi["nan_reason"]], "share_negative") == {
        f"the share needs every eigenvalue (Arnoldi path, n = {arnoldi['n']} > dense_max = 100)"}
    assert nan_reasons([dense["nan_reason"]], "stiffness_signed") == nan_reasons(
        [arnoldi["nan_reason"]], "stiffness_signed") != set()
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
    sq = t[t["method"] == "dense"]
    # J − I of a unit with an identity shortcut: its eigenvalues are λ − 1, so the share of
    # Re(λ − 1) < 0 is at least the share of Re λ < 0 (the exact zeros of killed rows give −1)
    assert (sq["branch_share_negative"] >= sq["share_negative"]).all()
    assert sq["branch_share_negative"].notna().all()
    assert "J − I" in (r.out / "summary.md").read_text()


def test_bad_input_is_one_line_with_status_2(tmp_path):
    runner = CliRunner()
    base = ["stiffness", "--model", "digits-resnet20", "--out", str(tmp_path / "o")]
    for extra, message in ((["--blocks", "stages.1.0"], "not square"),
                           (["--blocks", "stages.9.9"], "unknown block"),
                           (["--images", "5000"], "asked for 5000 images"),
                           (["--images", "1"], "--images must be at least 2; got 1"),
                           (["--metrics", "stiffness,share_negative"],
                            "--metrics: unknown 'stiffness'")):
        r = runner.invoke(app, base + extra)
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output


def test_help_says_one_image_is_refused():
    r = CliRunner().invoke(app, ["stiffness", "--help"], terminal_width=200)
    assert r.exit_code == 0 and "--images 1 is refused" in " ".join(r.output.split())


def _planted(n: int):
    if n == 5:  # r = 0.886, about the shipped LM's at 5 sequences (0.89, adjusted p 0.55)
        return np.arange(1.0, 6.0), np.array([1, 2.5, 2, 5, 4.5])
    metric = np.random.default_rng(1).normal(size=n)
    return metric, 0.9 * metric + 0.45 * np.random.default_rng(2).normal(size=n)


@pytest.mark.parametrize("n, verdict", [(60, "yes"), (5, "undecided")])
def test_correlation_claim_judges_fishers_z_interval(n, verdict):
    """A planted correlation: clear on 60 images; on 5, r = 0.89 cannot be told from chance
    (the percentile bootstrap called it held), so the claim is undecided."""
    from resdyn.studies.stiffness_claims import SMALL_R, correlation_claim

    metric, loss = _planted(n)
    table = pd.DataFrame({"block": "b", "index": 4, "method": "dense", "image": np.arange(n),
                          "label": np.arange(n) % 6, "loss": loss, "correct": loss < 3,
                          "share_negative": metric})
    c = correlations(table, ["share_negative"])
    claim = correlation_claim({"stiffness": table, "correlations": c})
    assert claim.verdict == verdict, claim.numbers()
    finite = c[(c["level"] == "image") & np.isfinite(c["r"])]
    test = next(t for t in claim.tests if t.what == "|r| of share_negative vs loss")
    result = stats.pearsonr(metric, loss)
    want = result.confidence_interval(1 - 0.05 / len(finite))
    assert test.interval.value == pytest.approx(abs(result.statistic), rel=1e-12)
    assert test.threshold == SMALL_R and test.interval.high == pytest.approx(
        max(abs(want.low), abs(want.high)), rel=1e-9)
