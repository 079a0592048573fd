"""The Study pattern and its runner: a toy study with known answers, then the stability study
against its tables from before the move, killed and resumed, and on a Dask cluster."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import ACROSS_MACHINES, across_machines
from torch import nn

from resdyn import load_model
from resdyn.data import load_data
from resdyn.runs import Executor, RunFolderError, Task
from resdyn.runs.compare import table_differences
from resdyn.studies import Claim, Figure, Plan, Study, Table, run_study
from resdyn.studies.stability import STABILITY, StabilityConfig

BEFORE = Path(__file__).parent / "data" / "stability_before"
TABLES = ("spectra", "variation", "propagation", "projections", "skip", "interpolation")


# ---------------------------------------------------------------- a toy study with known answers

@dataclass(frozen=True)
class ToyConfig:
    n: int = 5
    power: int = 2


def _power(i: int, power: int, log: str, fail: str) -> pd.DataFrame:
    with open(log, "a") as f:
        f.write(f"{i}\n")
    if i == 3 and os.path.exists(fail):
        raise RuntimeError("the disk is on fire")
    return pd.DataFrame({"i": [i], "value": [i ** power]})


def _toy_plan(ctx):
    return Plan([Task("powers", f"i{i}", _power,
                      dict(i=i, power=ctx.config.power, log=str(ctx.out.parent / "log"),
                           fail=str(ctx.out.parent / "fail")))
                 for i in range(ctx.config.n)], {"n": ctx.config.n})


def _draw(tables, ctx, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot(tables["powers"]["i"], tables["powers"]["value"])
    fig.savefig(path)
    plt.close(fig)


TOY = Study(
    name="toy", title="Toy study", config=ToyConfig, plan=_toy_plan,
    tables={"powers": Table(order=lambda t, ctx: t.sort_values("i", ignore_index=True)),
            "total": Table(derive=lambda t, ctx: pd.DataFrame({"sum": [t["powers"]["value"].sum()]}))},
    figures={"curve": Figure(_draw, "i against its power")},
    claims={"the sum of squares 0..4 is 30": lambda t, ctx: Claim(
        bool(t["total"]["sum"].iloc[0] == 30), f"sum {t['total']['sum'].iloc[0]}")},
)


@pytest.fixture
def toy_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()


def _log(tmp_path) -> list[int]:
    return [int(v) for v in (tmp_path / "log").read_text().split()]


def test_toy_study_tables_claims_and_resume(tmp_path, toy_model):
    data = load_data("digits")
    r = run_study(TOY, toy_model, data, ToyConfig(), tmp_path / "run")
    assert r.tables["powers"]["value"].tolist() == [0, 1, 4, 9, 16]
    assert r.tables["total"]["sum"].tolist() == [30]
    assert r.claims["the sum of squares 0..4 is 30"].held is True
    assert (tmp_path / "run" / "powers.parquet").is_file() and r.figures["curve"].is_file()
    text = r.summary.read_text()
    assert "| the sum of squares 0..4 is 30 | yes | — | sum 30 |" in text  # no numbers
    assert "computed 5 of 5 tasks" in text
    html = r.report.read_text()
    assert "i against its power" in html and "data:image/png;base64," in html
    again = run_study(TOY, toy_model, data, ToyConfig(), tmp_path / "run")
    assert (again.tasks_run, again.stats.resumed) == (0, 5)
    assert _log(tmp_path) == [0, 1, 2, 3, 4]


def test_a_failing_task_keeps_the_others_and_only_it_reruns(tmp_path, toy_model):
    data = load_data("digits")
    (tmp_path / "fail").write_text("")
    r = run_study(TOY, toy_model, data, ToyConfig(), tmp_path / "run")
    assert (r.tasks_run, r.failed) == (4, 1)
    assert r.tables["powers"]["i"].tolist() == [0, 1, 2, 4]
    errors = pd.read_parquet(tmp_path / "run" / "errors.parquet")
    assert errors[["key", "error", "message"]].values.tolist() == [
        ["i3", "RuntimeError", "the disk is on fire"]]
    assert r.claims == {} and r.figures == {}  # nothing judged on partial tables
    assert "1 of 5 tasks failed" in r.summary.read_text()
    (tmp_path / "fail").unlink()
    again = run_study(TOY, toy_model, data, ToyConfig(), tmp_path / "run")
    assert (again.tasks_run, again.failed, again.stats.resumed) == (1, 0, 4)
    assert _log(tmp_path) == [0, 1, 2, 3, 4, 3]
    assert not (tmp_path / "run" / "errors.parquet").exists()
    assert again.claims["the sum of squares 0..4 is 30"].held is True


def _broken(i: int) -> pd.DataFrame:
    raise ValueError("k must be in [1, 8]; got 20")


def test_a_run_whose_every_task_failed_alike_says_the_error_once(tmp_path, toy_model):
    broken = Study(name="toy", title="Toy study", config=ToyConfig,
                   plan=lambda ctx: Plan([Task("powers", f"i{i}", _broken, dict(i=i))
                                          for i in range(ctx.config.n)]),
                   tables={"powers": Table()})
    r = run_study(broken, toy_model, load_data("digits"), ToyConfig(), tmp_path / "run")
    assert r.failed == 5 and r.claims == {}
    text = r.summary.read_text()
    assert ("Every failed task raised the same error, ValueError: k must be in [1, 8]; got 20: "
            "fix its cause") in text
    assert text.count("k must be in") == 1
    # nothing finished: the corrected run takes the folder over instead of being refused
    fixed = run_study(TOY, toy_model, load_data("digits"), ToyConfig(power=3), tmp_path / "run")
    assert fixed.failed == 0 and fixed.stats.resumed == 0
    assert fixed.tables["powers"]["value"].tolist() == [0, 1, 8, 27, 64]


def test_another_configuration_model_or_data_is_refused(tmp_path, toy_model):
    data = load_data("digits")
    run_study(TOY, toy_model, data, ToyConfig(), tmp_path / "run")
    with pytest.raises(RunFolderError, match=r"config.power: 2 -> 3\)"):
        run_study(TOY, toy_model, data, ToyConfig(power=3), tmp_path / "run")
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    with pytest.raises(RunFolderError, match=r"model.sha256"):
        run_study(TOY, other, data, ToyConfig(), tmp_path / "run")
    with pytest.raises(RunFolderError, match=r"data.sha256"):
        run_study(TOY, toy_model, data.subset(slice(0, 100)), ToyConfig(), tmp_path / "run")
    fresh = run_study(TOY, toy_model, data, ToyConfig(power=3), tmp_path / "run", fresh=True)
    assert fresh.tables["powers"]["value"].tolist() == [0, 1, 8, 27, 64]
    with pytest.raises(TypeError, match="takes a ToyConfig"):
        run_study(TOY, toy_model, data, StabilityConfig(), tmp_path / "run")


# ---------------------------------------------------------------- the stability study

CONFIG = StabilityConfig(images=2, alphas=(0.5, 1.0), ts=(0.0, 1.0), pgd_steps=2)
RUN = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from resdyn import load_model, load_data
    from resdyn.studies import StabilityConfig, run_stability
    run_stability(load_model("digits-resnet20"), load_data("digits"), sys.argv[1],
                  StabilityConfig(images=2, alphas=(0.5, 1.0), ts=(0.0, 1.0), pgd_steps=2))
""")


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert table_differences(a, b) == []


