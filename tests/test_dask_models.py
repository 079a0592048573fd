"""Models on Dask workers: more models than a process's model cache keeps reach
workers that cannot open the run folder; a task that kills its worker every time is recorded
as failed (KilledWorker) while the others finish; a model.pt planted in the run folder before
the run is never trusted (never unpickled)."""

import hashlib
import os
import sys
import threading

import cloudpickle
import dask
import pandas as pd
import pytest
import torch
from conftest import refuse_paths
from torch import nn

from resdyn.runs import Executor, TaskStore
from resdyn.runs.executor import RunStats, Task, run_tasks
from resdyn.runs.identity import model_digest
from resdyn.runs.modelref import _MODELS, KEEP, save_model

# the workers cannot import tests/: this module's functions and conftest's go by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])
cloudpickle.register_pickle_by_value(sys.modules["conftest"])


def _try(path: str) -> str:
    try:
        with open(path, "rb"):
            return "opened"
    except PermissionError:
        return "refused"


def _weight_sum(ref) -> pd.DataFrame:
    model = ref.load()
    return pd.DataFrame({"sum": [sum(float(p.detach().double().sum()) for p in model.parameters())]})


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 2), nn.Tanh()).eval()  # a user's module: saved as model.pt


def test_more_models_than_the_cache_keeps_reach_workers_without_the_run_folder(tmp_path):
    from dask.distributed import Client, LocalCluster

    root = str((tmp_path / "run").resolve())
    nets = [_net(i) for i in range(KEEP + 2)]
    refs = [save_model(net, model_digest(net), tmp_path / "run" / f"net{i}")
            for i, net in enumerate(nets)]
    tasks = [Task("sums", f"net{i}-{r}", _weight_sum, {"ref": ref}, tags={"net": i})
             for r in range(2) for i, ref in enumerate(refs)]
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(refuse_paths, root)
        assert set(client.run(_try, refs[0].path).values()) == {"refused"}
        store = TaskStore(tmp_path / "tasks")
        stats = run_tasks(tasks, store, Executor("dask", scheduler=cluster.scheduler_address),
                          models={ref.key: net for ref, net in zip(refs, nets, strict=True)})
    assert stats.failed == 0, store.errors()["message"].tolist()
    got = store.load("sums").sort_values("net")["sum"].tolist()
    want = [sum(float(p.detach().double().sum()) for p in net.parameters()) for net in nets]
    assert got == [w for w in want for _ in range(2)]


def _dies() -> pd.DataFrame:
    os._exit(1)  # as a segfault or the OOM killer would end the worker


def _fine() -> pd.DataFrame:
    return pd.DataFrame({"x": [1]})


@pytest.mark.slow
def test_a_task_that_kills_every_worker_is_recorded_and_the_others_finish(tmp_path):
    tasks = [Task("t", "fine", _fine), Task("t", "dies", _dies), Task("t", "fine2", _fine)]
    store = TaskStore(tmp_path)
    done: dict = {}

    def target():
        try:
            done["stats"] = run_tasks(tasks, store, Executor("dask", workers=1))
        except Exception as e:  # shown by the assertion below
            done["error"] = e

    run = threading.Thread(target=target, daemon=True)
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):  # 2 deaths, not 4
        run.start()
        run.join(timeout=300)  # about 15 s; a hang fails here instead of hanging the suite
    assert not run.is_alive(), "the run did not finish within 300 s"
    assert "error" not in done, f"the run raised {done.get('error')!r}"
    assert done["stats"] == RunStats(total=3, resumed=0, ran=2, failed=1)
    assert store.load("t")["x"].tolist() == [1, 1]
    error = store.errors().iloc[0]
    assert (error["key"], error["error"]) == ("dies", "KilledWorker")
    assert "t/dies" in error["message"] and "died 2 times" in error["message"]


class _Planted:
    """Unpickling this creates ``marker``: proof that a file was unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_a_model_file_planted_before_the_run_is_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    torch.save(_Planted(str(marker)), tmp_path / "model.pt")
    planted = hashlib.sha256((tmp_path / "model.pt").read_bytes()).hexdigest()
    net = _net(0)
    ref = save_model(net, model_digest(net), tmp_path)
    assert ref.file_sha256 != planted
    assert hashlib.sha256((tmp_path / "model.pt").read_bytes()).hexdigest() == ref.file_sha256
    del _MODELS[ref.sha256]  # as in a process that was not handed the model
    back = ref.load()
    assert not marker.exists()
    assert back is not net and model_digest(back) == model_digest(net)
