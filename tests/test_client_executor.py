"""run_study on a dask.distributed.Client of the caller's (used as is, left open), into a
temporary folder (out=None), and with a block declared where workers cannot import it: a class
defined in the test (by value, as a notebook's __main__ class goes) and a module the workers
cannot import (a one-line error naming the fix; then registered by value, it runs)."""

from __future__ import annotations

import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import cloudpickle
import pandas as pd
import pytest
import torch
from torch import nn

import resdyn
from resdyn import load_data, load_model
from resdyn.models.adapters import DECLARED
from resdyn.runs import Executor
from resdyn.runs.compare import table_differences
from resdyn.studies import SPECTRA, SpectraConfig, run_study

pytestmark = pytest.mark.usefixtures("single_thread")


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal tables, timings left out (and the method's reason, which names the free memory)."""
    assert table_differences(a.drop(columns=["reason"], errors="ignore"),
                             b.drop(columns=["reason"], errors="ignore")) == []


@pytest.fixture(scope="module")
def client():
    """Two worker processes (started before any test puts a folder on sys.path)."""
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


def test_a_client_of_yours_runs_the_study_as_the_serial_run_and_stays_open(client, tmp_path):
    model, data, config = load_model("digits-resnet20"), load_data("digits"), SpectraConfig(
        images=1, k=3)
    serial = run_study(SPECTRA, model, data, config, tmp_path / "serial", threads=1)
    for run in ("a", "b"):  # a second run reuses the same workers
        r = run_study(SPECTRA, model, data, config, tmp_path / run, executor=client, threads=1)
        assert r.stats.ran == r.stats.total == 9 and r.failed == 0
        assert client.status == "running"  # not closed by resdyn
        for name in serial.tables:
            _same(r.tables[name], serial.tables[name])
    # the run let its models go on the long-lived workers
    assert "resdyn-models" not in client.run(lambda dask_worker: list(dask_worker.plugins))[
        next(iter(client.scheduler_info()["workers"]))]
    recorded = (tmp_path / "b" / "config.json").read_text()
    assert client.scheduler.address in recorded


def test_a_closed_client_is_refused_before_the_folder_is_claimed(tmp_path):
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        c = Client(cluster)
        c.close()
        with pytest.raises(ConnectionError, match="client given as executor is closed"):
            run_study(SPECTRA, load_model("digits-resnet20"), load_data("digits"),
                      SpectraConfig(images=1, k=3), tmp_path / "x", executor=c)
    assert not (tmp_path / "x").exists()
    with pytest.raises(TypeError, match="executor must be"):
        Executor.of(3)


def test_out_none_runs_into_a_fresh_temporary_folder_that_is_kept():
    model, data = load_model("digits-resnet20"), load_data("digits")
    config = SpectraConfig(images=1, k=3, names=("stages.0.0",))
    a = run_study(SPECTRA, model, data, config, None, threads=1)
    b = run_study(SPECTRA, model, data, config, None, threads=1)
    try:
        for r in (a, b):
            assert r.temporary and r.out.is_dir()
            assert r.out.parent == Path(tempfile.gettempdir()).resolve() or \
                r.out.parent == Path(tempfile.gettempdir())
            assert r.out.name.startswith("resdyn-spectra-")
            assert r.report.is_file() and (r.out / "spectra.parquet").is_file()
        assert a.out != b.out and b.stats.resumed == 0  # each its own, fresh
        _same(a.tables["spectra"], b.tables["spectra"])
    finally:
        shutil.rmtree(a.out), shutil.rmtree(b.out)
    before = set(Path(tempfile.gettempdir()).glob("resdyn-spectra-*"))
    with pytest.raises(ValueError):  # refused before any folder is made
        run_study(SPECTRA, model, data, SpectraConfig(images=1, k=3, names=("nope",)), None)
    assert set(Path(tempfile.gettempdir()).glob("resdyn-spectra-*")) == before


def _tiny(block: type) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), block(4), block(4), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 10)).eval()


def _declared(block: type) -> None:
    resdyn.declare_unit(block, lambda m: resdyn.UnitParts(residual=m.branch,
                                                           activation=torch.relu))


BLOCK = '''
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def branch(self, x):
        return self.conv(x)

    def forward(self, x):
        return torch.relu(x + self.branch(x))
'''


def test_a_notebooks_block_reaches_the_workers_with_its_declaration(client, tmp_path,
                                                                    monkeypatch):
    namespace: dict = {}
    exec(BLOCK, namespace)  # a notebook's class: defined in __main__, which workers lack
    Block = namespace["Block"]
    Block.__module__, Block.__qualname__ = "__main__", f"Block_{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(sys.modules["__main__"], Block.__qualname__, Block, raising=False)
    _declared(Block)
    try:
        model, data = _tiny(Block), load_data("digits")
        config = SpectraConfig(images=1, k=3)
        serial = run_study(SPECTRA, model, data, config, tmp_path / "serial", threads=1)
        r = run_study(SPECTRA, model, data, config, tmp_path / "dask", executor=client,
                      threads=1)
        assert r.failed == 0, r.errors["message"].tolist()
        assert r.tables["spectra"]["name"].tolist()[:2] == ["1", "2"]
        _same(r.tables["spectra"], serial.tables["spectra"])
    finally:
        DECLARED.pop(Block, None)




def test_a_module_the_workers_cannot_import_is_named_with_the_fix(client, tmp_path,
                                                                  monkeypatch):
    name = f"blocks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(BLOCK)
    monkeypatch.syspath_prepend(str(tmp_path))  # here only: the workers started without it
    module = __import__(name)
    _declared(module.Block)
    try:
        model, data = _tiny(module.Block), load_data("digits")
        config = SpectraConfig(images=1, k=3)
        with pytest.raises(ModuleNotFoundError,
                           match=rf"cannot import module '{name}'.*"
                                 rf"cloudpickle.register_pickle_by_value\({name}\)"):
            run_study(SPECTRA, model, data, config, tmp_path / "a", executor=client)
        cloudpickle.register_pickle_by_value(module)
        try:
            r = run_study(SPECTRA, model, data, config, tmp_path / "b", executor=client,
                          threads=1)
        finally:
            cloudpickle.unregister_pickle_by_value(module)
        assert r.failed == 0, r.errors["message"].tolist()
        assert r.tables["spectra"]["name"].tolist() == ["1", "2"]  # both declared blocks
    finally:
        DECLARED.pop(module.Block, None)
        sys.modules.pop(name, None)
