"""Bad input on the command line: one line of error, exit status 2, no traceback, no run folder.

Rich wraps the output at the terminal width (and a temp path's length moves the breaks), and
click's usage errors come in a box: the checks match words after normalising whitespace and
dropping the box's border, and file names in the output with all whitespace removed.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from resdyn.cli import app

runner = CliRunner()
BORDER = str.maketrans("", "", "│╭╮╰╯─")


def _words(r) -> str:
    """The output with whitespace runs as single spaces and the error box's border dropped."""
    return " ".join(r.output.translate(BORDER).split())


def _squashed(r) -> str:
    """The output without any whitespace nor border, for matching file names and paths."""
    return "".join(r.output.translate(BORDER).split())


def _refused(r, *words: str) -> str:
    """Assert exit status 2, no traceback and every one of ``words``; return the words."""
    text = _words(r)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output, r.output
    for w in words:
        assert w in text, (w, r.output)
    return text


# --- 1. stable ode: non-finite or huge K, non-finite h, T, spread ------------------------------

@pytest.mark.parametrize("K, words", [
    ("nan,0;0,1", ("K must have finite entries", "nan,0;0,1")),
    ("inf,0;0,1", ("K must have finite entries",)),
    ("1e999,0;0,1", ("K must have finite entries",)),
    ("1e4,0;0,1", ("K is too large for T = 2", "overflows float64", "shorten T")),
])
def test_stable_ode_refuses_nonfinite_and_huge_K(tmp_path, K, words):
    out = tmp_path / "run"
    r = runner.invoke(app, ["stable", "ode", "--K", K, "--out", str(out)])
    text = _refused(r, "error:", *words)
    assert "RuntimeWarning" not in text
    assert not out.exists()


@pytest.mark.parametrize("option, value", [("--h", "nan"), ("--h", "inf"), ("--T", "inf"),
                                           ("--T", "nan"), ("--spread", "nan"),
                                           ("--spread", "inf"), ("--spread", "0")])
def test_stable_ode_refuses_nonfinite_steps(tmp_path, option, value):
    out = tmp_path / "run"
    r = runner.invoke(app, ["stable", "ode", option, value, "--out", str(out)])
    text = _refused(r, f"{option[2:]} must be")
    assert ("a finite number" if value != "0" else "must be greater than 0") in text
    assert not out.exists()
    assert not out.exists()


def test_stable_ode_refuses_a_horizon_that_overflows_and_too_many_steps(tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["stable", "ode", "--T", "200", "--out", str(out)])
    _refused(r, "K+ is too large for T = 200", "shorten T to at most")
    r = runner.invoke(app, ["stable", "ode", "--h", "1e-9", "--T", "1", "--out", str(out)])
    _refused(r, "forward Euler steps, more than 100000")
    assert not out.exists()


# --- 2. --config: the value's type is checked when the file is read -----------------------------

@pytest.mark.parametrize("line, words", [
    ("images = true", ("key 'images' must be an integer", "got True (a bool)")),
    ('images = "two"', ("key 'images' must be an integer", "got 'two'")),
    ("images = 0", ("key 'images' must be at least 1",)),
    ("images = 2.5", ("key 'images' must be an integer",)),
    ("stages = 1", ("key 'stages' must be True or False",)),
    ('units = ["stages.2.0", false]', ("key 'units' must be a tuple of strings",)),
])
def test_config_file_values_of_the_wrong_type_name_the_file_and_key(tmp_path, line, words):
    config = tmp_path / "c.toml"
    config.write_text(line + "\n")
    out = tmp_path / "run"
    r = runner.invoke(app, ["spectra", "--model", "digits-resnet20", "--config", str(config),
                            "--out", str(out)])
    text = _refused(r, "--config", *words)
    assert "Invalid value for '--images'" not in text  # blamed on the file, not on the flag
    assert "c.toml" in _squashed(r)
    assert not out.exists()


# --- 3. corrupt weights, and a state dict given as --model ----------------------------------------

@pytest.mark.parametrize("name, content", [("q.pth", b"Q"), ("g.pth", b"G"),
                                           ("h.pth", b"h\0\0\0\0"), ("e.pth", b""),
                                           ("zip.pth", b"PK\x03\x04garbage"),
                                           ("w.safetensors", b"garbage")])
def test_corrupt_weights_are_not_a_valid_state_dict(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    r = runner.invoke(app, ["units", "--model", "digits-resnet20", "--weights",
                            str(tmp_path / name)])
    _refused(r, "error:", "is not a valid state dict")
    assert name in _squashed(r)


def test_corrupt_weights_leave_no_run_folder(tmp_path):
    (tmp_path / "q.pth").write_bytes(b"Q")
    out = tmp_path / "run"
    r = runner.invoke(app, ["spectra", "--model", "digits-resnet20", "--weights",
                            str(tmp_path / "q.pth"), "--out", str(out)])
    _refused(r, "is not a valid state dict")
    assert not out.exists()


def test_state_dict_as_model_points_at_weights():
    r = runner.invoke(app, ["units", "--model", "r20.pth"])
    _refused(r, "error:", "is a state dict", "pass it with --weights alongside an architecture "
             "--model")


# --- 4. data: labels out of the model's range, a file that is no .npz archive ----------------------

def test_labels_beyond_the_models_outputs_are_out_of_range(tmp_path):
    path = tmp_path / "l99.npz"
    x = np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32)
    np.savez(path, x=x, y=np.array([0, 1, 2, 99]))
    out = tmp_path / "run"
    r = runner.invoke(app, ["spectra", "--model", "digits-resnet20", "--data", str(path),
                            "--out", str(out)])
    text = _refused(r, "has labels up to 99", "has 10 outputs", "out of its range")
    assert "num_classes=100" not in text
    assert not out.exists()


@pytest.mark.parametrize("content", [b"hello, I am text\n", b"", b"PK\x03\x04" + b"x" * 50])
def test_a_file_that_is_no_npz_archive(tmp_path, content):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    out = tmp_path / "run"
    r = runner.invoke(app, ["spectra", "--model", "digits-resnet20", "--data", str(path),
                            "--out", str(out)])
    text = _refused(r, "not a valid .npz archive with arrays x and y")
    assert "pickle" not in text
    assert not out.exists()


# --- 5. report --out an existing folder ------------------------------------------------------------

def test_report_out_a_folder_is_refused_before_writing(tmp_path):
    runs, target = tmp_path / "runs", tmp_path / "target"
    runs.mkdir()
    target.mkdir()
    r = runner.invoke(app, ["report", str(runs), "--out", str(target)])
    text = _refused(r, "error:", "is a folder; give the page's file name")
    assert ".tmp" not in text
    assert list(target.iterdir()) == [] and list(runs.iterdir()) == []
