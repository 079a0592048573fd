"""Every refusal of the command line is one line ``error: ...`` with exit status 2; Ctrl-C is one
line with status 130 wherever it lands, start-up included; ``options.toml`` holds any string."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from click.testing import CliRunner

from resdyn.cli import app
from resdyn.studies.option_file import read_options, write_options

runner = CliRunner()
ENV = {"COLUMNS": "40"}  # a narrow terminal: click's usage box would wrap; one line must not
ROOT = Path(__file__).resolve().parents[1]


def _one_line_error(r) -> str:
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert r.stdout == "" and "Traceback" not in r.output
    return r.stderr


@pytest.mark.parametrize("args, words", [
    (["spectra", "-m", "digits-resnet20", "--images", "abc"],  # not an integer
     ["--images must be an integer", "got 'abc'", "see 'resdyn spectra --help'"]),
    (["spectra", "-m", "digits-resnet20", "--images", "0"],  # below min=1
     ["--images must be at least 1", "got 0", "see 'resdyn spectra --help'"]),
    (["spectra", "-m", "digits-resnet20", "--images=0"], ["--images must be at least 1"]),
    (["spectra", "-m", "digits-resnet20", "--bogus"], ["No such option '--bogus'"]),  # unknown
    (["spectra", "--images", "2"], ["Missing option '--model'"]),  # required
    (["units"], ["Missing option '--model'", "see 'resdyn units --help'"]),
    (["--threads", "0", "models"], ["'--threads'", "got '0'", "see 'resdyn --help'"]),
    (["stable", "ode", "--h", "x"], ["--h must be a number", "got 'x'"]),  # a sub-group's command
    (["report"], ["Missing argument"]),
    (["train", "-m", "cifar-resnet20", "-d", "digits", "--out", "r20.pth"],  # the command's own
     ["--out must end in .safetensors; got r20.pth"]),
])
def test_usage_errors_are_one_line_with_status_2(args, words):
    text = _one_line_error(runner.invoke(app, args, env=ENV, prog_name="resdyn"))
    missing = [w for w in words if w not in text]
    assert not missing, f"{missing} not in {text!r}"


def test_a_bad_choice_is_one_line_before_any_work(tmp_path):
    text = _one_line_error(runner.invoke(app, ["spectra", "-m", "digits-resnet20", "--executor",
                                               "bogus", "--out", str(tmp_path / "run")], env=ENV))
    assert "--executor: unknown 'bogus'; valid: serial, dask" in text


def test_help_still_shows():
    r = runner.invoke(app, ["spectra", "--help"], env=ENV, prog_name="resdyn")
    assert r.exit_code == 0 and "Usage: resdyn spectra [OPTIONS]" in r.stdout, r.output
    assert "Options" in r.stdout and "error" not in r.output
    r = runner.invoke(app, [], env=ENV, prog_name="resdyn")  # no arguments: the help
    assert "Usage: resdyn [OPTIONS] COMMAND" in r.stdout and "Commands" in r.stdout, r.output
    assert "error" not in r.output


# ---------------------------------------------------------------- Ctrl-C

#: Runs the console script's entry as pyproject.toml declares it (module:function), with a
#: Ctrl-C (a real SIGINT to itself) the moment anything imports torch, i.e. during start-up.
#: "swallowed": a library catches the KeyboardInterrupt of its half-done import and fails later
#: with another error (numpy can: AttributeError, RecursionError).
CTRL_C_AT_IMPORT = """
import builtins, importlib, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whatever ran us
swallowed = sys.argv.pop(1) == "swallowed"
real_import = builtins.__import__
def importing(name, *args, **kwargs):
    if name == "torch" or name.startswith("torch."):
        try:
            signal.raise_signal(signal.SIGINT)  # handled at once: KeyboardInterrupt from here
        except KeyboardInterrupt:
            if not swallowed:
                raise
            raise AttributeError("module 'torch' has no attribute '_C'")
    return real_import(name, *args, **kwargs)
builtins.__import__ = importing
module, _, function = sys.argv.pop(1).partition(":")
sys.argv[0] = "resdyn"
sys.exit(getattr(importlib.import_module(module), function)())
"""


@pytest.mark.parametrize("how", ["raised", "swallowed"])
def test_ctrl_c_while_starting_is_one_line_with_status_130(how):
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["resdyn"]
    r = subprocess.run([sys.executable, "-c", CTRL_C_AT_IMPORT, how, entry, "models"],
                       capture_output=True, text=True, env={**os.environ, **ENV}, timeout=120)
    assert r.returncode == 130, r.stderr
    assert r.stderr == "interrupted: nothing was computed yet\n" and r.stdout == ""


def test_ctrl_c_in_a_command_is_one_line_with_status_130(monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("resdyn.models.load_model", interrupted)
    r = runner.invoke(app, ["units", "--model", "digits-resnet20"], env=ENV)
    assert r.exit_code == 130, r.output
    assert r.stderr.startswith("interrupted") and r.stderr.count("\n") == 1, r.stderr


# ---------------------------------------------------------------- dynamics --family

def test_a_missing_family_checkpoint_says_it_does_not_exist(tmp_path):
    missing = tmp_path / "x.safetensors"
    text = _one_line_error(runner.invoke(app, ["dynamics", "-m", "digits-resnet20", "--family",
                                               str(missing), "--out", str(tmp_path / "run")],
                                         env=ENV))
    assert f"family checkpoint {str(missing)!r} does not exist" in text
    assert "--family" in text and "digits-resnet20" in text and ".safetensors files" in text


# ---------------------------------------------------------------- options.toml

#: Strings TOML must escape (newline, quote, backslash, tab, other control characters) and
#: Unicode it must keep.
AWKWARD = 'a\nb "quoted" back\\slash\ttab\r\x01\x7f é ☃ \U0001F600'


def test_options_toml_round_trips_any_string(tmp_path):
    options = {"model": AWKWARD, "units": AWKWARD, "out": str(tmp_path / AWKWARD), "images": 3,
               "eps": [0.1, 0.05], "stages": False}
    path = write_options(tmp_path / "options.toml", {**options, "weights": None})
    assert read_options(path) == options  # None: left out


def test_the_command_line_imports_without_tomllib():
    """Python 3.10 has no tomllib: the command line reads option files with tomli there."""
    code = ("import sys, tomllib; sys.modules['tomli'] = tomllib; sys.modules['tomllib'] = None\n"
            "import resdyn.cli, resdyn.studies.option_file as c\n"
            "assert c.tomllib is sys.modules['tomli'], c.tomllib\n"
            "import pathlib, tempfile; p = pathlib.Path(tempfile.mkdtemp()) / 'o.toml'\n"
            "c.write_options(p, {'images': 3}); assert c.read_options(p) == {'images': 3}\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
