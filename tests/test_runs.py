"""Runs: the task store resumes and records errors, folders refuse other configurations, model
references reload the same model, executors check their input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from resdyn import load_model
from resdyn.data import load_data
from resdyn.runs import Executor, RunFolderError, Task, TaskStore, run_tasks, write_parquet
from resdyn.runs.folder import check_out, claim, locked
from resdyn.runs.identity import differences, model_digest, plain
from resdyn.runs.modelref import _MODELS, save_model
from resdyn.runs.store import atomic_write


def _rows(i, calls):
    calls.append(i)
    if i == 3:
        raise KeyboardInterrupt  # the user presses Ctrl-C during task 3
    return pd.DataFrame({"i": [i], "sq": [i * i]})


def test_interrupted_run_resumes_without_redoing_work(tmp_path):
    store, calls = TaskStore(tmp_path), []
    tasks = [Task("demo", f"t{i}", _rows, {"i": i, "calls": calls}) for i in range(5)]
    with pytest.raises(KeyboardInterrupt):
        run_tasks(tasks, store)
    assert calls == [0, 1, 2, 3] and list(store.load("demo")["i"]) == [0, 1, 2]
    calls.clear()
    tasks[3] = Task("demo", "t3", lambda: pd.DataFrame({"i": [3], "sq": [9]}))
    stats = run_tasks(tasks, store)
    assert (stats.ran, stats.resumed, stats.failed) == (2, 3, 0)
    assert calls == [4]
    assert list(store.load("demo")["sq"]) == [0, 1, 4, 9, 16]
    assert not list(tmp_path.rglob("*.tmp"))


def _maybe_fail(i, fail):
    if i in fail:
        raise ValueError(f"task {i} broke")
    return pd.DataFrame({"i": [i]})


def test_failed_task_is_recorded_and_only_it_is_retried(tmp_path):
    store, seen = TaskStore(tmp_path), []
    tasks = [Task("demo", f"t{i}", _maybe_fail, {"i": i, "fail": {2}}) for i in range(4)]
    stats = run_tasks(tasks, store, progress=seen.append)
    assert (stats.ran, stats.failed) == (3, 1)
    assert list(store.load("demo")["i"]) == [0, 1, 3]
    errors = store.errors()
    assert errors[["analysis", "key", "error", "message"]].values.tolist() == [
        ["demo", "t2", "ValueError", "task 2 broke"]]
    assert "Traceback" in errors["traceback"].iloc[0]
    last = seen[-1]
    assert (last.done, last.failed, last.left, last.total) == (3, 1, 0, 4)
    fixed = [Task("demo", f"t{i}", _maybe_fail, {"i": i, "fail": set()}) for i in range(4)]
    stats = run_tasks(fixed, store)
    assert (stats.ran, stats.resumed, stats.failed) == (1, 3, 0)
    assert list(store.load("demo")["i"]) == [0, 1, 2, 3] and store.errors().empty


def test_bad_names_and_executors(tmp_path):
    with pytest.raises(ValueError, match="plain words"):
        TaskStore(tmp_path).save("demo", "../escape", pd.DataFrame())
    with pytest.raises(ValueError, match=r"valid: \['dask', 'serial'\]"):
        Executor("slurm")
    with pytest.raises(ValueError, match="between 1 and 256 .*; got 0"):
        Executor("dask", workers=0)
    with pytest.raises(ValueError, match="need the dask executor"):
        Executor("serial", workers=2)


@pytest.mark.slow
def test_unreachable_scheduler_fails_in_bounded_time(tmp_path):
    import time

    start = time.monotonic()
    tasks = [Task("demo", "t0", _maybe_fail, {"i": 0, "fail": set()})]
    with pytest.raises(ConnectionError, match="tcp://127.0.0.1:9.*check that"):
        run_tasks(tasks, TaskStore(tmp_path), Executor("dask", scheduler="tcp://127.0.0.1:9",
                                                       timeout=2))
    assert time.monotonic() - start < 30


def test_write_parquet_round_trip(tmp_path):
    df = pd.DataFrame({"values": [[3.0, 2.0], [1.0]], "name": ["a", "b"]})
    write_parquet(df, tmp_path / "x" / "t.parquet")
    back = pd.read_parquet(tmp_path / "x" / "t.parquet")
    assert list(back["values"][0]) == [3.0, 2.0] and list(back["name"]) == ["a", "b"]


def _finished(out, key="t0"):
    write_parquet(pd.DataFrame({"i": [0]}), out / "tasks" / "demo" / f"{key}.parquet")


def _owned(identity):  # None: a damaged identity, which owns what any study writes
    return ["spectra.parquet", "bins.png"] if identity is None or identity["study"] == "s" else []


def test_folder_resumes_same_identity_and_refuses_another(tmp_path):
    ident = {"study": "s", "config": plain({"eps": 0.1, "alphas": (1.0, 2.0)}),
             "model": {"sha256": "a" * 64}}
    assert claim(tmp_path / "run", ident) is False
    assert claim(tmp_path / "run", json.loads(json.dumps(ident))) is True
    _finished(tmp_path / "run")
    other = {**ident, "config": {"eps": 0.3, "alphas": [1.0, 2.0]}}
    with pytest.raises(RunFolderError, match=r"config.eps: 0.1 -> 0.3\).*--fresh.*another --out"):
        claim(tmp_path / "run", other)
    (tmp_path / "run" / "spectra.parquet").write_text("old")
    assert claim(tmp_path / "run", other, fresh=True, owned=_owned) is False
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["run.json"]
    assert json.loads((tmp_path / "run" / "run.json").read_text()) == other


def test_a_folder_without_finished_tasks_is_taken_over(tmp_path):
    """Every task failed (a bad option): the corrected command may use the folder, nothing is
    lost; one finished task and it is refused."""
    ident = {"study": "s", "config": {"k": 5000}}
    claim(tmp_path / "run", ident)
    (tmp_path / "run" / "tasks" / "demo").mkdir(parents=True)
    (tmp_path / "run" / "tasks" / "demo" / "t0.error.json").write_text("{}")
    fixed = {"study": "s", "config": {"k": 20}}
    assert claim(tmp_path / "run", fixed) is False
    assert not (tmp_path / "run" / "tasks").exists()
    _finished(tmp_path / "run")
    with pytest.raises(RunFolderError, match=r"config.k: 20 -> 5000"):
        claim(tmp_path / "run", ident)


def test_fresh_removes_only_what_resdyn_wrote(tmp_path):
    out = tmp_path / "run"
    claim(out, {"study": "s"})
    _finished(out)
    for name in ("spectra.parquet", "bins.png", "summary.md", "mynotes.txt"):
        (out / name).write_text("x")
    (out / "tasks" / "demo" / ".t1.parquet.99.tmp").write_text("half")
    with pytest.raises(RunFolderError, match=r"--fresh removes only what resdyn wrote.*mynotes"
                       r"\.txt: move them out"):
        claim(out, {"study": "s", "config": {"n": 1}}, fresh=True, owned=_owned)
    assert (out / "spectra.parquet").exists() and (out / "tasks").exists()  # nothing removed
    (out / "mynotes.txt").unlink()
    claim(out, {"study": "s", "config": {"n": 1}}, fresh=True, owned=_owned)
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]


DAMAGED = {"truncated": b'{"study": "s", "conf', "empty": b"", "a list": b'["study", "s"]',
           "wrong types": b'{"study": 5, "config": "images=3"}', "a string": b'"s"',
           "an empty object": b"{}", "binary": bytes(range(256)), "a number": b"3"}


@pytest.mark.parametrize("form", list(DAMAGED))
def test_a_damaged_identity_is_refused_and_fresh_discards_it(tmp_path, form):
    out = tmp_path / "run"
    claim(out, {"study": "s", "config": {"n": 1}})
    _finished(out)
    for name in ("spectra.parquet", "bins.png", "summary.md"):
        (out / name).write_text("x")
    (out / "run.json").write_bytes(DAMAGED[form])
    with pytest.raises(RunFolderError, match=r"run.json is damaged: .*Use --fresh"):
        claim(out, {"study": "s", "config": {"n": 1}})
    # --fresh knows resdyn's files without the identity: what any study writes
    assert claim(out, {"study": "s", "config": {"n": 1}}, fresh=True, owned=_owned) is False
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]


def test_a_damaged_identity_over_no_result_is_taken_over(tmp_path):
    out = tmp_path / "run"
    claim(out, {"study": "s"})
    (out / "run.json").write_text('{"study": "s\x01')  # truncated mid-write by another tool
    assert claim(out, {"study": "s"}) is False
    assert json.loads((out / "run.json").read_text()) == {"study": "s"}


def test_a_damaged_identity_beside_a_users_file_is_refused_by_fresh_naming_it(tmp_path):
    out = tmp_path / "run"
    claim(out, {"study": "s"})
    _finished(out)
    (out / "mynotes.txt").write_text("mine")
    (out / "run.json").write_text("[]")
    with pytest.raises(RunFolderError, match=r"also holds mynotes\.txt: move them out"):
        claim(out, {"study": "s"}, fresh=True, owned=_owned)
    assert (out / "mynotes.txt").read_text() == "mine"


def test_a_field_added_later_resumes_when_its_default_computes_the_same(tmp_path):
    old = {"study": "s", "config": {"k": 3}}
    claim(tmp_path / "run", old)
    _finished(tmp_path / "run")
    new = {"study": "s", "config": {"k": 3, "precision": "float64"}}
    assert claim(tmp_path / "run", new, upgrade_safe={"config.precision"}) is True
    assert json.loads((tmp_path / "run" / "run.json").read_text()) == new  # recorded now
    claim(tmp_path / "old", old)
    _finished(tmp_path / "old")
    with pytest.raises(RunFolderError, match=r"older resdyn version that did not record "
                       r"config.precision"):
        claim(tmp_path / "old", {"study": "s", "config": {"k": 3, "precision": "float32"}},
              upgrade_safe=set())


LOCK_AND_WAIT = """
import sys, time
from pathlib import Path
from resdyn.runs.folder import locked
with locked(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(600)
"""


def _holder(out):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    proc = subprocess.Popen([sys.executable, "-c", LOCK_AND_WAIT, str(out)], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_is_refused_and_a_killed_one_leaves_no_lock(tmp_path):
    out = tmp_path / "run"
    proc = _holder(out)
    try:
        with pytest.raises(RunFolderError, match=rf"in use by another resdyn run \(process "
                           rf"{proc.pid} on .*: wait for it to finish, or choose another --out"):
            with locked(out):
                pass
    finally:
        proc.kill()  # SIGKILL: the OS drops the lock with the process
        proc.wait()
    with locked(out):
        assert claim(out, {"study": "s"}) is False


def test_a_refused_run_leaves_neither_folder_nor_lock_behind(tmp_path):
    with pytest.raises(RuntimeError, match="plan failed"):
        with locked(tmp_path / "new"):
            raise RuntimeError("plan failed")
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(RunFolderError, match="holds no resdyn run"):
        with locked(tmp_path / "mine"):
            claim(tmp_path / "mine", {"study": "s"})
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["thesis.tex"]


def test_write_errors_name_the_file_and_the_fix(tmp_path):
    import errno

    def full(tmp):
        tmp.write_text("x")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match=r"cannot write .*t\.json: No space left on device; check "
                       r"that the folder is writable"):
        atomic_write(tmp_path / "t.json", full)
    assert list(tmp_path.iterdir()) == []  # no temp file left


def test_tables_come_from_planned_tasks_only(tmp_path):
    store = TaskStore(tmp_path)
    for i in range(3):
        store.save("demo", f"t{i}", pd.DataFrame({"i": [i]}))
    store.fail("other", "x", "ValueError", "m", "")
    assert store.load("demo", ["t0", "t2"])["i"].tolist() == [0, 2]
    assert store.errors(["demo/t0"]).empty
    assert store.strays(["demo/t0", "demo/t2"]) == ["demo/t1.parquet", "other/x.error.json"]


def test_folder_refuses_files_and_foreign_folders(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunFolderError, match="is a file"):
        check_out(tmp_path / "f")
    with pytest.raises(RunFolderError, match="is a file"):
        check_out(tmp_path / "f" / "sub")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(RunFolderError, match=r"holds no resdyn run .*thesis\.tex"):
        claim(tmp_path / "mine", {"study": "s"}, fresh=True)
    assert (tmp_path / "mine" / "thesis.tex").exists()  # --fresh never empties a foreign folder


def test_differences_name_every_changed_field():
    old = {"config": {"eps": 0.1, "k": None}, "model": {"sha256": "0" * 64}}
    new = {"config": {"eps": 0.1, "k": 20}, "model": {"sha256": "1" * 64}}
    assert [str(d) for d in differences(old, new)] == ["config.k: None -> 20",
                                     "model.sha256: '000000000000' -> '111111111111'"]


def test_model_digest_follows_weights_and_architecture():
    a = load_model("cifar-resnet20", in_channels=1)
    b = load_model("cifar-resnet20", in_channels=1)
    b.load_state_dict(a.state_dict())
    assert model_digest(a) == model_digest(b)
    with torch.no_grad():
        b.head.bias.add_(1e-6) if hasattr(b, "head") else next(b.parameters()).add_(1e-6)
    assert model_digest(a) != model_digest(b)
    assert model_digest(load_model("cifar-resnet20")) != model_digest(a)


@pytest.mark.parametrize("spec", ["digits-resnet20", "cifar-resnet20", None])
def test_model_reference_reloads_the_same_model(tmp_path, spec):
    if spec is None:
        model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()).eval()
    else:
        model = load_model(spec, in_channels=1, num_classes=7) if spec.startswith("cifar") \
            else load_model(spec)
    digest = model_digest(model)
    ref = save_model(model, digest, tmp_path)
    assert ref.load() is model  # this process keeps the caller's object
    del _MODELS[digest]  # as in a fresh worker process
    back = ref.load()
    assert back is not model and model_digest(back) == digest
    x = load_data("digits").x[:2]
    with torch.no_grad():
        assert torch.equal(back(x), model(x))


def test_model_reference_refuses_a_changed_file(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 3)).eval()
    ref = save_model(model, model_digest(model), tmp_path)
    del _MODELS[ref.sha256]
    torch.save(nn.Sequential(nn.Conv2d(1, 3, 3)), tmp_path / "model.pt")
    with pytest.raises(ValueError, match="changed after the run saved it"):
        ref.load()


def _log_step(name, log):
    log.append(name)
    if name == "bad":
        raise ValueError("bad step")
    return pd.DataFrame({"name": [name]})


def test_tasks_run_after_what_they_need_and_not_after_a_failure(tmp_path):
    from resdyn.runs.executor import waves

    log = []
    tasks = [Task("use", "b", _log_step, {"name": "use-b", "log": log}, after=("train/b",)),
             Task("train", "a", _log_step, {"name": "a", "log": log}),
             Task("use", "a", _log_step, {"name": "use-a", "log": log}, after=("train/a",)),
             Task("train", "b", _log_step, {"name": "bad", "log": log})]
    assert [[t.id for t in w] for w in waves(tasks)] == [["train/a", "train/b"],
                                                         ["use/b", "use/a"]]
    stats = run_tasks(tasks, TaskStore(tmp_path))
    assert log == ["a", "bad", "use-a"] and (stats.ran, stats.failed) == (2, 2)
    errors = TaskStore(tmp_path).errors().set_index("key")
    assert errors.loc["b", "error"].tolist() == ["ValueError", "NotRun"]  # train/b, use/b
    with pytest.raises(ValueError, match="circle"):
        waves([Task("x", "1", _log_step, after=("x/2",)), Task("x", "2", _log_step, after=("x/1",))])
    with pytest.raises(ValueError, match="unknown tasks"):
        waves([Task("x", "1", _log_step, after=("y/1",))])
