"""A study on a Dask cluster whose workers cannot open anything in the run folder (an audit hook
refuses it on every worker): training tasks send their checkpoints back, the process that runs
the study writes them, and the trained models reach the workers with the run; the tables are
the serial ones. And how a local cluster spreads its workers over GPUs."""

import os
import sys

import cloudpickle
import pandas as pd
import pytest
import torch
from conftest import refuse_paths

from resdyn import load_data
from resdyn.models.checkpoints import read_state
from resdyn.runs import Executor, RunContext
from resdyn.runs.context import pin, spread, using
from resdyn.studies import SWEEP, SweepConfig, run_study

# the workers cannot import tests/: this module's functions and conftest's go by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])
cloudpickle.register_pickle_by_value(sys.modules["conftest"])


def _try(path: str) -> str:
    try:
        with open(path, "w"):
            return "opened"
    except PermissionError:
        return "refused"


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    drop = [c for c in ("seconds", "device") if c in a.columns]
    pd.testing.assert_frame_equal(a.drop(columns=drop), b.drop(columns=drop), rtol=1e-6)


@pytest.mark.slow
def test_sweep_on_workers_that_cannot_open_the_run_folder(tmp_path):
    from dask.distributed import Client, LocalCluster

    config, data = SweepConfig(depths=(1, 2), epochs=1, images=8), load_data("digits")
    serial = run_study(SWEEP, None, data, config, tmp_path / "serial", threads=1)
    out = str((tmp_path / "cluster").resolve())
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(refuse_paths, out)
        assert set(client.run(_try, os.path.join(out, "probe")).values()) == {"refused"}
        r = run_study(SWEEP, None, data, config, out, threads=1,
                      executor=Executor("dask", scheduler=cluster.scheduler_address))
    assert r.failed == 0, r.errors["message"].tolist()
    assert not os.path.exists(os.path.join(out, "probe"))
    for name in ("training", "blocks", "distances", "fits"):
        _same(r.tables[name], serial.tables[name])
    for depth in (1, 2):  # the checkpoints arrived whole: the serial run's weights
        name = f"checkpoints/preresnet{depth}.safetensors"
        a, b = read_state(tmp_path / "cluster" / name), read_state(tmp_path / "serial" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_pinned_worker_computes_on_its_own_gpu():
    assert [spread(name, 3) for name in (0, 1, 2, 3, "4")] == [
        "cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1"]
    with pytest.raises(ValueError, match="no number"):
        spread("tcp://10.0.0.1:40000", 2)
    pin("cuda:1")
    try:
        with using(RunContext("cuda:0")) as run:  # what "cuda" and "auto" resolve to
            assert run.device == "cuda:1"
        with using(RunContext("cuda:2")) as run:  # an explicit GPU is kept
            assert run.device == "cuda:2"
        with using(RunContext("cpu")) as run:
            assert run.device == "cpu"
    finally:
        pin(None)
    with using(RunContext("cuda:0")) as run:
        assert run.device == "cuda:0"
