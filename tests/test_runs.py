"""The task store resumes where an interrupted run stopped and never leaves half-written files."""

import pandas as pd
import pytest

from resdyn.runs import Task, TaskStore, run_tasks, write_parquet


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
    assert run_tasks(tasks, store) == 2
    assert calls == [4]
    assert list(store.load("demo")["sq"]) == [0, 1, 4, 9, 16]
    assert not list(tmp_path.rglob("*.tmp"))


def test_bad_names_and_executor(tmp_path):
    with pytest.raises(ValueError, match="plain words"):
        TaskStore(tmp_path).save("demo", "../escape", pd.DataFrame())
    with pytest.raises(ValueError, match="valid: \\['serial'\\]"):
        run_tasks([], TaskStore(tmp_path), executor="slurm")


def test_write_parquet_round_trip(tmp_path):
    df = pd.DataFrame({"values": [[3.0, 2.0], [1.0]], "name": ["a", "b"]})
    write_parquet(df, tmp_path / "x" / "t.parquet")
    back = pd.read_parquet(tmp_path / "x" / "t.parquet")
    assert list(back["values"][0]) == [3.0, 2.0] and list(back["name"]) == ["a", "b"]
