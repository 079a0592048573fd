"""A run folder never mixes, through the `resdyn` command: one writer at a time, options checked
before the folder is claimed, tables from the planned tasks only, --fresh removes only what
resdyn wrote, Ctrl-C keeps the finished tasks and says so."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import says

from resdyn.cli import app

runner = CliRunner()
SRC = str(Path(__file__).parents[1] / "src")
SPECTRA = ["spectra", "--model", "digits-resnet20", "--units", "stages.2.0,stages.2.1"]
HOLD = """
import sys, time
from pathlib import Path
from resdyn.runs.folder import locked
with locked(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(600)
"""


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": SRC}


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_a_second_writer_is_refused_at_once_and_changes_nothing(tmp_path):
    out = tmp_path / "M"
    assert runner.invoke(app, SPECTRA + ["--images", "2", "--out", str(out)]).exit_code == 0
    before = _files(out)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], env=_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = runner.invoke(app, SPECTRA + ["--images", "1", "--fresh", "--out", str(out)])
    finally:
        holder.kill()
        holder.wait()
    assert r.exit_code == 2, r.output
    assert says(r.output, f"is in use by another resdyn run (process {holder.pid} on")
    assert says(r.output, "wait for it to finish, or choose another --out")
    assert "Traceback" not in r.output
    assert {k: v for k, v in _files(out).items() if k != "run.lock"} == {
        k: v for k, v in before.items() if k != "run.lock"}
    again = runner.invoke(app, SPECTRA + ["--images", "2", "--out", str(out)])  # lock died
    assert again.exit_code == 0 and says(again.output, "resuming: 4 of 4 tasks already done")


@pytest.mark.parametrize("args, message", [
    (SPECTRA + ["--method", "qr"], "unknown singular value method 'qr'; valid: auto, dense"),
    (SPECTRA + ["--top-k", "5000"], "k must be in [1, 256] (top-k values: the narrowest block "
                                    "analysed is 256 wide); got 5000"),
    (["stability", "--model", "digits-resnet20", "--top-k", "300"], "k must be in [1, 256]"),
    (["stable", "compare", "--lr", "nan"], "lr must be a finite number; got nan"),
    (["identity", "--model", "digits-resnet20", "--eps", "inf"],
     "eps must be a finite number; got inf"),
    (["stability", "--model", "digits-resnet20", "--eps", "nan"],
     "eps must be a finite number; got nan"),
])
def test_bad_options_are_refused_before_the_folder_is_claimed(tmp_path, args, message):
    r = runner.invoke(app, args + ["--out", str(tmp_path / "run")])
    assert r.exit_code == 2, r.output
    assert says(r.output, message), r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "run").exists()


def test_tables_use_the_planned_tasks_only_and_name_stray_files(tmp_path):
    big = tmp_path / "big"
    assert runner.invoke(app, SPECTRA + ["--images", "3", "--out", str(big)]).exit_code == 0
    small = tmp_path / "small"
    assert runner.invoke(app, SPECTRA + ["--images", "1", "--out", str(small)]).exit_code == 0
    planned = pd.read_parquet(small / "spectra.parquet")
    copied = sorted({p.name for p in (big / "tasks" / "spectra").iterdir()}
                    - {p.name for p in (small / "tasks" / "spectra").iterdir()})
    for name in copied:  # another run's task files, copied in by hand
        shutil.copy(big / "tasks" / "spectra" / name, small / "tasks" / "spectra" / name)
    r = runner.invoke(app, SPECTRA + ["--images", "1", "--out", str(small)])
    assert r.exit_code == 0, r.output
    assert says(r.output, f"{len(copied)} file(s) in") and says(r.output, "belong to no task")
    table = pd.read_parquet(small / "spectra.parquet")
    assert table[["image", "name"]].values.tolist() == planned[["image", "name"]].values.tolist()
    assert f"spectra/{copied[0]}" in (small / "summary.md").read_text()


def test_fresh_removes_only_what_resdyn_wrote(tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, SPECTRA + ["--images", "1", "--out", str(out)]).exit_code == 0
    (out / "mynotes.txt").write_text("the user's own notes")
    r = runner.invoke(app, SPECTRA + ["--images", "2", "--fresh", "--out", str(out)])
    assert r.exit_code == 2 and says(r.output, "also holds mynotes.txt"), r.output
    assert (out / "mynotes.txt").read_text() == "the user's own notes"
    assert (out / "spectra.parquet").is_file()  # nothing removed
    (out / "mynotes.txt").unlink()
    r = runner.invoke(app, SPECTRA + ["--images", "2", "--fresh", "--out", str(out)])
    assert r.exit_code == 0 and says(r.output, "4 tasks run, 0 resumed"), r.output


@pytest.mark.slow
def test_ctrl_c_says_what_is_kept_and_the_same_command_resumes(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "resdyn", "--threads", "1", *SPECTRA, "--images", "8",
           "--out", str(out)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + 120
    while len(list((out / "tasks").glob("*/*.parquet"))) < 2:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    kept = len(list((out / "tasks").glob("*/*.parquet")))
    assert 2 <= kept < 16
    assert says(output, f"interrupted: {kept} of 16 tasks are kept in {out}; the same command "
                        "resumes from there"), output
    assert "Traceback" not in output
    again = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert says(again.stderr, f"resuming: {kept} of 16 tasks already done")
    assert len(pd.read_parquet(out / "spectra.parquet")) == 16


def test_a_folder_of_an_older_version_resumes_when_the_new_field_changes_nothing(tmp_path):
    import json

    out = tmp_path / "run"
    assert runner.invoke(app, SPECTRA + ["--images", "1", "--out", str(out)]).exit_code == 0
    identity = json.loads((out / "run.json").read_text())
    assert identity["run"] == {"precision": "float64"} and "precision" not in identity["config"]
    del identity["run"]  # run.json as versions before --precision wrote it
    (out / "run.json").write_text(json.dumps(identity))
    r = runner.invoke(app, SPECTRA + ["--images", "1", "--out", str(out)])
    assert r.exit_code == 0 and says(r.output, "resuming: 2 of 2 tasks already done"), r.output
    assert json.loads((out / "run.json").read_text())["run"]["precision"] == "float64"
    (out / "run.json").write_text(json.dumps(identity))
    r = runner.invoke(app, SPECTRA + ["--images", "1", "--precision", "float32", "--out",
                                      str(out)])
    assert r.exit_code == 2, r.output
    assert says(r.output, "written by an older resdyn version that did not record "
                          "run.precision; the new default computes something else")
    # versions that kept the precision in the study's config: read there, recorded as the run's
    (out / "run.json").write_text(json.dumps({**identity, "config": {
        **identity["config"], "precision": "float64"}}))
    r = runner.invoke(app, SPECTRA + ["--images", "1", "--precision", "float32", "--out",
                                      str(out)])
    assert r.exit_code == 2 and says(r.output, "run.precision: 'float64' -> 'float32'"), r.output
    r = runner.invoke(app, SPECTRA + ["--images", "1", "--out", str(out)])
    assert r.exit_code == 0 and says(r.output, "resuming: 2 of 2 tasks already done"), r.output
    moved = json.loads((out / "run.json").read_text())
    assert moved["run"] == {"precision": "float64"} and "precision" not in moved["config"]


def test_a_study_of_a_newer_revision_refuses_an_older_folder_saying_what_changed(tmp_path):
    import json

    from resdyn.studies import COMPARE

    out = tmp_path / "run"
    args = ["stable", "compare", "--data", "swissroll", "--blocks", "1", "--width", "2",
            "--epochs", "1", "--images", "2", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    identity = json.loads((out / "run.json").read_text())
    assert identity["revision"] == COMPARE.revision == 4
    identity["revision"] = 3  # as resdyn wrote it before the study's revision 4
    (out / "run.json").write_text(json.dumps(identity))
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert says(r.output, "written by an older resdyn version of this study; since then: the "
                          "eigen table's rows record J − I's share and indices")
    assert says(r.output, "Use --fresh")
