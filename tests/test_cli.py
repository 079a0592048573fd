"""The `resdyn` command: tables on stdout, one-line errors with exit status 2."""

import torch
from typer.testing import CliRunner

from resdyn.cli import app
from resdyn.models import cifar_resnet

runner = CliRunner()


def test_models_lists_zoo():
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0
    for name in ("cifar-resnet56", "digits-resnet110", "torchvision:resnet50", "preresnet(L)"):
        assert name in r.output


def test_units_table_resnet56():
    r = runner.invoke(app, ["units", "--model", "cifar-resnet56"])
    assert r.exit_code == 0, r.output
    assert "27 residual units" in r.output
    assert r.output.count("downsampling") == 2
    assert "stages.2.0" in r.output and "32x16x16" in r.output and "64x8x8" in r.output


def test_units_explicit_names_and_shape():
    r = runner.invoke(app, ["units", "--model", "preresnet(1)", "--input-shape", "3,16,16",
                            "--units", "stages.0.0,stages.2.0"])
    assert r.exit_code == 0, r.output
    assert "2 residual units" in r.output and "64x4x4" in r.output


def test_unknown_model_is_one_line_error():
    r = runner.invoke(app, ["units", "--model", "resnet9000"])
    assert r.exit_code == 2
    assert "unknown model 'resnet9000'" in r.output and "cifar-resnet56" in r.output
    assert "Traceback" not in r.output


def test_mismatched_weights_name_file_and_keys(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(cifar_resnet(20).state_dict(), path)
    r = runner.invoke(app, ["units", "--model", "cifar-resnet56", "--weights", str(path)])
    assert r.exit_code == 2
    assert "w.pth" in r.output and "missing key" in r.output


def test_bad_input_shape():
    r = runner.invoke(app, ["units", "--model", "cifar-resnet20", "--input-shape", "3,32"])
    assert r.exit_code != 0 and "C,H,W" in r.output


def test_threads_option_sets_torch_threads():
    before = torch.get_num_threads()
    try:
        r = runner.invoke(app, ["--threads", "1", "models"])
        assert r.exit_code == 0, r.output
        assert torch.get_num_threads() == 1
        r = runner.invoke(app, ["--threads", "0", "models"])
        assert r.exit_code == 2 and "threads" in r.output
    finally:
        torch.set_num_threads(before)


def test_spectra_progress_is_printed_off_a_terminal(tmp_path):
    # CliRunner's streams are not terminals: progress comes as plain lines, ending at n/n
    r = runner.invoke(app, ["spectra", "--model", "digits-resnet20", "--images", "1",
                            "--units", "stages.0.0,stages.2.0", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "spectra 2/2 " in r.output and "s elapsed" in r.output
    assert (tmp_path / "spectra.parquet").exists()
