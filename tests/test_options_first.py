"""Every option is checked before the run folder is touched: types and bounds from the config's
fields (resdyn.studies.options), the study's own checks against the model and data, the
executor; a run that could not start leaves no claim. Training that diverges fails as such."""

import dataclasses
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resdyn import load_data, load_model
from resdyn.cli import app
from resdyn.runs import Executor
from resdyn.studies import STUDIES, run_study
from resdyn.studies.identity import IdentityConfig
from resdyn.studies.options import MAX_DEPTH
from resdyn.studies.spectra import SPECTRA, SpectraConfig
from resdyn.studies.stable_ode import OdeConfig
from resdyn.train import TrainingDiverged, train

runner = CliRunner()

# the smallest configuration of each study, on which one option at a time is changed
SMALL = {
    "spectra": {"images": 1, "k": 2, "names": ("stages.0.0",)},
    "stability": {"images": 2, "k": 2, "alphas": (1.0,), "ts": (1.0,), "pgd_steps": 1,
                  "stage_spectra": False},
    "identity": {"images": 2},
    "identity-sweep": {"depths": (1,), "epochs": 1, "images": 2},
    "stiffness": {"images": 2, "blocks": ("stages.0.0",)},
    "stable-ode": {},
    "stable-compare": {"datasets": ("swissroll",), "blocks": 1, "width": 2, "epochs": 1,
                       "images": 2, "resolution": 4},
    "dynamics": {"images": 1, "k": 2, "family": ()},
}

VALUES = st.one_of(
    st.integers(-3, 3), st.integers(10**5, 10**15), st.integers(-(10**15), -(10**5)),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=3), st.none(),
    st.booleans(), st.tuples(st.integers(-3, 10**13)), st.tuples(st.floats()), st.just(()))


class Started(Exception):
    """Raised from the progress callback when the tasks are about to run: the plan was made."""


def _started(progress) -> None:
    raise Started


@pytest.fixture(scope="module")
def model_and_data():
    return load_model("digits-resnet20"), load_data("digits")


def _field_names(study):
    return [f.name for f in dataclasses.fields(study.config) if f.name != "family_digests"]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SMALL))
def test_a_refused_option_claims_nothing_and_an_accepted_one_plans(name, model_and_data,
                                                                   tmp_path_factory):
    """Fuzz: one field of the smallest config at a time, any value. Either the config or the
    run refuses it with one line (ValueError/TypeError) and no folder is left, or the run
    plans its tasks (they are about to run, and the folder is then released again)."""
    study = STUDIES[name]
    base = study.config(**SMALL[name])
    model, data = model_and_data if study.resolve is not None else (None, None)
    if name == "identity-sweep":
        data = model_and_data[1]

    @settings(max_examples=25, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(field=st.sampled_from(_field_names(study)), value=VALUES)
    def check(field, value):
        out = tmp_path_factory.mktemp("run") / "out"
        try:
            config = replace(base, **{field: value})
            run_study(study, model, data, config, out, progress=_started)
        except (ValueError, TypeError) as e:
            message = str(e)
            assert "\n" not in message and message, message
        except Started:
            pass
        assert not out.exists(), f"{field}={value!r} left {sorted(out.iterdir())}"

    check()


@pytest.mark.parametrize("config, error, words", [
    (lambda: SpectraConfig(images="3"), TypeError, "images must be an integer; got '3'"),
    (lambda: SpectraConfig(images=2.5), TypeError, "images must be an integer; got 2.5"),
    (lambda: IdentityConfig(eps=0.1), TypeError, "eps must be a tuple of numbers, e.g. "
                                                 "eps=(0.1,); got 0.1"),
    (lambda: SpectraConfig(k=10**12), ValueError, "k must be at most 10 000"),
    (lambda: OdeConfig(starts=True), TypeError, "starts must be an integer; got True"),
])
def test_python_api_refuses_a_wrong_type_naming_the_field(config, error, words):
    with pytest.raises(error) as e:
        config()
    assert words in str(e.value)


def test_run_study_refuses_a_model_or_data_given_by_name(tmp_path, model_and_data):
    model, data = model_and_data
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module or None; got a str "
                       r"\(load it first: resdyn.load_model\('digits-resnet20'\)\)"):
        run_study(SPECTRA, "digits-resnet20", data, SpectraConfig(images=1), tmp_path / "o")
    with pytest.raises(TypeError, match=r"resdyn.load_data\('digits'\)"):
        run_study(SPECTRA, model, "digits", SpectraConfig(images=1), tmp_path / "o")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("executor", [
    "spark", Executor("dask", scheduler="tcp://127.0.0.1:1", timeout=2)])
