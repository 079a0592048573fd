"""The Study pattern: what a study declares. :mod:`resdyn.studies.runner` does the rest.

A study is one small module that builds a :class:`Study`: a frozen config dataclass, a ``plan``
that turns (model, data, config) into independent tasks, its tables (name -> which tasks' rows,
how ordered, or derived from other tables), its figures (name -> a plot function of the tables),
its claims (name -> a function of the tables returning a :class:`Claim`) and optional notes
(markdown with the numbers behind the claims).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from ..data import Dataset
from ..runs import ModelRef, RunContext, Task
from ..runs.context import DEFAULT
from .intervals import Test, combine, deciding, verdict_word

Tables = Mapping[str, pd.DataFrame]


@dataclass(frozen=True)
class Context:
    """What a study's functions see: the run's model (and its reference for tasks), data, config.

    ``model`` and ``model_ref`` are None for a study that trains its own networks; ``data`` is
    None for a study of no data set.

    ``meta`` holds what the plan decided (chosen images, units ...) for tables, figures, claims.
    ``run`` is where and how the tasks compute (device, precision, threads); the tasks read it
    from :func:`resdyn.runs.current`, never from their parameters.

    Example:
        >>> from pathlib import Path
        >>> from resdyn import load_data
        >>> ctx = Context(model=None, model_ref=None, model_name="", data=load_data("digits"),
        ...               config=None, out=Path("out"))
        >>> ctx.dataset.input_shape, ctx.run.device
        ((1, 8, 8), 'cpu')
        >>> ctx.ref
        Traceback (most recent call last):
            ...
        ValueError: this study analyses a model; run it with one (--model)
    """

    model: nn.Module | None
    model_ref: ModelRef | None
    model_name: str
    data: Dataset | None
    config: Any
    out: Path
    meta: Mapping[str, Any] = field(default_factory=dict)
    run: RunContext = DEFAULT

    @property
    def dataset(self) -> Dataset:
        """``data``, for a study of a data set (ValueError when the run has none)."""
        if self.data is None:
            raise ValueError("this study analyses a data set; run it with one (--data)")
        return self.data

    @property
    def ref(self) -> ModelRef:
        """``model_ref``, for a study of a given model (ValueError when the run has none)."""
        if self.model_ref is None:
            raise ValueError("this study analyses a model; run it with one (--model)")
        return self.model_ref


@dataclass(frozen=True)
class Plan:
    """A study's tasks and what the plan decided (``meta``, e.g. the chosen images).

    Example:
        >>> import pandas as pd
        >>> from pathlib import Path
        >>> from resdyn.runs import Task
        >>> def square(x):
        ...     return pd.DataFrame({"x": [x], "y": [x * x]})
        >>> def plan(ctx):  # a study's plan: one task per x
        ...     xs = list(range(ctx.config))
        ...     return Plan([Task("squares", f"x{x}", square, {"x": x}) for x in xs], {"xs": xs})
        >>> p = plan(Context(None, None, "", None, config=3, out=Path("out")))
        >>> [t.id for t in p.tasks], p.meta
        (['squares/x0', 'squares/x1', 'squares/x2'], {'xs': [0, 1, 2]})
    """

    tasks: Sequence[Task]
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Table:
    """One output table (``<name>.parquet``).

    Attributes:
        analysis: the tasks whose rows form it (default: the table's own name).
        order: reorders or completes those rows: fn(rows, ctx) -> rows.
        derive: instead of task rows, computed from the tables before it: fn(tables, ctx).

    Example:
        >>> import pandas as pd
        >>> from pathlib import Path
        >>> ctx = Context(None, None, "", None, None, Path("out"))
        >>> rows = pd.DataFrame({"x": [0, 1, 2], "y": [0, 1, 4]})  # the rows of the tasks
        >>> squares = Table(order=lambda rows, ctx: rows.sort_values("y", ascending=False))
        >>> squares.order(rows, ctx)["x"].tolist()
        [2, 1, 0]
        >>> total = Table(derive=lambda tables, ctx: tables["squares"][["y"]].sum().to_frame("sum"))
        >>> total.derive({"squares": rows}, ctx)
           sum
        y    5
    """

    analysis: str | None = None
    order: Callable[[pd.DataFrame, Context], pd.DataFrame] | None = None
    derive: Callable[[Tables, Context], pd.DataFrame] | None = None


@dataclass(frozen=True)
class Figure:
    """One figure (``<name>.png``): ``draw(tables, ctx, path)`` saves it; ``caption`` for the report.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> import pandas as pd
        >>> from matplotlib.figure import Figure as PlotFigure
        >>> def draw(tables, ctx, path):
        ...     fig = PlotFigure(figsize=(3, 2))
        ...     ax = fig.subplots()
        ...     ax.plot(tables["squares"]["x"], tables["squares"]["y"], "o-")
        ...     ax.set_title(ctx.model_name)
        ...     fig.savefig(path)
        >>> fig = Figure(draw, "y = x² at x = 0, 1, 2")
        >>> out = Path(tempfile.mkdtemp())
        >>> ctx = Context(None, None, "toy", None, None, out)
        >>> fig.draw({"squares": pd.DataFrame({"x": [0, 1, 2], "y": [0, 1, 4]})}, ctx,
        ...          out / "squares.png")
        >>> (out / "squares.png").is_file()
        True
    """

    draw: Callable[[Tables, Context, Path], Any]
    caption: str


@dataclass(frozen=True)
class Claim:
    """A verdict on a paper's claim, with the numbers.

    ``held``: True (held), False (not held) or None: undecided when the claim has ``tests``
    (its numbers' intervals straddle their thresholds), not judged when it has none (no data
    to judge it on). ``tests``: each number of the claim with its 95 % interval against its
    fixed threshold (:class:`~resdyn.studies.intervals.Test`), combined by ``rule`` ("all" or
    "any", :func:`~resdyn.studies.intervals.combine`); build a judged claim with
    :meth:`judged`, which takes ``held`` from them.

    Example:
        >>> from resdyn.studies.intervals import Interval, Test
        >>> share = Test("median plateau share", Interval(0.83, 0.79, 0.86, n=5), 0.5, "above")
        >>> c = Claim.judged("plateau share 0.83 of all singular values", [share])
        >>> c.verdict, c.numbers()
        ('yes', 'median plateau share 0.83 [0.79, 0.86] > 0.5')
        >>> Claim.judged("", [Test("x", Interval(0.5, 0.4, 0.6, n=3), 0.5, "above")]).verdict
        'undecided'
        >>> Claim(None, "no down-sampling unit in this network").verdict
        'not judged'
    """

    held: bool | None
    evidence: str
    tests: tuple[Test, ...] = ()
    rule: str = "all"

    def __post_init__(self) -> None:
        if self.tests and self.held != combine(self.tests, self.rule):
            raise ValueError("a claim with tests takes its verdict from them: use Claim.judged")

    @classmethod
    def judged(cls, evidence: str, tests: Sequence[Test], rule: str = "all") -> Claim:
        """The claim whose verdict its tests give by ``rule``."""
        tests = tuple(tests)
        return cls(combine(tests, rule), evidence, tests, rule)

    @property
    def verdict(self) -> str:
        """"yes", "no", "undecided" or "not judged": the words of summaries and reports."""
        return verdict_word(self.held, bool(self.tests))

    @property
    def deciding(self) -> Test | None:
        """The test that decided the verdict (None without tests)."""
        return deciding(self.tests, self.held) if self.tests else None

    def numbers(self) -> str:
        """Each test as 'what value [low, high] > threshold', joined by '; ' (and the rule when
        it is "any")."""
        text = "; ".join(t.text() for t in self.tests)
        return f"any of: {text}" if self.rule == "any" and len(self.tests) > 1 else text

    def record(self) -> dict[str, Any]:
        """The claim's verdict and numbers as plain data (summary.json), without its wording:
        held, verdict, evidence, rule, tests, and the deciding test's value, low, high,
        threshold and side (None without tests)."""
        d = self.deciding
        head = d.record() if d is not None else {}
        return {"held": self.held, "verdict": self.verdict, "evidence": self.evidence,
                **{k: head.get(k) for k in ("value", "low", "high", "threshold", "side")},
                "numbers": self.numbers(), "rule": self.rule,
                "tests": [t.record() for t in self.tests]}


@dataclass(frozen=True)
class Study:
    """A study's declaration.

    Attributes:
        name: short name (``"stability"``); the run folder records it.
        title: heading of its summary and report section.
        config: its frozen config dataclass.
        plan: fn(ctx) -> :class:`Plan`.
        tables, figures, claims: as described in the module docstring; claims maps the claim's
            wording to fn(tables, ctx) -> :class:`Claim`.
        resolve: fn(config, model, data) -> config with defaults made explicit (e.g. the unit a
            default picks), so that runs are keyed by what they compute.
        notes: fn(tables, ctx) -> markdown with the study's numbers, after the claims.
        revision: raised when a task's rows change meaning or columns for the same config
            (run folders of an older revision are refused instead of mixing rows of both);
            ``changes`` says what changed at the latest revision, for that refusal.
        precisions: of the Jacobian products the study computes in; ``precision_note`` says
            why another is refused.

    Example:
        A study of no model and no data: its config, its plan, a table of task rows, a derived
        table and a claim; :func:`resdyn.studies.run_study` does the rest.

        >>> import tempfile
        >>> from dataclasses import dataclass
        >>> import pandas as pd
        >>> from resdyn.runs import Task
        >>> from resdyn.studies import run_study
        >>> @dataclass(frozen=True)
        ... class SquaresConfig:
        ...     n: int = 3
        >>> def square(x):
        ...     return pd.DataFrame({"x": [x], "y": [x * x]})
        >>> def plan(ctx):
        ...     return Plan([Task("squares", f"x{x}", square, {"x": x}) for x in range(ctx.config.n)])
        >>> def total(tables, ctx):
        ...     return pd.DataFrame({"sum": [int(tables["squares"]["y"].sum())]})
        >>> def adds_up(tables, ctx):
        ...     s = tables["total"]["sum"][0]
        ...     return Claim(bool(s == 5), f"the sum is {s}")
        >>> squares = Study("squares", "Squares", SquaresConfig, plan,
        ...                 tables={"squares": Table(), "total": Table(derive=total)},
        ...                 claims={"0² + 1² + 2² = 5": adds_up})
        >>> r = run_study(squares, None, None, SquaresConfig(), tempfile.mkdtemp())
        >>> r.stats, r.claims["0² + 1² + 2² = 5"].verdict
        (RunStats(total=3, resumed=0, ran=3, failed=0), 'yes')
        >>> r.tables["squares"]
           x  y device
        0  0  0    cpu
        1  1  1    cpu
        2  2  4    cpu
    """

    name: str
    title: str
    config: type
    plan: Callable[[Context], Plan]
    tables: Mapping[str, Table]
    figures: Mapping[str, Figure] = field(default_factory=dict)
    claims: Mapping[str, Callable[[Tables, Context], Claim]] = field(default_factory=dict)
    resolve: Callable[[Any, nn.Module, Dataset], Any] | None = None
    notes: Callable[[Tables, Context], str] | None = None
    revision: int = 1
    changes: str = ""
    precisions: tuple[str, ...] = ("float64", "float32")
    precision_note: str = ""


def upgrade_safe(study: Study, ctx: Context) -> set[str]:
    """Identity paths an older run folder may lack: the products' precision when float64 (what
    every version before the run context computed in), and the study's revision while it is
    the first."""
    return ({"run.precision"} if ctx.run.precision == "float64" else set()) | (
        {"revision"} if study.revision == 1 else set())


#: Identity fields an older run folder kept elsewhere (old path -> new path): the products'
#: precision was recorded in the study's config before the run's own fields.
MOVED = {"config.precision": "run.precision"}
