"""--config FILE.toml: the same options as the flags, flags win, unknown keys refused."""

import json

from click.testing import CliRunner
from conftest import says

from resdyn.cli import app
from resdyn.runs.compare import folder_differences

runner = CliRunner()

SPECTRA = ["spectra", "--model", "digits-resnet20", "--images", "2", "--units",
           "stages.2.0,stages.2.1", "--top-k", "3"]


def _identity(folder) -> dict:
    ident = json.loads((folder / "run.json").read_text())
    return {k: ident[k] for k in ("study", "config", "model", "data")}


def test_toml_gives_the_same_run_as_flags(tmp_path):
    flags = runner.invoke(app, SPECTRA + ["--out", str(tmp_path / "flags")])
    assert flags.exit_code == 0, flags.output
    (tmp_path / "c.toml").write_text('model = "digits-resnet20"\nimages = 2\n'
                                     'units = ["stages.2.0", "stages.2.1"]\ntop-k = 3\n')
    filed = runner.invoke(app, ["spectra", "--config", str(tmp_path / "c.toml"),
                                "--out", str(tmp_path / "file")])
    assert filed.exit_code == 0, filed.output
    assert _identity(tmp_path / "flags") == _identity(tmp_path / "file")
    assert folder_differences(tmp_path / "flags", tmp_path / "file") == {}
    # the resolved options are written, and running from them resumes the same run
    options = (tmp_path / "flags" / "options.toml").read_text()
    assert 'model = "digits-resnet20"' in options and "top-k = 3" in options
    again = runner.invoke(app, ["spectra", "--config", str(tmp_path / "flags" / "options.toml")])
    assert again.exit_code == 0, again.output
    assert "resuming: 4 of 4 tasks already done" in again.output


def test_flags_win_over_the_file(tmp_path):
    (tmp_path / "c.toml").write_text('model = "digits-resnet20"\nimages = 5\nunits = "stages.2.0"\n')
    r = runner.invoke(app, ["spectra", "--config", str(tmp_path / "c.toml"), "--images", "1",
                            "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"]["images"] == 1


def test_bad_config_files_are_refused(tmp_path):
    cases = {"unknown.toml": ('imagez = 3\n', "unknown option 'imagez'"),
             "broken.toml": ('images = \n', "not valid TOML"),
             "fresh.toml": ('fresh = true\n', "unknown option 'fresh'")}
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        r = runner.invoke(app, ["spectra", "--config", str(tmp_path / name), "--model",
                                "digits-resnet20", "--out", str(tmp_path / "x")])
        assert r.exit_code == 2, r.output
        assert says(r.output, message), r.output
        assert not (tmp_path / "x").exists()
    r = runner.invoke(app, ["stable", "ode", "--config", str(tmp_path / "missing.toml")])
    assert r.exit_code == 2 and says(r.output, "missing.toml")
    (tmp_path / "t.toml").write_text("images = 3\n")  # an option of another command
    r = runner.invoke(app, ["stable", "ode", "--config", str(tmp_path / "t.toml")])
    assert r.exit_code == 2 and says(r.output, "unknown option 'images'") and says(r.output, "starts")
