"""Stable architectures (paper 004): the ODE examples."""

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.linalg import expm
from torch import nn

from resdyn.cli import app
from resdyn.dynamics.ode import euler, reference, right_hand_side
from resdyn.studies import ODE, OdeConfig, run_study
from resdyn.studies.stable_ode import PAPER_K, parse_matrix

K0 = np.array(dict(PAPER_K)["K0"])


def test_forward_euler_on_k0_grows_the_norm_by_sqrt_1_plus_h2_per_step():
    h = 0.1
    ys = euler(right_hand_side(K0, "linear", "tanh", 0.0), np.array([0.3, -1.2]), h, 25)
    norms = np.linalg.norm(ys, axis=1)
    np.testing.assert_allclose(norms[1:] / norms[:-1], np.sqrt(1 + h * h), rtol=1e-14)


@pytest.mark.parametrize("name", ["K+", "K-", "K0"])
def test_reference_trajectory_of_the_linear_system_is_expm(name):
    K = np.array(dict(PAPER_K)[name])
    y0, times = np.array([1.0, 0.5]), np.linspace(0, 2, 21)
    ys = reference(right_hand_side(K, "linear", "tanh", 0.0), y0, times)
    expect = np.stack([expm(t * K) @ y0 for t in times])
    np.testing.assert_allclose(ys, expect, rtol=1e-8, atol=1e-9)


def test_study_reproduces_the_paper_examples(tmp_path):
    r = run_study(ODE, None, None, OdeConfig(), tmp_path / "ode")
    assert all(c.held for c in r.claims.values())
    g = r.tables["growth"].set_index(["K", "system", "integrator"])["growth"]
    assert g[("K+", "linear", "reference")] > 100 and g[("K-", "linear", "reference")] < 0.1
    assert g[("K0", "linear", "reference")] == pytest.approx(1.0, abs=1e-8)
    eig = r.tables["eigenvalues"].groupby("K")["max_re"].first()
    assert eig.to_dict() == pytest.approx({"K+": 2.0, "K-": -2.0, "K0": 0.0})
    assert r.figures["fig1_trajectories"].is_file()
    _check_trajectories_figure(r.tables["trajectories"], r.tables["eigenvalues"])


def _check_trajectories_figure(traj, eig):
    """Fig. 1 draws, in the panel of each (system, K), per start the reference path, the Euler
    path (dashed) and the start: the very rows of the trajectories table."""
    from resdyn.plots.stable import trajectories_figure

    fig = trajectories_figure(traj, eig, "tanh")
    names = list(dict.fromkeys(traj["K"]))
    assert names == ["K+", "K-", "K0"] and len(fig.axes) == 2 * len(names)
    axes = np.array(fig.axes).reshape(2, len(names))
    for i, system in enumerate(("linear", "nonlinear")):
        for j, name in enumerate(names):
            ax = axes[i, j]
            assert ax.get_title().startswith(f"{name} (")
            rows = traj[(traj["K"] == name) & (traj["system"] == system)]
            starts = sorted(set(rows["start"]))
            lines = ax.get_lines()
            assert len(lines) == 3 * len(starts) and len(starts) >= 2
            for k, start in enumerate(starts):
                path = rows[rows["start"] == start].sort_values("step")
                ref = path[path["integrator"] == "reference"]
                eul = path[path["integrator"] == "euler"]
                for line, want in ((lines[3 * k], ref), (lines[3 * k + 1], eul)):
                    np.testing.assert_array_equal(line.get_xdata(), want["y0"])
                    np.testing.assert_array_equal(line.get_ydata(), want["y1"])
                assert lines[3 * k + 1].get_linestyle() == "--"
                np.testing.assert_array_equal(lines[3 * k + 2].get_xydata(),
                                              ref[["y0", "y1"]].to_numpy()[:1])


def test_matrix_parsing_and_bad_input():
    assert parse_matrix("0,-1;1,0") == ((0.0, -1.0), (1.0, 0.0))
    runner = CliRunner()
    for args, message in ((["--K", "1,2;3"], "must be square"),
                          (["--K", "a,b;c,d"], "must be numbers"),
                          (["--h", "0"], "--h must be greater than 0"),
                          (["--h", "-0.1"], "--h must be greater than 0"),
                          (["--activation", "sigmoid"],
                           "--activation: unknown 'sigmoid'; valid: tanh, relu")):
        r = runner.invoke(app, ["stable", "ode", *args, "--out", "unused"])
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output


# ---------------------------------------------------------------- networks and toy data

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from resdyn import load_model, units  # noqa: E402
from resdyn.data import load_data  # noqa: E402
from resdyn.metrics import EIG_ROUND_OFF_FACTOR, eigenvalues_with_bounds  # noqa: E402
from resdyn.models.stable import AntisymmetricBranch, HamiltonianBranch  # noqa: E402
from resdyn.operators import unit_jacobian  # noqa: E402
from resdyn.spectra import eigenvalues  # noqa: E402


