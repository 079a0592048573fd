"""The commands' options as option classes (resdyn.studies.command_options), their resolution
from command line, option file and defaults (OptionSet), and the library pieces the commands
print (units_frame, console progress, failure messages, evaluation_text)."""

import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from resdyn.cli import app
from resdyn.models import load_model, units, units_frame
from resdyn.runs import RunProgress
from resdyn.runs.console import console_progress, failure_message, one_error
from resdyn.studies.command_options import ProbeOptions, RunOptions, TrainOptions
from resdyn.studies.option_file import OptionSet, write_options

runner = CliRunner()


def test_command_line_beats_file_beats_default(tmp_path):
    opts = OptionSet([("r_", RunOptions)], defaults={"out": "out/x"})
    path = write_options(tmp_path / "o.toml", {"device": "cuda", "workers": 3, "out": "o"})
    values, record = opts.resolve({"r_workers": "2"}, path)
    assert values["r_"] == {"out": "o", "workers": 2, "device": "cuda"}
    assert record == {"out": "o", "workers": 2, "device": "cuda"}
    assert opts.resolve({}, None)[0]["r_"] == {"out": "out/x"}


def test_how_to_run_is_never_read_from_a_file(tmp_path):
    opts = OptionSet([("r_", RunOptions)])
    with pytest.raises(ValueError, match="unknown option 'fresh'.*takes out, executor"):
        opts.resolve({}, write_options(tmp_path / "o.toml", {"fresh": True}))
    values, record = opts.resolve({"r_fresh": True})
    assert values["r_"] == {"fresh": True} and record == {}  # fresh is not recorded


def test_a_required_option_missing_is_named():
    with pytest.raises(ValueError, match=r"^Missing option '--out' \(FILE.safetensors\)$"):
        OptionSet([("t_", TrainOptions)]).resolve({"t_model": "cifar-resnet20",
                                                   "t_data": "digits"})


def test_train_options_are_checked_where_declared():
    with pytest.raises(ValueError, match="--out must end in .safetensors; got m.pth"):
        TrainOptions(model="cifar-resnet20", data="digits", out="m.pth")
    with pytest.raises(ValueError, match="epochs must be at least 1; got 0"):
        TrainOptions(model="cifar-resnet20", data="digits", out="m.safetensors", epochs=0)


def test_probe_options_load_the_named_units():
    m, shape, us = ProbeOptions(model="digits-resnet20", names=("stages.1.0",)).load()
    assert shape == (1, 8, 8) and [u.name for u in us] == ["stages.1.0"]


def test_units_frame_is_one_row_per_unit():
    us = units(load_model("digits-resnet20"), (1, 8, 8))
    frame = units_frame(us)
    assert frame["name"].tolist() == [u.name for u in us]
    assert frame["kind"].value_counts().to_dict() == {"regular": 7, "downsampling": 2}
    assert (frame["n_in"] == [u.n_in for u in us]).all() and frame.loc[0, "in"] == "16x8x8"


def test_check_of_named_units(tmp_path):
    r = runner.invoke(app, ["check", "-m", "digits-resnet20", "--units", "stages.0.0,stages.0.1"],
                      env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "stages.0.0" in r.output and "stages.1.0" not in r.output
    assert "3 PASS, 0 FAIL" in r.output  # two units and their stage


def test_console_progress_says_what_an_interrupt_keeps(capsys):
    with console_progress("spectra") as show:
        assert show.kept("out/s") == "nothing was computed yet in out/s"
        show(RunProgress(total=4, resumed=1, done=1, failed=0, label="resuming"))
        show(RunProgress(total=4, resumed=1, done=3, failed=0, label="spectrum", analysis="a",
                         pending={"a": 1}))
        assert show.kept("out/s") == "3 of 4 tasks are kept in out/s"
    said = capsys.readouterr().err
    assert "spectra: resuming: 1 of 4 tasks already done, 3 to run" in said


def test_failure_message_names_one_shared_error_once():
    from rich.console import Console

    same = pd.DataFrame({"error": ["ValueError"] * 3, "message": ["no [red] module x"] * 3})
    assert one_error(same) == "ValueError: no [red] module x"
    console = Console(record=True, width=300)
    console.print(failure_message(3, 5, same, "errors.parquet"))
    assert console.export_text() == ("3 of 5 tasks failed, every one with ValueError: no [red] "
                                     "module x; fix its cause and run the command again\n")
    mixed = pd.DataFrame({"error": ["ValueError", "OSError"], "message": ["a", "b"]})
    assert one_error(mixed) is None
    assert "(see errors.parquet); rerun the same command" in failure_message(2, 5, mixed,
                                                                               "errors.parquet")


def test_python_m_resdyn_is_the_console_script():
    r = subprocess.run([sys.executable, "-m", "resdyn", "units", "-m", "digits-resnet20",
                        "--input-shape", "1,8"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "error: --input-shape: expected three numbers C,H,W; got '1,8'\n"
