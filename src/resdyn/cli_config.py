"""``--config FILE.toml`` for the study commands: options from a file, flags win.

A file holds the command's options by flag name or field name (``images = 20``, ``top-k`` or
``k``, lists for tuples: ``depths = [2, 4, 8]``, or their text as typed: ``depths = "2,4,8"``).
Every run writes the options it resolved to ``options.toml`` in its folder, so
``--config DIR/options.toml`` repeats it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .runs.store import atomic_write

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