def _dense(fn, shape):
    n = int(np.prod(shape))
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    with torch.no_grad():
        return fn(basis).reshape(n, -1).T


@pytest.mark.parametrize("kernel, shape", [(1, (4, 1, 1)), (3, (3, 4, 4))])
def test_antisymmetric_matrix_has_real_parts_minus_gamma_over_two(kernel, shape):
    torch.manual_seed(0)
    gamma = 0.3
    branch = AntisymmetricBranch(shape[0], kernel, h=0.1, gamma=gamma).double()
    A = _dense(branch.operator, shape).numpy()
    lam = np.linalg.eigvals(A)
    np.testing.assert_allclose(lam.real, -gamma / 2, atol=1e-12)
    np.testing.assert_allclose(A + A.T, -gamma * np.eye(A.shape[0]), atol=1e-12)


def test_convolutional_kt_is_the_adjoint():
    torch.manual_seed(1)
    branch = AntisymmetricBranch(3, 3, h=0.1, gamma=0.0).double()
    x, y = torch.randn(2, 3, 5, 5, dtype=torch.float64), torch.randn(2, 3, 5, 5,
                                                                     dtype=torch.float64)
    with torch.no_grad():
        lhs = float((branch.K(x) * y).sum())
        rhs = float((x * branch.KT(y)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-13)


def test_hamiltonian_verlet_step_is_exactly_invertible():
    torch.manual_seed(2)
    branch = HamiltonianBranch(3, 3, h=0.5).double()
    nn.init.normal_(branch.b1)
    nn.init.normal_(branch.b2)
    x = torch.randn(2, 6, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        back = branch.inverse(x + branch(x))
    torch.testing.assert_close(back, x, rtol=0, atol=1e-14)


def test_stable_networks_are_units_and_their_jacobian_is_identity_plus_branch():
    torch.manual_seed(0)
    for family in ("euler", "antisymmetric", "hamiltonian"):
        net = load_model(f"{family}-resnet(kernel=1,size=1,blocks=3,width=4)", in_channels=2,
                         num_classes=2).double()
        us = units(net)
        assert len(us) == 3 and all(u.kind == "regular" for u in us)
        width = 8 if family == "hamiltonian" else 4
        assert us[0].in_shape == (width, 1, 1)
        x_in = torch.randn(width, 1, 1, dtype=torch.float64)
        J = unit_jacobian(us[1], x_in).dense().numpy()
        branch = us[1].module.residual
        Jb = torch.autograd.functional.jacobian(lambda v, b=branch: b(v[None])[0],
                                                x_in).reshape(width, width).numpy()
        np.testing.assert_allclose(J, np.eye(width) + Jb, atol=1e-12)
        # the engine's eigenvalues of the unit are those of I + J_b (autograd, scipy's geev),
        # each within its own error bound: the round-off of both solves (twice the bound) and
        # the two matrices' difference over the eigenvalue's condition |yᴴx|
        lam = eigenvalues(unit_jacobian(us[1], x_in)).values
        ref = np.eye(width) + Jb
        want, err = eigenvalues_with_bounds(ref)
        per_cond = err / (EIG_ROUND_OFF_FACTOR * np.finfo(float).eps * np.linalg.norm(ref))
        tol = 2 * err + np.linalg.norm(J - ref) * per_cond
        assert len(lam) == width and np.all(tol < 1e-9)
        left = list(range(width))
        for v in lam:  # equal as multisets
            i = min(left, key=lambda i: abs(want[i] - v))
            assert abs(want[i] - v) <= tol[i], (family, v, want[i], tol[i])
            left.remove(i)
        if family == "hamiltonian":  # a Verlet step is a product of two shears: det J = 1
            assert np.sum(np.log(np.abs(lam))) == pytest.approx(0.0, abs=1e-12)


def test_toy_sets_are_points_generated_from_a_fixed_seed():
    for name, classes in (("swissroll", 2), ("peaks", 5)):
        test, again = load_data(name), load_data(name)
        train = load_data(name, split="train")
        assert test.x.shape == (500, 2, 1, 1) and train.x.shape == (1000, 2, 1, 1)
        assert torch.equal(test.x, again.x) and test.classes == classes
        assert set(test.y.tolist()) == set(range(classes))
        assert abs(float(train.x.mean())) < 1e-6  # normalised with the train statistics
        assert not torch.equal(train.x[:500], test.x)


def test_training_a_stable_network_on_points_learns(tmp_path):
    from resdyn.train import train_and_save

    r = train_and_save("antisymmetric-resnet(kernel=1,size=1,blocks=4,width=8)", "swissroll", 8,
                       tmp_path / "a.safetensors", batch_size=64, lr=0.05)
    back = load_model(str(tmp_path / "a.safetensors"))
    assert back.arch.family == "antisymmetric" and back.arch.kernel == 1
    assert r.test_accuracy > 0.6  # chance is 0.5
    with torch.no_grad():
        logits = back(load_data("swissroll").x[:4])
    assert logits.shape == (4, 2) and F.softmax(logits, 1).sum().item() == pytest.approx(4)


def test_bad_network_options_are_one_line_errors():
    from resdyn.models import UnknownModel

    with pytest.raises(UnknownModel, match="key=value options among blocks"):
        load_model("antisymmetric-resnet(depth=4)")
    with pytest.raises(ValueError, match="at least 1"):
        load_model("hamiltonian-resnet(blocks=0)")
    with pytest.raises(ValueError, match="h > 0 and gamma >= 0"):
        load_model("antisymmetric-resnet(gamma=-0.1)")
    with pytest.raises(ValueError, match="h > 0 and gamma >= 0"):
        load_model("euler-resnet(h=0)")


def test_compare_study_trains_analyses_and_compares(tmp_path):
    from resdyn.studies import COMPARE, CompareConfig

    torch.set_num_threads(1)
    cfg = CompareConfig(datasets=("swissroll",), blocks=2, width=4, epochs=1, images=2,
                        resolution=20)
    r = run_study(COMPARE, None, None, cfg, tmp_path / "cmp")
    assert r.failed == 0
    c = r.tables["comparison"]
    assert c["family"].tolist() == ["euler", "antisymmetric", "hamiltonian"]
    assert c[["test_accuracy", "branch_max_re", "growth_fgsm", "growth_random_fgsm",
              "sv_above"]].notna().all().all()
    b = r.tables["boundaries"]
    assert len(b[b["kind"] == "grid"]) == 3 * 20 * 20 and len(b[b["kind"] == "point"]) == 3 * 500
    eig = r.tables["eigen"]
    assert set(eig["family"]) == {"euler", "antisymmetric", "hamiltonian"}
    assert len(r.claims) == 2 and set(r.figures) == {"comparison", "boundaries"}
    _check_comparison(r, cfg)
    again = run_study(COMPARE, None, None, cfg, tmp_path / "cmp")
    assert again.tasks_run == 0


def _check_comparison(r, cfg):
    """The comparison's numbers recomputed from the task tables, the claims' verdicts from
    them, and what the architectures guarantee whatever the training did."""
    from resdyn.plots.stable import COMPARISON_PANELS, comparison_figure
    from resdyn.studies.stable_compare_claims import growth_claim, re_near_zero_claim

    c = r.tables["comparison"].set_index("family")
    families = ["euler", "antisymmetric", "hamiltonian"]
    eig = r.tables["eigen"]
    eig = eig[eig["method"] != "skipped"]
    assert len(eig) == 3 * cfg.images * cfg.blocks
    max_re = (eig["max_real"] - 1).groupby(eig["family"]).median()
    np.testing.assert_allclose(c.loc[families, "branch_max_re"], max_re[families], rtol=1e-12)
    acc = r.tables["training"].set_index("family")["test_accuracy"]
    np.testing.assert_array_equal(c.loc[families, "test_accuracy"], acc[families])
    prop = r.tables["propagation"]
    fgsm = prop[prop["perturbation"] == "fgsm"]
    growth = {f: g[g["index"] == g["index"].max()]["out_norm"].mean()
              / g[g["index"] == 0]["in_norm"].mean() for f, g in fgsm.groupby("family")}
    np.testing.assert_allclose(c.loc[families, "growth_fgsm"], [growth[f] for f in families],
                               rtol=1e-12)
    e = max_re.abs()
    claim, grows = re_near_zero_claim(r.tables, None), growth_claim(r.tables, None)
    # each claim's number is the stable networks' worse value over the standard one's (held
    # when its interval over images lies wholly below 1)
    near, = claim.tests
    assert near.interval.value == pytest.approx(
        max(e["antisymmetric"], e["hamiltonian"]) / e["euler"], rel=1e-12)
    assert (near.threshold, near.side, near.interval.n) == (1.0, "below", cfg.images)
    assert f"euler {max_re['euler']:+.3g}" in claim.evidence
    assert grows.tests[0].interval.value == pytest.approx(
        max(growth["antisymmetric"], growth["hamiltonian"]) / growth["euler"], rel=1e-12)
    for judged in (claim, grows):
        iv = judged.tests[0].interval
        assert iv.low <= iv.value <= iv.high
        assert judged.verdict == ("yes" if iv.high < 1 else "no" if iv.low > 1 else "undecided")
    assert [r.claims[k].verdict for k in r.claims] == [claim.verdict, grows.verdict]
    # antisymmetric: J_b = h·diag(tanh')·A with A + Aᵀ = −γI, so every Re λ_b lies in
    # [−hγ/2, −hγ/2·min tanh'] (strictly negative): all count as negative
    for v, err in (eig[eig["family"] == "antisymmetric"][["values_re", "values_err"]]
                   .itertuples(index=False)):
        branch = np.asarray(v) - 1
        assert np.all(branch >= -cfg.h * cfg.gamma / 2 - np.asarray(err) - 1e-12)
        assert np.all(branch < -np.asarray(err))
    assert c.loc["antisymmetric", "branch_share_negative"] == 1.0
    # hamiltonian: a Verlet step is a product of two shears, det J = 1 = Π |λ|
    for v, im in eig[eig["family"] == "hamiltonian"][["values_re", "values_im"]].itertuples(
            index=False):
        assert np.sum(np.log(np.abs(np.asarray(v) + 1j * np.asarray(im)))) == pytest.approx(
            0.0, abs=1e-10)
    # the comparison figure draws the table: one bar per (panel, network, data set)
    fig = comparison_figure(r.tables["comparison"])
    for ax, (col, *_) in zip(fig.axes, COMPARISON_PANELS, strict=True):
        heights = [[bar.get_height() for bar in bars] for bars in ax.containers]
        np.testing.assert_allclose(heights, c.loc[families, [col]].to_numpy(), rtol=1e-12)


class _Matrix(nn.Module):
    """One residual unit x + W x on points (c, 1, 1): its Jacobian is exactly I + W."""

    def __init__(self, w):
        super().__init__()
        w = torch.as_tensor(np.asarray(w), dtype=torch.float64)
        self.conv = nn.Conv2d(len(w), len(w), 1, bias=False).double()
        with torch.no_grad():
            self.conv.weight.copy_(w[:, :, None, None])
        from resdyn.models.blocks import ResidualUnit

        self.body = nn.Sequential(ResidualUnit(self.conv, nn.Identity(), nn.Identity()))
        self.head = nn.Linear(len(w), 2).double()

    def forward(self, x):
        return self.head(self.body(x).flatten(1))


def _rotation(re, im):
    return np.array([[re, -im], [im, re]])


def test_branch_share_counts_real_parts_beyond_their_own_error():
    """Branch eigenvalues λ_b = λ − 1 of known 1x1-convolution units, through the comparison's
    eigen task: Re λ_b = −1e-10 with |λ_b| ~ 2e-5 (a Hamiltonian block's size) counts as negative
    when well conditioned, as 0 when ill conditioned; Re λ_b = 0 blurred by round-off as 0."""
    from resdyn.runs import local_ref
    from resdyn.studies.stable_compare import branch_share_negative
    from resdyn.tasks.eigen import stiffness_task

    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))
    mixed = np.zeros((4, 4))
    mixed[:2, :2] = _rotation(0.0, 1.9e-5)
    mixed[2:, 2:] = _rotation(-1e-10, 1.9e-5)
    cases = {"normal": (_rotation(-1e-10, 1.9e-5), 1.0),
             "mixed, rotated": (q @ mixed @ q.T, 0.5),   # round-off on every entry of J
             "ill-conditioned": (np.array([[-1e-10, 1.0], [0.0, -2e-10]]), 0.0),
             "exact zero": (_rotation(0.0, 1.9e-5), 0.0)}
    rows = []
    for w, _ in cases.values():
        c = len(w)
        rows.append(stiffness_task(local_ref(_Matrix(w).eval()), (c, 1, 1),
                                   torch.randn(c, 1, 1, dtype=torch.float64), 0, 0, ("body.0",),
                                   64, 1, 0, True, error_bounds=True))
    eig = pd.concat(rows, ignore_index=True)
    shares = branch_share_negative(eig)
    assert shares == [share for _, share in cases.values()]
    # the eigenvalues kept are 1 + eig(W)
    for (w, _), v, im in zip(cases.values(), eig["values_re"], eig["values_im"], strict=True):
        got = np.sort_complex(np.asarray(v) + 1j * np.asarray(im))
        np.testing.assert_allclose(got, np.sort_complex(1 + np.linalg.eigvals(w)), rtol=0,
                                   atol=1e-14)
    # results without bounds (an earlier version's) give no share rather than a wrong one
    assert np.isnan(branch_share_negative(eig.drop(columns="values_err"))).all()


def test_compare_bad_input_is_one_line_with_status_2():
    runner = CliRunner()
    for args, message in ((["--blocks", "0"], "at least 1"),
                          (["--h", "0"], "h must be greater than 0"),
                          (["--gamma", "-0.1"], "gamma must be at least 0"),
                          (["--batch-size", "0"], "--batch-size must be at least 1"),
                          (["--data", "nowhere.npz"], "does not exist")):
        r = runner.invoke(app, ["stable", "compare", *args, "--out", "unused"])
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output
