"""The options of the ``resdyn`` commands beside the studies' own, declared once as option
classes like the studies' configs: the model a study looks at (:class:`ModelOptions`), the data
of a study that trains its own networks (:class:`DataOptions`), where and how a run runs
(:class:`RunOptions`), the model ``units`` and ``check`` look at (:class:`ProbeOptions`) and
what ``train`` trains (:class:`TrainOptions`)."""

from __future__ import annotations

from dataclasses import dataclass

from .._torch import PRECISIONS
from ..runs.executor import MAX_WORKERS
from .options import MAX_EPOCHS, MAX_SEED, option, options_class

MODEL_HELP = "zoo name or checkpoint (see `resdyn models`)"
WEIGHTS_HELP = "local state dict (.pth/.safetensors), or 'random' (reproducible random init)"
DEVICE_HELP = "cpu | cuda | cuda:N | auto (a GPU where there is one)"


@dataclass(frozen=True)
@options_class
class ModelOptions:
    """The options of a study of one model (and of ``evaluate``)."""

    model: str | None = option(None, short="-m", help=MODEL_HELP + "; required")
    data: str = option("digits", short="-d", help="digits | induction | cifar10 | mnist | "
                       "PATH.npz | image folder | text file")
    weights: str | None = option(None, help=WEIGHTS_HELP)
    any_input_size: bool = option(False, help="allow images of another size than the model "
                                  "was trained on")

    def load(self):
        """The model and the test split of the data, checked against each other.

        Raises:
            ValueError: no model named, or model and data that do not fit (the message says
                how).
        """
        from ..data import check_compatible, load_for
        from ..models import load_model

        if self.model is None:
            raise ValueError("no model: give --model (a zoo name or checkpoint, see `resdyn "
                             "models`)")
        m = load_model(self.model, self.weights)
        ds = load_for(m, self.data, split="test")
        check_compatible(m, ds, any_input_size=self.any_input_size)
        return m, ds


@dataclass(frozen=True)
@options_class
class DataOptions:
    """The data option of a study that trains its own networks."""

    data: str = option("digits", short="-d", help="digits | cifar10 | mnist | PATH.npz | "
                       "image folder")

    def load(self):
        """The test split of the images."""
        from ..data import load_images

        return load_images(self.data, split="test")


@dataclass(frozen=True)
@options_class
class RunOptions:
    """The options of every study command: where and how it runs."""

    out: str = option("out", help="run folder (resumable; refuses another configuration; one "
                      "writer at a time)")
    fresh: bool = option(False, filed=False, help="remove what resdyn wrote in --out and start "
                         "over")
    executor: str = option("serial", choices=("serial", "dask"), help="serial | dask (implied "
                           "by --workers/--scheduler)")
    workers: int | None = option(None, 1, MAX_WORKERS, help="run tasks on a local Dask cluster of N "
                                 "worker processes")
    scheduler: str | None = option(None, help="run tasks on a running Dask scheduler, e.g. "
                                   "tcp://host:8786")
    device: str = option("cpu", help=DEVICE_HELP + "; rows record where they were computed")
    precision: str = option("float64", choices=tuple(PRECISIONS), help="Jacobian products in float64 | "
                            "float32 (the Gram matrix and eigensolves stay float64; float32 "
                            "products move σ by < 1e-7·σ_max)")

    def executor_spec(self):
        """The executor: Dask when --workers or --scheduler is given."""
        from ..runs import Executor

        name = ("dask" if self.executor == "serial" and (self.workers is not None
                                                          or self.scheduler) else self.executor)
        return Executor(name, workers=self.workers, scheduler=self.scheduler)




@dataclass(frozen=True)
@options_class
class ProbeOptions:
    """The model ``units`` and ``check`` look at, at one input shape."""

    model: str = option(short="-m", help=MODEL_HELP)
    weights: str | None = option(None, help=WEIGHTS_HELP)
    input_shape: str | None = option(None, help="C,H,W (default: the model's)")
    names: tuple[str, ...] | None = option(None, flag="units", none="all", help="comma-separated "
                                           "module names, for models resdyn does not recognise")
    seed: int = option(0, 0, MAX_SEED, help="the random input and test directions")

    def load(self):
        """The model, its input shape and its units."""
        from ..models import input_shape, load_model, units

        m = load_model(self.model, self.weights)
        shape = input_shape(m, self.input_shape)
        return m, shape, units(m, shape, list(self.names) if self.names else None)


@dataclass(frozen=True)
@options_class
class TrainOptions:
    """What ``train`` trains, on what, for how long, and where it writes the checkpoint."""

    model: str = option(short="-m", help="a zoo architecture (see `resdyn models`)")
    data: str = option(short="-d", help="digits | induction | cifar10 | mnist | PATH.npz | "
                       "image folder")
    out: str = option(help="FILE.safetensors")
    epochs: int = option(30, 1, MAX_EPOCHS)
    seed: int = option(0, 0, MAX_SEED)
    device: str = option("cpu", help=DEVICE_HELP)

    def __post_init__(self) -> None:
        if not self.out.endswith(".safetensors"):
            raise ValueError(f"--out must end in .safetensors; got {self.out}")
