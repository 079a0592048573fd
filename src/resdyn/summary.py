"""What a study run found, as data: written once by the runner (``summary.json``) and rendered
from that data both as ``summary.md`` and as the run's section of the HTML report, so neither
parses the other.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SUMMARY_FILE = "summary.json"

#: How a verdict follows from the numbers, said once under every claims table.
VERDICTS = ("A claim holds (yes) when the whole 95 % interval of its number lies on the claim's "
            "side of its threshold, fixed before any run; it does not (no) when the whole "
            "interval lies on the other side, and is undecided when the interval straddles or "
            "touches the threshold (or a number over one image has none). A claim of several "
            "numbers holds when every one does and not when any one does not (\"any of\": holds "
            "when any one does, not when none does). Intervals: percentile bootstrap over the "
            "images or sequences (2000 resamples, seed 0), the fit's t interval for the depth "
            "laws; \"exact\" numbers have no sampling, \"one image\" ones are measured once "
            "by the study's design. \"not judged\": no data to judge the claim on.")


@dataclass(frozen=True)
class Summary:
    """One run's findings.

    Attributes:
        title: "<study title>: <model> on <data>".
        run: what this run computed, one sentence.
        strays: files in ``tasks/`` of no planned task (left out of every table).
        recomputed: "task file: why" of each stored task file that did not prove it is that
            task of this run (another run's, damaged), removed and computed again.
        failure: why the claims are not judged when tasks failed (empty when none did).
        errors: (task, "Type: message") of each failed task; empty when ``failure`` already
            names the one error every task raised.
        claims: each claim with ``claim``, ``held`` (True/False/None), ``verdict`` ("yes",
            "no", "undecided", "not judged"), ``evidence``, ``numbers`` (each number with its
            95 % interval against its threshold, in words), ``tests`` (the same as data:
            what, value, low, high, threshold, side, method, n, unit, verdict), ``rule``
            ("all" or "any") and the deciding test's ``value``, ``low``, ``high``,
            ``threshold`` and ``side``, in the study's order (see
            :mod:`resdyn.studies.intervals`).
        notes: the study's own markdown (numbers behind the claims).
        figures: figure name -> caption, in the study's order.
        tables: table names, in the study's order.
    """

    title: str
    run: str = ""
    strays: list[str] = field(default_factory=list)
    failure: str = ""
    errors: list[tuple[str, str]] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)
    notes: str = ""
    figures: dict[str, str] = field(default_factory=dict)
    tables: list[str] = field(default_factory=list)
    recomputed: list[str] = field(default_factory=list)

    def store_lines(self) -> list[str]:
        """What the run found in its task store besides its own results, one line each."""
        lines = []
        if self.recomputed:
            lines.append(f"{len(self.recomputed)} stored task file(s) did not prove they are "
                         "this run's results and were computed again: " + _few(self.recomputed))
        if self.strays:
            lines.append(f"{len(self.strays)} file(s) in tasks/ belong to no task of this run "
                         f"and were left out of every table: {_few(self.strays)}")
        return lines

    def markdown(self) -> str:
        """The run's ``summary.md``."""
        lines = [f"# {self.title}", "", self.run, ""]
        for line in self.store_lines():
            lines += [line, ""]
        if self.failure:
            lines.append(self.failure)
            if self.errors:
                lines += ["", "| task | error |", "|---|---|"]
                lines += [f"| {task} | {_cell(error)} |" for task, error in self.errors]
            return "\n".join(lines) + "\n"
        if self.claims:
            lines += ["## Claims", "", "| claim | holds here | number [95 % interval] vs its "
                      "threshold | evidence |", "|---|---|---|---|"]
            lines += [f"| {c['claim']} | {c['verdict']} | {_cell(c.get('numbers') or '—')} | "
                      f"{_cell(c['evidence'])} |" for c in self.claims]
            lines += ["", VERDICTS, ""]
        if self.notes:
            lines.append(self.notes)
        return "\n".join(lines) + "\n"

    def write(self, folder: Path) -> None:
        """Write ``summary.json`` and ``summary.md`` into ``folder`` (atomically, each)."""
        from .runs.store import atomic_write

        for name, text in ((SUMMARY_FILE, json.dumps(asdict(self), indent=2)),
                           ("summary.md", self.markdown())):
            atomic_write(folder / name, functools.partial(_write_text, text=text))

    @classmethod
    def read(cls, folder: Path) -> Summary | None:
        """The summary a run wrote in ``folder`` (None: none, or an unreadable one)."""
        try:
            raw = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
            raw["errors"] = [tuple(e) for e in raw.get("errors", [])]
            return cls(**raw)
        except (OSError, ValueError, TypeError):
            return None


def _few(items: list[str]) -> str:
    return "; ".join(items[:10]) + (f"; and {len(items) - 10} more" if len(items) > 10 else "")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")  # a pipe table's cell


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
