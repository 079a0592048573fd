"""The spectra study: one row per (image, unit or stage), resumable, on the shared runner."""

from __future__ import annotations

import numpy as np
import pytest

from resdyn import capture, load_data, load_model, stages, units
from resdyn.operators import stage_jacobian, unit_jacobian
from resdyn.runs import RunFolderError, local_ref
from resdyn.runs.folder import locked
from resdyn.spectra import singular_values
from resdyn.studies import SPECTRA, SpectraConfig, run_study
from resdyn.tasks.spectrum import spectrum_row, spectrum_task

pytestmark = pytest.mark.usefixtures("single_thread")
COLUMNS = ["model", "image", "label", "name", "stage", "kind", "n_in", "n_out", "method",
           "values", "n_above", "n_plateau", "n_below", "n_zero", "converged", "seconds"]
NAMES = ("stages.1.0", "stages.2.1", "stages.2")


@pytest.fixture(scope="module")
def setup():
    model = load_model("cifar-resnet20", in_channels=1)
    return model, units(model, (1, 8, 8)), load_data("digits")


@pytest.fixture(scope="module")
def run(setup, tmp_path_factory):
    model, _, data = setup
    out = tmp_path_factory.mktemp("spectra") / "run"
    return run_study(SPECTRA, model, data, SpectraConfig(images=2, names=NAMES, stages=True), out,
                     model_name="r20")


def test_rows_and_columns(run, setup):
    _, _, data = setup
    df = run.tables["spectra"]
    assert set(COLUMNS) <= set(df.columns)
    images = data.choose(2, 0).tolist()  # the same seeded choice as every study
    assert df.image.tolist() == [images[0], images[1]] * 3
    assert df.label.tolist() == [int(data.y[i]) for i in images] * 3
    assert df.kind.tolist()[::2] == ["downsampling", "regular", "stage"]
    assert df.name.tolist()[::2] == list(NAMES)
    assert (df.model == "r20").all() and (df.method == "dense").all() and df.converged.all()
    assert (run.out / "spectra.parquet").is_file() and run.figures["bins"].is_file()


def test_values_and_bins_are_consistent(run):
    for row in run.tables["spectra"].itertuples():
        v = np.asarray(row.values)
        assert len(v) == min(row.n_in, row.n_out) and np.all(np.diff(v) <= 0)
        assert row.n_above + row.n_plateau + row.n_below + row.n_zero == len(v)
        assert row.n_above == int((v > 1.01).sum())
        assert row.n_zero >= row.structural_zeros


def test_rows_match_direct_computation(setup, run):
    model, us, data = setup
    df = run.tables["spectra"]
    image = int(df.image.iloc[1])
    acts = capture(model, data.x[image][None], us)
    u = next(u for u in us if u.name == "stages.2.1")
    direct = singular_values(unit_jacobian(u, acts.inputs[u.name][0]), method="dense").values
    got = df[(df.image == image) & (df.name == "stages.2.1")]["values"].iloc[0]
    np.testing.assert_allclose(got, direct, rtol=0, atol=1e-13)
    st = stages(us)[2]
    direct = singular_values(stage_jacobian(st, acts.inputs[st[0].name][0])).values
    got = df[(df.image == image) & (df.name == "stages.2")]["values"].iloc[0]
    np.testing.assert_allclose(got, direct, rtol=0, atol=1e-13)


def test_rerun_resumes_without_duplicate_rows_and_refuses_another_model(run, setup):
    model, _, data = setup
    again = run_study(SPECTRA, model, data, SpectraConfig(images=2, names=NAMES, stages=True),
                      run.out, model_name="r20")
    assert again.tasks_run == 0 and len(again.tables["spectra"]) == 6
    with pytest.raises(RunFolderError, match="model.name: 'r20' -> 'digits-resnet20'"):
        run_study(SPECTRA, load_model("digits-resnet20"), data,
                  SpectraConfig(images=2, names=NAMES, stages=True), run.out)
    with locked(run.out):  # the refused run holds no lock afterwards
        assert list(run.out.glob("*.lock")) == [run.out / "run.lock"]


def test_unknown_names_and_too_many_images(setup, tmp_path):
    model, _, data = setup
    with pytest.raises(ValueError, match="unknown unit name.*valid: stages.0.0"):
        run_study(SPECTRA, model, data, SpectraConfig(names=("layer9",)), tmp_path / "a")
    with pytest.raises(ValueError, match="asked for 9 images but digits \\(test\\) has 4"):
        run_study(SPECTRA, model, data.subset(slice(0, 4)), SpectraConfig(images=9),
                  tmp_path / "b")
    assert not (tmp_path / "b").exists()  # no claim left on the folder: fix and rerun
    run_study(SPECTRA, model, data.subset(slice(0, 4)), SpectraConfig(images=1,
              names=("stages.0.0",)), tmp_path / "b")


def test_top_k_and_slq_rows(setup):
    model, us, data = setup
    acts = capture(model, data.x[:1], us)
    u = us[2]
    top = spectrum_row(u, acts.inputs[u.name][0], method="arpack", k=5)
    full = spectrum_row(u, acts.inputs[u.name][0], method="dense")
    assert top["method"] == "arpack" and len(top["values"]) == 5
    np.testing.assert_allclose(top["values"], full["values"][:5], rtol=1e-8)
    slq = spectrum_row(u, acts.inputs[u.name][0], method="slq")
    assert slq["values"] == [] and slq["method"] == "slq"
    assert slq["n_above"] + slq["n_plateau"] + slq["n_below"] + slq["n_zero"] == 1024
    # the estimated zero count is at least the exact ReLU-killed rows
    assert slq["n_zero"] >= slq["structural_zeros"] > 0


def test_spectrum_task_is_a_one_row_table(setup):
    model, us, data = setup
    ref = local_ref(model)
    one = spectrum_task(ref, (1, 8, 8), data.x[4], us[3].name, model_name="m", image=4, label=2)
    assert len(one) == 1 and one.kind.iloc[0] == "downsampling" and one.image.iloc[0] == 4
    row = spectrum_task(ref, (1, 8, 8), data.x[4], "stages.1", model_name="m", image=4, label=2)
    assert row.kind.iloc[0] == "stage" and row.name.iloc[0] == "stages.1"
