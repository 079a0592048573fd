"""One run context (device, precision, threads) reaches every task: each Jacobian-building task
builds its operators in the run's precision, results stay within that precision's reach of
float64, rows record their device, and bad devices are one line."""

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from conftest import says

from resdyn import load_model
from resdyn.cli import app
from resdyn.data import load_data
from resdyn.runs import RunContext, current, local_ref
from resdyn.runs.context import using
from resdyn.studies import STIFFNESS, StiffnessConfig, run_study
from resdyn.tasks import altered as altered_module
from resdyn.tasks import eigen as eigen_module
from resdyn.tasks import projection as projection_module
from resdyn.tasks import propagation as propagation_module
from resdyn.tasks import spectrum as spectrum_module

MODEL = "digits-resnet20"
UNIT = "stages.0.1"


@pytest.fixture(scope="module")
def setup(single_thread):
    model, data = load_model(MODEL), load_data("digits")
    return local_ref(model), data


def _spy(monkeypatch, module) -> list[torch.dtype]:
    """Record the dtype of every Jacobian operator ``module`` builds."""
    seen = []
    for name in ("unit_jacobian", "stage_jacobian"):
        original = getattr(module, name, None)
        if original is None:
            continue

        def spy(*args, _original=original, **kwargs):
            op = _original(*args, **kwargs)
            seen.append(op.dtype)
            return op

        monkeypatch.setattr(module, name, spy)
    return seen


def _tasks(ref, data):
    """Every task kind that builds a Jacobian: (module it builds it in, call, numeric columns
    compared with float64, and how far float32 products may move them, relative to each
    column's scale)."""
    x, y = data.x[0].clone(), int(data.y[0])
    shape = data.input_shape
    eps, bounds = data.pixel_budget(0.1), data.bounds
    return {
        "spectra": (spectrum_module, lambda: spectrum_module.spectrum_task(
            ref, shape, x, UNIT, model_name=MODEL, image=0, label=y), ["values"], 1e-5),
        "propagation": (propagation_module, lambda: propagation_module.propagation_task(
            ref, shape, x, y, 0, eps, bounds, 2, 0), ["predicted_growth"], 1e-5),
        "projections": (projection_module, lambda: projection_module.projection_task(
            ref, shape, UNIT, x, y, 0, eps, bounds), ["sigma"], 1e-5),
        "skip": (altered_module, lambda: altered_module.skip_task(
            ref, shape, UNIT, x, 0.5, 0, "auto", None), ["values"], 1e-5),
        "interpolation": (altered_module, lambda: altered_module.interpolation_task(
            ref, shape, UNIT, x, 0.5, 0, 0, "auto", None), ["values"], 1e-5),
        "stiffness": (eigen_module, lambda: eigen_module.stiffness_task(
            ref, shape, x, y, 0, (UNIT,), 4096, 6, 0, True), ["spectral_radius"], 1e-5),
    }


@pytest.mark.parametrize("kind", ["spectra", "propagation", "projections", "skip",
                                  "interpolation", "stiffness"])
def test_every_jacobian_task_builds_in_the_runs_precision(setup, monkeypatch, kind):
    ref, data = setup
    module, call, columns, tol = _tasks(ref, data)[kind]
    seen = _spy(monkeypatch, module)
    with using(RunContext(precision="float64")):
        rows64 = call()
    assert seen and set(seen) == {torch.float64}
    seen.clear()
    with using(RunContext(precision="float32")):
        rows32 = call()
    assert seen and set(seen) == {torch.float32}
    for col in columns:
        a, b = (np.concatenate([np.ravel(np.asarray(v, dtype=float)) for v in r[col]])
                for r in (rows64, rows32))
        scale = np.abs(a[np.isfinite(a)]).max()
        assert np.nanmax(np.abs(a - b)) <= tol * scale, col
        assert not np.array_equal(a, b), f"{col}: float32 products changed nothing"


def test_outside_a_run_the_context_is_the_cpu_in_float64():
    assert current() == RunContext("cpu", "float64", None)
    before = torch.get_num_threads()
    with using(RunContext(precision="float32", threads=1)):
        assert current().dtype == torch.float32 and torch.get_num_threads() == 1
    assert current().precision == "float64" and torch.get_num_threads() == before


