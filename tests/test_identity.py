"""Identity study (paper 002): closed forms on blocks with known outputs, the stopping rule, the
power-law fit, the sweep's resume, and bad input."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from resdyn import load_model
from resdyn.cli import app
from resdyn.data import load_data
from resdyn.metrics import power_law, stopping_rule
from resdyn.models import NoUnitsFound
from resdyn.models.blocks import ResidualUnit
from resdyn.runs import local_ref
from resdyn.studies import IDENTITY, SWEEP, IdentityConfig, SweepConfig, run_study
from resdyn.studies.identity import distances, per_block, stopping
from resdyn.studies.identity_sweep import crossing_depth, fits
from resdyn.tasks.perturbation import perturbation_task


class AddVector(nn.Module):
    """A residual branch that adds the same vector to every input: x_{l+1} = x_l + v."""

    def __init__(self, v: torch.Tensor):
        super().__init__()
        self.register_buffer("v", v)

    def forward(self, x):
        return self.v.expand_as(x)


class Scale(nn.Module):
    """A residual branch c·x: x_{l+1} = (1 + c) x_l."""

    def __init__(self, c: float):
        super().__init__()
        self.c = c

    def forward(self, x):
        return self.c * x


def unit(branch):
    return ResidualUnit(branch, nn.Identity(), nn.Identity())


class TwoSections(nn.Module):
    def __init__(self, first, second):
        super().__init__()
        self.a, self.b = nn.Sequential(*first), nn.Sequential(*second)

    def forward(self, x):
        return self.b(self.a(x)).flatten(1)[:, :3]


def _measure(net, x):
    rows = perturbation_task(local_ref(net), tuple(x.shape[1:]), x, list(range(len(x))),
                             [0] * len(x))
    return rows, distances(rows)


def test_blocks_adding_a_fixed_vector_and_scaling_match_their_closed_forms():
    torch.manual_seed(0)
    shape, L, c = (2, 3, 3), 4, 0.05
    v = torch.randn(*shape, dtype=torch.float64)
    net = TwoSections([unit(AddVector(v)) for _ in range(L)],
                      [unit(Scale(c)) for _ in range(L)]).double().eval()
    x = torch.randn(3, *shape, dtype=torch.float64)
    rows, dist = _measure(net, x)
    vn = float(v.norm())
    a = rows[rows["section"] == "a"].sort_values(["image", "position"])
    b = rows[rows["section"] == "b"].sort_values(["image", "position"])
    np.testing.assert_allclose(a["abs"], vn, rtol=1e-12)
    for i in range(3):
        # section a: x_k = x0 + k v, so scaled_k = ‖v‖ / ‖x0 + k v‖
        x_l = [x[i] + k * v for k in range(L)]
        np.testing.assert_allclose(a[a["image"] == i]["scaled"],
                                   [vn / float(t.norm()) for t in x_l], rtol=1e-12)
        # section b starts at x0 + L v and scales by (1 + c) per block: scaled = c exactly
        x_b = x[i] + L * v
        np.testing.assert_allclose(b[b["image"] == i]["abs"],
                                   [c * (1 + c) ** k * float(x_b.norm()) for k in range(L)],
                                   rtol=1e-12)
    np.testing.assert_allclose(b["scaled"], c, rtol=1e-12)
    d = dist.set_index("section")
    assert d.loc["a", "d"] == pytest.approx(L * vn, rel=1e-12)
    assert d.loc["b", "d_scaled"] == pytest.approx(L * c, rel=1e-12)
    assert d.loc["b", "mean_scaled"] == pytest.approx(c, rel=1e-12)
    assert d.loc["total", "L"] == 2 * L
    assert d.loc["total", "d"] == pytest.approx(d.loc["a", "d"] + d.loc["b", "d"], rel=1e-12)
    pb = per_block(rows)
    assert list(pb[pb["section"] == "b"]["pos_scaled"]) == [0, 1 / 3, 2 / 3, 1]
    assert set(pb["shortcut"]) == {"identity"} and (pb["images"] == 3).all()


def test_stopping_rule_on_known_distances():
    assert [stopping_rule(d, 0.1) for d in (4.11, 3.12, 4.58)] == [42, 32, 46]
    assert [stopping_rule(d, 0.1) for d in (3.69, 3.81, 4.27)] == [37, 39, 43]
    assert stopping_rule(3.2, 0.1) == 32 and stopping_rule(0.05, 0.1) == 1
    dist = pd.DataFrame({"section_index": [0, -1], "section": ["s0", "total"], "L": [10, 10],
                         "d_scaled": [0.95, 0.95], "mean_scaled": [0.095, 0.095]})
    s = stopping(dist, (0.1, 0.05))
    assert s[["eps", "predicted_L", "below_eps"]].values.tolist() == [[0.1, 10, True],
                                                                      [0.05, 19, False]]
    with pytest.raises(ValueError, match="positive"):
        stopping_rule(1.0, 0.0)


def test_fit_recovers_a_planted_exponent_within_its_interval():
    rng = np.random.default_rng(3)
    depths = np.array([2, 4, 8, 16, 32, 64])
    for p in (0.5, 1.0, 1.3):
        values = 3.0 * depths ** (-p) * np.exp(rng.normal(0, 0.05, depths.size))
        f = power_law(depths, values)
        assert f.p_low < p < f.p_high and f.p_high - f.p_low < 0.3
        assert f.c == pytest.approx(3.0, rel=0.2)
    exact = fits(pd.DataFrame({"section": "s0", "blocks": [2, 4, 8],
                               "mean_scaled": [1.0, 0.5, 0.25]}))
    assert exact["p"].iloc[0] == pytest.approx(1.0) and exact["depths"].iloc[0] == 3


def test_crossing_depth_interpolates_a_power_law_exactly():
    depths = [2, 4, 8, 16, 32]
    assert crossing_depth(depths, [2.0 / L for L in depths], 0.1) == pytest.approx(20.0)
    assert np.isnan(crossing_depth(depths, [5.0 / L for L in depths], 0.1))
    assert crossing_depth(depths, [0.05 / L for L in depths], 0.1) == 2


def test_identity_study_on_a_shipped_model(tmp_path):
    r = run_study(IDENTITY, load_model("digits-resnet20"), load_data("digits"),
                  IdentityConfig(images=10, eps=(0.1, 0.05)), tmp_path / "run")
    assert set(r.tables) == {"blocks", "per_block", "distances", "stopping"}
    assert len(r.tables["blocks"]) == 10 * 9
    down = r.tables["per_block"].query("kind == 'downsampling'")
    assert (down["shortcut"] == "projection").all() and len(down) == 2
    assert len(r.tables["stopping"]) == 3 * 2 and len(r.claims) == 2
    assert r.figures["fig2_5_blocks"].is_file()
    _check_blocks_figure(r.tables["blocks"], r.tables["per_block"])


def _check_blocks_figure(blocks: pd.DataFrame, per_block_table: pd.DataFrame) -> None:
    """Figs. 2/5 plot, per section (columns) and measure (rows: abs, scaled), the mean over
    images of each block's perturbation against its scaled position, and mark the down-sampling
    blocks: recomputed here from the per-image table."""
    from matplotlib.collections import PathCollection

    from resdyn.plots.identity import blocks_figure

    fig = blocks_figure(per_block_table, "test")
    sections = list(dict.fromkeys(blocks.sort_values("section_index")["section"]))
    assert len(fig.axes) == 2 * len(sections)
    axes = np.array(fig.axes).reshape(2, len(sections))
    for j, section in enumerate(sections):
        sec = blocks[blocks["section"] == section]
        mean = sec.groupby("position").agg(x=("pos_scaled", "first"), abs=("abs", "mean"),
                                           scaled=("scaled", "mean"),
                                           proj=("shortcut", "first"))
        for i, col in enumerate(("abs", "scaled")):
            ax = axes[i, j]
            assert ax.get_title() == section
            (line,) = ax.get_lines()
            np.testing.assert_allclose(line.get_xdata(), mean["x"], rtol=1e-12)
            np.testing.assert_allclose(line.get_ydata(), mean[col], rtol=1e-12)
            down = mean[mean["proj"] == "projection"]
            marks = [c for c in ax.collections if isinstance(c, PathCollection)]
            offsets = np.concatenate([np.asarray(m.get_offsets()).reshape(-1, 2)
                                      for m in marks])
            np.testing.assert_allclose(offsets, down[["x", col]].to_numpy().reshape(-1, 2),
                                       rtol=1e-12)


def test_a_model_without_recognisable_blocks_says_how_to_name_them(tmp_path):
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    with pytest.raises(NoUnitsFound, match="names="):
        run_study(IDENTITY, net, load_data("digits"), IdentityConfig(images=2), tmp_path / "r")
    assert not (tmp_path / "r").exists()  # no claim, no folder left behind


def test_bad_input_is_one_line_with_status_2(tmp_path):
    runner = CliRunner()
    out = ["--out", str(tmp_path / "o")]
    for args, message in ((["identity-sweep", "--depths", "2,x"], "comma-separated integers"),
                          (["identity-sweep", "--depths", ""], "at least one value"),
                          (["identity-sweep", "--depths", "0,4"], "depths must be at least 1"),
                          (["identity-sweep", "--depths", "4,4"], "repeat"),
                          (["identity-sweep", "--depths", "1000000000000"], "at most 500"),
                          (["identity-sweep", "--epochs", "1000000000000"], "at most 10 000"),
                          (["identity-sweep", "--batch-size", "0"], "at least 1"),
                          (["identity-sweep", "--eps", "0"], "eps must be greater than 0"),
                          (["identity", "--model", "digits-resnet20", "--eps", "-0.1"],
                           "eps must be greater than 0")):
        r = runner.invoke(app, args + out)
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output
        assert not (tmp_path / "o").exists()  # refused before the folder is touched


SWEEP_RUN = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from resdyn import load_data
    from resdyn.studies import SWEEP, SweepConfig, run_study
    run_study(SWEEP, None, load_data("digits"), SweepConfig(depths=(1, 2, 3), epochs=1, images=8),
              sys.argv[1])
""")


@pytest.mark.slow
def test_sweep_killed_after_its_first_depth_resumes_without_retraining(tmp_path):
    out = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    proc = subprocess.Popen([sys.executable, "-c", SWEEP_RUN, str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = out / "tasks" / "training" / "L1.parquet"
    deadline = time.monotonic() + 120
    while not first.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    trained = out / "checkpoints" / "preresnet1.safetensors"
    stamp = (first.stat().st_mtime_ns, trained.stat().st_mtime_ns)
    torch.set_num_threads(1)
    r = run_study(SWEEP, None, load_data("digits"),
                  SweepConfig(depths=(1, 2, 3), epochs=1, images=8), out)
    assert (first.stat().st_mtime_ns, trained.stat().st_mtime_ns) == stamp  # not retrained
    assert r.stats.resumed >= 1 and r.failed == 0
    assert r.tables["training"]["blocks"].tolist() == [1, 2, 3]
    assert sorted(r.tables["blocks"]["blocks"].unique()) == [1, 2, 3]
    assert set(r.tables["fits"]["section"]) == {"stages.0", "stages.1", "stages.2", "total"}
    assert len(r.figures) == 4 and len(r.claims) == 3
