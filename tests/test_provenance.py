"""A stored task proves where it came from: the run, the task and the files it wrote. A file
that does not (another run's, an older version's, truncated, empty, its checkpoint changed) is
named, removed and computed again; it is never read."""

import shutil
from dataclasses import dataclass

import pandas as pd
import pytest
from click.testing import CliRunner

from resdyn.cli import app
from resdyn.runs import Task, TaskStore, run_tasks
from resdyn.runs.executor import Output
from resdyn.runs.store import write_parquet
from resdyn.studies import Plan, Study, Table, run_study


@dataclass(frozen=True)
class ShiftConfig:
    shift: int = 0


def _shifted(i: int, shift: int) -> pd.DataFrame:
    return pd.DataFrame({"i": [i], "value": [i + shift]})


def _plan(ctx):
    return Plan([Task("values", f"i{i}", _shifted, {"i": i, "shift": ctx.config.shift})
                 for i in range(3)])


SHIFT = Study("shift", "Shifted values", ShiftConfig, _plan, tables={"values": Table()})


def _run(out, shift):
    return run_study(SHIFT, None, None, ShiftConfig(shift), out)


def test_a_task_file_of_another_run_is_named_and_recomputed(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _run(a, 100)
    clean = _run(b, 0).tables["values"]
    shutil.copy(a / "tasks" / "values" / "i1.parquet", b / "tasks" / "values" / "i1.parquet")
    r = _run(b, 0)
    assert r.recomputed == ["values/i1.parquet: written by another run"]
    assert (r.stats.resumed, r.stats.ran) == (2, 1)
    assert r.tables["values"]["value"].tolist() == [0, 1, 2]  # not 101
    pd.testing.assert_frame_equal(r.tables["values"], clean)
    assert "1 stored task file(s) did not prove" in (b / "summary.md").read_text()
    assert _run(b, 0).recomputed == []  # the recomputed file proves itself now


DAMAGES = {
    "empty": (lambda path: path.write_bytes(b""), "empty"),
    "truncated": (lambda path: path.write_bytes(path.read_bytes()[:40]), "damaged"),
    "garbage": (lambda path: path.write_bytes(b"PAR1" + bytes(200)), "damaged"),
    "no record": (lambda path: pd.read_parquet(path).to_parquet(path), "records no run"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_task_file_is_recomputed_with_a_line(tmp_path, damage):
    hurt, reason = DAMAGES[damage]
    _run(tmp_path, 0)
    hurt(tmp_path / "tasks" / "values" / "i2.parquet")
    r = _run(tmp_path, 0)
    assert len(r.recomputed) == 1 and r.recomputed[0].startswith(f"values/i2.parquet: {reason}")
    assert r.tables["values"]["value"].tolist() == [0, 1, 2] and r.failed == 0


def test_a_task_file_under_another_tasks_name_is_recomputed(tmp_path):
    _run(tmp_path, 0)
    store = tmp_path / "tasks" / "values"
    shutil.copy(store / "i0.parquet", store / "i2.parquet")
    r = _run(tmp_path, 0)
    assert r.recomputed == ["values/i2.parquet: holds the rows of another task (values/i0)"]
    assert r.tables["values"]["value"].tolist() == [0, 1, 2]


def _make(path: str, byte: int) -> Output:
    return Output(pd.DataFrame({"made": [path]}), {path: bytes([byte]) * 8})


def test_a_task_whose_file_changed_or_vanished_is_not_done(tmp_path):
    ckpt = tmp_path / "checkpoints" / "net.bin"
    store = TaskStore(tmp_path / "tasks", run="r")
    task = Task("training", "net", _make, {"path": str(ckpt), "byte": 1})
    assert run_tasks([task], store).ran == 1
    assert ckpt.read_bytes() == bytes([1]) * 8 and store.done("training", "net")
    ckpt.write_bytes(bytes([2]) * 8)  # a checkpoint from elsewhere put in its place
    assert store.sweep(["training/net"]) == [
        "training/net.parquet: its file checkpoints/net.bin changed after the task wrote it"]
    assert run_tasks([task], store).ran == 1 and ckpt.read_bytes() == bytes([1]) * 8
    ckpt.unlink()
    assert not store.done("training", "net")
    assert run_tasks([task], store).ran == 1


def test_store_load_never_reads_a_file_of_another_run(tmp_path):
    write_parquet(pd.DataFrame({"x": [1]}), tmp_path / "values" / "i0.parquet")
    TaskStore(tmp_path, run="r").save("values", "i1", pd.DataFrame({"x": [2]}))
    assert TaskStore(tmp_path, run="r").load("values")["x"].tolist() == [2]
    assert TaskStore(tmp_path, run="r").load("values", ["i0", "i1"])["x"].tolist() == [2]


def test_cli_a_copied_task_file_of_another_model_is_recomputed(tmp_path):
    """The probe's case: a task file of a ResNet-56 run copied over a ResNet-20 run's."""
    runner = CliRunner()
    common = ["--images", "1", "--units", "stages.1.1", "--top-k", "3"]
    for model, out in (("digits-resnet56", "r56"), ("digits-resnet20", "x")):
        r = runner.invoke(app, ["spectra", "--model", model, *common,
                                "--out", str(tmp_path / out)])
        assert r.exit_code == 0, r.output
    clean = pd.read_parquet(tmp_path / "x" / "spectra.parquet")
    (copied,) = (tmp_path / "r56" / "tasks" / "spectra").glob("*.parquet")
    shutil.copy(copied, tmp_path / "x" / "tasks" / "spectra" / copied.name)
    r = runner.invoke(app, ["spectra", "--model", "digits-resnet20", *common,
                            "--out", str(tmp_path / "x")])
    assert r.exit_code == 0, r.output
    assert "did not prove they are this run's results and were computed again" in r.output
    again = pd.read_parquet(tmp_path / "x" / "spectra.parquet")
    same = ["model", "image", "name", "n_in", "n_out", "method"]
    pd.testing.assert_frame_equal(again[same], clean[same])  # ResNet-20's rows, not ResNet-56's
    assert [list(v) for v in again["values"]] == [list(v) for v in clean["values"]]
