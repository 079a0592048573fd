"""Train one of resdyn's own networks for a study (the depth sweep, the stable comparison).

The task trains and saves the checkpoint in a folder of its own process, and returns the file's
bytes with its row (:class:`resdyn.runs.executor.Output`): the process that writes the run folder
puts it at ``path``, so a Dask worker that cannot see the run folder trains as well as a local
one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from ..runs import current
from ..runs.executor import Output


def train_task(data: str, spec: str, path: str, epochs: int, lr: float, batch_size: int,
               seed: int) -> Output:
    """Train ``spec`` on ``data`` (:func:`resdyn.train.train_and_save`); the checkpoint goes to
    ``path`` in the run folder.

    Returns:
        one row (spec, epochs, test_accuracy, test_loss, train_loss, seconds, checkpoint: the
        file's name) and the checkpoint's bytes for ``path``.
    """
    from ..train import train_and_save

    with tempfile.TemporaryDirectory(prefix="resdyn-train-") as tmp:
        local = Path(tmp) / Path(path).name
        r = train_and_save(spec, data, epochs, local, seed=seed, batch_size=batch_size, lr=lr,
                           device=current().device)
        checkpoint = local.read_bytes()
    rows = pd.DataFrame([{"spec": spec, "epochs": epochs, "test_accuracy": r.test_accuracy,
                          "test_loss": r.test_loss, "train_loss": r.train_loss,
                          "seconds": r.seconds, "checkpoint": Path(path).name}])
    return Output(rows, {path: checkpoint})
