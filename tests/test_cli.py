"""The `resdyn` command: tables on stdout, one-line errors with exit status 2."""

import numpy as np
import pandas as pd
import torch
from click.testing import CliRunner

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
    table = pd.read_parquet(tmp_path / "spectra.parquet")  # the two units asked for, one image
    assert table["name"].tolist() == ["stages.0.0", "stages.2.0"]
    assert table["image"].nunique() == 1
    for values in table["values"]:  # singular values: finite, non-negative, largest first
        v = np.asarray(values)
        assert len(v) and np.isfinite(v).all() and (v >= 0).all() and (np.diff(v) <= 0).all()


def _npz(path, n: int, size: int) -> str:
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((n, 1, size, size)).astype(np.float32), y=np.arange(n) % 10)
    return str(path)


def test_study_folder_refuses_another_configuration(tmp_path):
    args = ["spectra", "--model", "digits-resnet20", "--images", "1", "--units", "stages.2.0",
            "--out", str(tmp_path / "run")]
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "resuming: 1 of 1 tasks already done" in again.output
    for change, field in ((["--images", "2"], "config.images: 1 -> 2"),
                          (["--method", "svd"], "config.method: 'auto' -> 'svd'"),
                          (["--top-k", "3"], "config.k: None -> 3"),
                          (["--model", "digits-resnet56"], "model.name")):
        r = runner.invoke(app, args + change)
        assert r.exit_code == 2 and field in r.output and "--fresh" in r.output, r.output
    r = runner.invoke(app, args + ["--images", "2", "--fresh"])
    assert r.exit_code == 0 and "2 tasks run, 0 resumed" in r.output


def test_study_bad_input_is_one_line_with_status_2(tmp_path):
    (tmp_path / "file").write_text("")
    base = ["spectra", "--model", "digits-resnet20", "--units", "stages.2.0"]
    cases = [
        (["--out", str(tmp_path / "file")], "is a file"),
        (["--out", str(tmp_path / "a"), "--workers", "0"], "--workers must be at least 1; got 0"),
        (["--out", str(tmp_path / "b"), "--executor", "slurm"],
         "--executor: unknown 'slurm'; valid: serial, dask"),
        (["--out", str(tmp_path / "c"), "--data", _npz(tmp_path / "four.npz", 4, 8),
          "--images", "10"], "asked for 10 images but"),
        (["--out", str(tmp_path / "d"), "--data", _npz(tmp_path / "big.npz", 4, 16)],
         "(1, 16, 16)"),
    ]
    for extra, message in cases:
        r = runner.invoke(app, base + extra)
        assert r.exit_code == 2, r.output
        assert message in r.output and "Traceback" not in r.output, r.output
    # the 16x16 images are allowed for a model that is size-agnostic by design, on request
    r = runner.invoke(app, base + ["--out", str(tmp_path / "e"), "--data",
                                   str(tmp_path / "big.npz"), "--images", "1",
                                   "--any-input-size"])
    assert r.exit_code == 0, r.output