@pytest.fixture(scope="module")
def serial(tmp_path_factory, single_thread):
    out = tmp_path_factory.mktemp("serial") / "run"
    return run_study(STABILITY, load_model("digits-resnet20"), load_data("digits"), CONFIG, out)


@pytest.mark.slow
def test_stability_tables_agree_with_those_from_before_the_move(serial):
    """The rows the study wrote before it moved onto the runner, on another machine: counts,
    names and labels exactly, numbers within each column's precision."""
    for name in TABLES:  # columns added since are left out
        before = across_machines(pd.read_parquet(BEFORE / f"{name}.parquet"))
        now = across_machines(serial.tables[name])
        assert table_differences(now[list(before.columns)], before, ACROSS_MACHINES) == []
    assert serial.failed == 0 and len(serial.claims) == 7 and len(serial.figures) == 5


def test_tolerances_catch_a_change_beyond_a_columns_precision():
    before = pd.read_parquet(BEFORE / "propagation.parquet")
    nudged = before.assign(growth=before["growth"] * (1 + 1e-6))  # within float32's reach
    assert table_differences(nudged, before, ACROSS_MACHINES) == []
    assert table_differences(nudged, before) == ["column 'growth' differs"]
    moved = before.assign(growth=before["growth"] * (1 + 1e-3))
    assert table_differences(moved, before, ACROSS_MACHINES) == [
        "column 'growth' differs by more than 1e-05 of its scale"]
    spectra = pd.read_parquet(BEFORE / "spectra.parquet")
    assert table_differences(spectra.assign(n_zero=spectra["n_zero"] + 1), spectra,
                             ACROSS_MACHINES) == ["column 'n_zero' differs"]


