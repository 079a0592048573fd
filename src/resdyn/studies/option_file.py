"""Option files (``--config FILE.toml``): a command's options from a file, flags win.

A file holds the command's options by flag name or field name (``images = 20``, ``top-k`` or
``k``, lists for tuples: ``depths = [2, 4, 8]``, or their text as typed: ``depths = "2,4,8"``).
Every run writes the options it resolved to ``options.toml`` in its folder, so
``--config DIR/options.toml`` repeats it.
"""

from __future__ import annotations

import math
from dataclasses import MISSING
from pathlib import Path
from typing import Any

from ..runs.store import atomic_write
from .options import check_value, cli_fields, flag, from_file, from_text, to_file

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as the package tomli
    import tomli as tomllib  # type: ignore[no-redef]


def read_options(path: Path) -> dict[str, Any]:
    """The options of a TOML file, by key.

    Raises:
        ValueError: unreadable or not TOML (names the file).
    """
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"--config: cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"--config: {path} is not valid TOML: {e}") from None


def write_options(path: Path, options: dict[str, Any]) -> Path:
    """``options`` (by key; None left out) as a TOML file, written atomically."""
    text = "".join(f"{key} = {_toml(v)}\n" for key, v in options.items() if v is not None)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def _toml(v: Any) -> str:
    """A value as TOML; a string as a basic string, escaped as the TOML spec requires."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if v != v else ("inf" if v > 0 else "-inf"))
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return '"' + "".join(_ESCAPES.get(c) or (f"\\u{ord(c):04X}" if c < " " or c == "\x7f" else c)
                         for c in str(v)) + '"'


#: TOML's basic-string escapes; the other control characters are written as \uXXXX.
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}


class OptionSet:
    """One command's options: the fields of several option classes, each class under a prefix
    (``[("c_", SpectraConfig), ("r_", RunOptions)]``), and their values from the command line,
    an option file and the defaults, in that order.

    Example:
        >>> from resdyn.studies.command_options import RunOptions
        >>> opts = OptionSet([("r_", RunOptions)], defaults={"out": "out/x"})
        >>> values, record = opts.resolve({"r_device": "cuda"})
        >>> values["r_"]["out"], values["r_"]["device"], record
        ('out/x', 'cuda', {'out': 'out/x', 'device': 'cuda'})
    """

    def __init__(self, groups: list[tuple[str, type]], *, defaults: dict[str, Any] | None = None,
                 leave_out: tuple[str, ...] = ()):
        self.groups, self.defaults = groups, defaults or {}
        self.fields = [(prefix, cls, f) for prefix, cls in groups for f in cli_fields(cls)
                       if f.name not in leave_out]

    def resolve(self, given: dict[str, Any], path: Path | None = None) -> tuple[dict, dict]:
        """Per prefix the values (``{prefix: {field: value}}``), and the options as
        ``options.toml`` records them (by flag).

        Args:
            given: the options given on the command line, by prefix and field name
                (``"c_images"``), as typed (text; a repeated flag's texts; a switch's bool).
            path: the option file (``--config``), if any.

        Raises:
            ValueError, TypeError: a bad value (names the flag, or the file and key), an
                unknown key in the file.
        """
        filed = read_options(path) if path is not None else {}
        by_key = {k: (p, c, f) for p, c, f in self.fields
                  for k in (flag(f), f.name, *(o.lstrip("-") for o in f.metadata["old"]))}
        for key in filed:
            if key not in by_key or not by_key[key][2].metadata["filed"]:
                valid = ", ".join(flag(f) for _, _, f in self.fields if f.metadata["filed"])
                raise ValueError(f"--config {path}: unknown option {key!r}; this command takes "
                                 f"{valid}")
        in_file = {by_key[k][2].name: (k, v) for k, v in filed.items()}
        out: dict[str, dict] = {prefix: {} for prefix, _ in self.groups}
        record: dict[str, Any] = {}
        for prefix, cls, f in self.fields:
            if prefix + f.name in given:
                text = given[prefix + f.name]
                value = _from_command_line(cls, f, text, f"--{flag(f)}")
                kept = text if f.metadata["parse"] else to_file(f, value)
            elif f.name in in_file:
                key, v = in_file[f.name]
                value, kept = from_file(cls, f, v, f"--config {path}: key {key!r}"), v
            elif f.name in self.defaults:
                value = self.defaults[f.name]
                kept = to_file(f, value)
            elif f.default is MISSING:
                raise ValueError(f"Missing option '--{flag(f)}'" + (
                    f" ({f.metadata['help']})" if f.metadata["help"] else ""))
            else:
                continue
            out[prefix][f.name] = value
            if f.metadata["filed"]:
                record[flag(f)] = list(kept) if isinstance(kept, tuple) else kept
        return out, record


def _from_command_line(cls: type, f: Any, given: Any, name: str) -> Any:
    if isinstance(given, bool):
        check_value(name, given, bool, f.metadata)
        return given
    return from_text(cls, f, list(given) if f.metadata["multiple"] else given, name)
