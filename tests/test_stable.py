"""Stable architectures (paper 004): the ODE examples."""

import numpy as np
import pytest
from scipy.linalg import expm
from typer.testing import CliRunner

from resdyn.cli import app
from resdyn.studies import ODE, OdeConfig, run_study
from resdyn.studies.stable_ode import PAPER_K, euler, parse_matrix, reference, right_hand_side

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
    assert r.figures["fig1_trajectories"].stat().st_size > 30_000


def test_matrix_parsing_and_bad_input():
    assert parse_matrix("0,-1;1,0") == ((0.0, -1.0), (1.0, 0.0))
    runner = CliRunner()
    for args, message in ((["--K", "1,2;3"], "must be square"),
                          (["--K", "a,b;c,d"], "must be numbers"),
                          (["--h", "0"], "must be positive"),
                          (["--h", "-0.1"], "must be positive"),
                          (["--activation", "sigmoid"], "unknown activation")):
        r = runner.invoke(app, ["stable", "ode", *args, "--out", "unused"])
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output