@pytest.mark.slow
def test_stability_killed_at_a_random_task_resumes_to_the_same_tables(serial, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    kill_at = random.Random().randint(1, serial.stats.total - 2)
    proc = subprocess.Popen([sys.executable, "-c", RUN, str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list((out / "tasks").glob("*/*.parquet"))) < kill_at:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored = len(list((out / "tasks").glob("*/*.parquet")))
    assert kill_at <= stored < serial.stats.total
    done = subprocess.run([sys.executable, "-c", RUN, str(out)], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    for name in TABLES:
        _same(pd.read_parquet(out / f"{name}.parquet"), serial.tables[name])
    assert f"computed {serial.stats.total - stored} of {serial.stats.total}" in (
        out / "summary.md").read_text()


@pytest.mark.slow
def test_stability_on_dask_workers_that_cannot_see_the_run_folder(serial, tmp_path,
                                                                  monkeypatch):
    """The workers get the model with the run, not through the file system: the references
    the tasks carry point at a file no process can read, and the tables are the serial ones."""
    from dataclasses import replace

    from resdyn.studies import runner

    real = runner.save_model

    def elsewhere(model, sha256, folder):
        return replace(real(model, sha256, folder), path=str(tmp_path / "unseen" / "model.pth"))

    monkeypatch.setattr(runner, "save_model", elsewhere)
    r = run_study(STABILITY, load_model("digits-resnet20"), load_data("digits"), CONFIG,
                  tmp_path / "run", executor=Executor("dask", workers=2, threads=1))
    assert r.failed == 0, r.errors["message"].tolist()
    for name in TABLES:
        _same(r.tables[name], serial.tables[name])


def test_stability_refuses_a_changed_eps_into_the_same_folder(serial):
    with pytest.raises(RunFolderError, match=r"config.eps: 0.1 -> 0.3"):
        run_study(STABILITY, load_model("digits-resnet20"), load_data("digits"),
                  StabilityConfig(images=2, alphas=(0.5, 1.0), ts=(0.0, 1.0), pgd_steps=2,
                                  eps=0.3), serial.out)


def test_a_result_shows_its_claims_and_figures_in_a_notebook(tmp_path):
    import html

    from resdyn.studies import ODE, OdeConfig

    r = run_study(ODE, None, None, OdeConfig(starts=2), tmp_path / "ode")
    frame = r.claims_frame()
    assert frame["claim"].tolist() == list(ODE.claims)
    assert frame["evidence"].tolist() == [c.evidence for c in r.claims.values()]
    page = r._repr_html_()
    for c in r.claims.values():
        assert html.escape(c.evidence) in page
    assert page.count("<img ") == len(r.figures) == len(ODE.figures)
    assert "6 of 6 tasks run here, 0 resumed, 0 failed" in page