def test_an_executor_that_cannot_start_leaves_no_claim(tmp_path, model_and_data, executor):
    model, data = model_and_data
    out = tmp_path / "run"
    with pytest.raises((ValueError, ConnectionError)):
        run_study(SPECTRA, model, data, SpectraConfig(images=1, k=2), out, executor=executor)
    assert not out.exists()  # neither run.json nor model.pth are left behind


def test_cli_scheduler_that_does_not_answer_leaves_no_claim(tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["spectra", "--model", "digits-resnet20", "--images", "1",
                            "--top-k", "2", "--scheduler", "tcp://127.0.0.1:1", "--out", str(out)])
    assert r.exit_code == 2 and "no Dask scheduler answered" in r.output, r.output
    assert not out.exists()


def test_diverging_training_raises_and_saves_nothing():
    from resdyn.models import preresnet

    data = load_data("digits", split="train").subset(range(64))
    with pytest.raises(TrainingDiverged, match=r"training diverged: the loss is (nan|inf) at "
                       r"epoch 1 of 2 \(learning rate 1e\+12\); no checkpoint was written"):
        train(preresnet(1, in_channels=1), data, epochs=2, lr=1e12, batch_size=16)


@pytest.mark.slow
def test_sweep_with_a_diverging_lr_fails_as_divergence_and_resumes_cleanly(tmp_path):
    out = tmp_path / "sweep"
    args = ["identity-sweep", "--depths", "1", "--epochs", "1", "--images", "2",
            "--out", str(out)]
    r = runner.invoke(app, [*args, "--lr", "1e12"])
    assert r.exit_code == 1, r.output
    assert "TrainingDiverged: training diverged" in r.output
    assert "declare_unit" not in r.output
    assert not list((out / "checkpoints").glob("*"))  # no NaN checkpoint kept
    r = runner.invoke(app, [*args, "--lr", "0.1"])  # the folder holds no result: no --fresh
    assert r.exit_code == 0, r.output
    assert len(list((out / "checkpoints").glob("*.safetensors"))) == 1


def test_sweep_depth_beyond_the_stated_maximum_is_refused_before_the_folder(tmp_path):
    r = runner.invoke(app, ["identity-sweep", "--depths", f"2,{MAX_DEPTH + 1}",
                            "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and f"depths must be at most {MAX_DEPTH}" in r.output, r.output
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc on this system")
@pytest.mark.parametrize("args", [
    ["spectra", "--model", "digits-resnet20", "--images", "1", "--out", "/proc/self"],
    ["spectra", "--model", "digits-resnet20", "--images", "1", "--out", "/proc/resdyn/x"],
    ["report", "{run}", "--out", "/proc/x.html"],
])
def test_an_unwritable_system_folder_is_one_line_naming_it(tmp_path, args):
    from resdyn.studies import ODE

    run = tmp_path / "run"
    run_study(ODE, None, None, OdeConfig(), run)  # a study of no model: a report to write
    args = [a.replace("{run}", str(run)) for a in args]
    r = runner.invoke(app, args)
    target = args[args.index("--out") + 1]
    assert r.exit_code == 2, r.output
    assert f"error: cannot write {target}" in r.output and ".tmp" not in r.output, r.output


@pytest.mark.parametrize("args, words", [
    (["--workers", "100000"], "--workers must be at most 256"),
    (["--workers", "0"], "--workers must be at least 1"),
])
def test_run_sizes_are_bounded_before_the_folder(tmp_path, args, words):
    out = tmp_path / "o"
    r = runner.invoke(app, ["spectra", "--model", "digits-resnet20", *args, "--out", str(out)])
    assert r.exit_code == 2 and words in r.output, r.output
    assert not out.exists()
