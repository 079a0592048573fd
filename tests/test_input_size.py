"""A model given inputs of a size it cannot take: one ValueError naming both sizes, the model's
own error and the fix (Python), one line and exit status 2 (command line); never a traceback."""

import numpy as np
import pytest
from click.testing import CliRunner
from torch import nn

from resdyn import check_compatible, check_model, evaluate, load_data, load_model, units
from resdyn.cli import app
from resdyn.data import DataError

runner = CliRunner()

#: torchvision's ViT refuses another image size with an assert; resdyn's words around it
VIT16_ON_DIGITS = ("'vit(size=16)'", "(1, 8, 8)", "expects input shape (1, 16, 16)",
                   "AssertionError: Wrong image height! Expected 16 but got 8!",
                   "A ViT takes its own image size only",
                   "Fix: give data of size 16 x 16, or a model built for 8 x 8 inputs")


@pytest.fixture(scope="module")
def vit16():
    return load_model("vit(size=16)", in_channels=1)


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def _npz16(path) -> str:
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((4, 1, 16, 16)).astype(np.float32), y=np.arange(4))
    return str(path)


def _says_all(text: str, phrases) -> None:
    missing = [p for p in phrases if p not in text]
    assert not missing, f"{missing} not in {text!r}"


@pytest.mark.parametrize("call", ["units", "check_model", "check_compatible", "evaluate"])
def test_python_api_raises_one_value_error_naming_both_sizes(vit16, digits, call):
    run = {"units": lambda: units(vit16, (1, 8, 8)),
           "check_model": lambda: check_model(vit16, (1, 8, 8)),
           "check_compatible": lambda: check_compatible(vit16, digits),
           "evaluate": lambda: evaluate(vit16, digits)}[call]
    vit16.train()
    with pytest.raises(ValueError) as e:
        run()
    _says_all(str(e.value), VIT16_ON_DIGITS)
    if call == "check_compatible":
        assert isinstance(e.value, DataError)
        assert "data 'digits' has input shape (1, 8, 8)" in str(e.value)
    assert vit16.training  # the failed forward pass left the train/eval state as it was


def test_any_input_size_lets_a_resnet_take_another_size_but_not_a_vit(tmp_path):
    data = load_data(_npz16(tmp_path / "x16.npz"))
    check_compatible(load_model("digits-resnet20"), data, any_input_size=True)  # global pooling
    with pytest.raises(DataError) as e:
        check_compatible(load_model("digits-vit"), data, any_input_size=True)
    _says_all(str(e.value), ("'digits-vit'", "(1, 16, 16)", "expects input shape (1, 8, 8)",
                             "Wrong image height! Expected 8 but got 16!",
                             "A ViT takes its own image size only", "--any-input-size",
                             "this one does not run on this size",
                             "Fix: give data of size 8 x 8, or a model built for 16 x 16 inputs"))


class _Picky(nn.Module):
    """A module whose forward refuses some widths in its own words, with any exception type."""

    def __init__(self, error: type[Exception]):
        super().__init__()
        self.body = nn.Linear(5, 5)
        self.error = error

    def forward(self, x):
        if x.shape[-1] != 5:
            raise self.error(f"width must be 5, not {x.shape[-1]}")
        return x + self.body(x)


@pytest.mark.parametrize("error", [AssertionError, NotImplementedError, KeyError, RuntimeError])
def test_any_exception_of_the_first_forward_pass_becomes_a_value_error(error):
    with pytest.raises(ValueError) as e:
        units(_Picky(error), (3,), names=["body"])
    _says_all(str(e.value), ("model _Picky does not take inputs of shape (3,)",
                             f"{error.__name__}: ", "width must be 5, not 3", "Fix: "))
    assert len(units(_Picky(error), (5,), names=["body"])) == 1  # the size it takes works


@pytest.mark.parametrize("args", [
    ["identity", "--model", "vit(size=16)", "--images", "2"],
    ["spectra", "--model", "vit(size=16)", "--images", "1"],
    ["evaluate", "--model", "vit(size=16)"],
    ["check", "--model", "vit(size=16)", "--input-shape", "1,8,8"],
])
def test_command_line_says_it_in_one_line_with_status_2(tmp_path, args):
    out = ["--out", str(tmp_path / "run")] if args[0] in ("identity", "spectra") else []
    r = runner.invoke(app, [*args, *out], env={"COLUMNS": "40"})
    assert r.exit_code == 2, r.output
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
    _says_all(r.stderr, ("'vit(size=16)'", "(1, 8, 8)", "Wrong image height! Expected 16 but got 8!",
                         "16, 16)", "A ViT takes its own image size only"))
    assert "Traceback" not in r.output and not (tmp_path / "run").exists()


@pytest.mark.parametrize("study", ["spectra", "identity"])
def test_command_line_any_input_size_on_a_vit_says_it_cannot(tmp_path, study):
    r = runner.invoke(app, [study, "--model", "digits-vit", "--data", _npz16(tmp_path / "x16.npz"),
                            "--any-input-size", "--images", "1", "--out", str(tmp_path / "run")],
                      env={"COLUMNS": "40"})
    assert r.exit_code == 2, r.output
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
    _says_all(r.stderr, ("(1, 16, 16)", "expects input shape (1, 8, 8)", "--any-input-size",
                         "this one does not run on this size", "give data of size 8 x 8"))