def test_stiffness_in_float32_keeps_its_metrics(setup, tmp_path):
    """The rule for float32 products in the stiffness study (measured on the shipped digits
    models: eigenvalues move by up to 9.4e-7·ρ, every metric by < 1.1e-7 relative): the share
    of Re λ < 0 is identical and every index within 1e-6 of float64."""
    model, data = load_model(MODEL), load_data("digits")
    config = StiffnessConfig(images=2)
    a = run_study(STIFFNESS, model, data, config, tmp_path / "64").tables["stiffness"]
    b = run_study(STIFFNESS, model, data, config, tmp_path / "32",
                  precision="float32").tables["stiffness"]
    assert a["share_negative"].equals(b["share_negative"])
    for col in ("stiffness_signed", "stiffness_ratio", "spectral_radius"):
        x, y = a[col].to_numpy(), b[col].to_numpy()
        assert np.array_equal(np.isnan(x), np.isnan(y)), col
        ok = ~np.isnan(x)
        assert np.all(np.abs(x[ok] - y[ok]) <= 1e-6 * np.abs(x[ok])), col
    assert set(b["device"]) == {"cpu"}


def test_rows_record_their_device_and_cpu_given_explicitly_changes_nothing(tmp_path):
    model, data = load_model(MODEL), load_data("digits")
    config = StiffnessConfig(images=2, blocks=(UNIT,))
    a = run_study(STIFFNESS, model, data, config, tmp_path / "a")
    b = run_study(STIFFNESS, model, data, config, tmp_path / "b", device="cpu")
    for name in a.tables:
        assert set(a.tables[name].get("device", pd.Series(["cpu"]))) == {"cpu"}
        from resdyn.runs.compare import table_differences
        assert table_differences(a.tables[name], b.tables[name]) == []


def test_a_study_that_refuses_float32_says_why(tmp_path):
    from resdyn.studies import COMPARE, CompareConfig

    with pytest.raises(ValueError, match="computes in float64 only: the share of Re"):
        run_study(COMPARE, None, None, CompareConfig(datasets=("swissroll",)), tmp_path / "r",
                  precision="float32")
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is absent")
@pytest.mark.parametrize("args", [
    ["spectra", "--model", MODEL], ["stiffness", "--model", MODEL], ["stable", "ode"],
    ["identity-sweep"], ["demo", "--quick"],
])
def test_an_absent_gpu_is_one_line_with_status_2(tmp_path, args):
    r = CliRunner().invoke(app, args + ["--device", "cuda", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    assert says(r.output, "device 'cuda' requested but CUDA is not available")
    assert "Traceback" not in r.output and not (tmp_path / "o").exists()


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device here (benchmarks/gpu_check.sh runs it "
                                          "on a GPU machine)"))]


@pytest.fixture(scope="module")
def on_cpu(tmp_path_factory, single_thread):
    """The quick demo's stability, identity and stiffness runs on the CPU, the reference."""
    return {part.folder: _run_part(part, tmp_path_factory.mktemp("cpu"), "cpu")
            for part in _parts()}


def _parts():
    from resdyn.studies.demo import parts

    return [p for p in parts(quick=True) if p.model is not None]


def _run_part(part, root, device):
    return run_study(part.study, load_model(part.model), load_data(part.data), part.config,
                     root / part.folder, model_name=part.model, device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_studies_on_each_device_agree_with_the_cpu(on_cpu, tmp_path, device):
    """Every study of one model run with ``device`` given explicitly: its tables equal the
    CPU's within each column's precision, and every row says where it was computed."""
    from conftest import ACROSS_MACHINES, across_machines

    from resdyn.runs.compare import table_differences

    for part in _parts():
        r = _run_part(part, tmp_path, device)
        assert r.failed == 0, r.errors["message"].tolist()
        for name, table in r.tables.items():
            if "device" in table and len(table):  # (an empty table says nowhere)
                assert set(table["device"]) == {"cuda:0" if device == "cuda" else "cpu"}, name
            a = across_machines(table.drop(columns=["device"], errors="ignore"))
            b = across_machines(on_cpu[part.folder].tables[name].drop(columns=["device"],
                                                                     errors="ignore"))
            assert table_differences(a, b, ACROSS_MACHINES) == [], (part.folder, name)
        assert {c: x.held for c, x in r.claims.items()} == {
            c: x.held for c, x in on_cpu[part.folder].claims.items()}
