"""``--config FILE.toml`` for the study commands: options from a file, flags win.

A file holds the command's options by name (``images = 20``, ``top-k`` or ``top_k``, lists for
comma-separated options: ``depths = [2, 4, 8]``). Every run writes the options it resolved to
``options.toml`` in its folder, so ``--config DIR/options.toml`` repeats it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn, get_args, get_origin

import tomllib
import typer

from .runs.store import atomic_write

#: Options that say how to run, not what: never read from a file nor written to one.
NOT_IN_FILES = ("config", "fresh")


def load_options(ctx: typer.Context, param: typer.CallbackParam,
                 value: Path | None) -> Path | None:
    """Eager callback of ``--config``: the file's options become the command's defaults."""
    if value is None:
        return None
    try:
        raw = tomllib.loads(Path(value).read_text(encoding="utf-8"))
    except OSError as e:
        _refuse(f"cannot read {value}: {e.strerror}")
    except tomllib.TOMLDecodeError as e:
        _refuse(f"{value} is not valid TOML: {e}")
    params = _options(ctx)
    options: dict[str, Any] = {}
    for key, v in raw.items():
        if key not in params:
            valid = ", ".join(sorted({_key(p) for p in params.values()}))
            _refuse(f"{value}: unknown option {key!r}; this command takes {valid}")
        options[params[key].name] = _checked(value, key, v, params[key])
    ctx.default_map = {**(ctx.default_map or {}), **options}
    return value


def _refuse(text: str) -> NoReturn:
    """A bad ``--config`` file: one line naming it, exit status 2, as every input error (the
    eager callback runs before the command, outside its error handling)."""
    typer.echo(f"error: --config {text}", err=True)
    raise typer.Exit(2)


def _options(ctx: typer.Context) -> dict[str, Any]:
    """The command's options a file may set, by every name they go by: the long flag without
    its dashes (``top-k``, ``units``) and the parameter name (``top_k``, ``names``)."""
    found: dict[str, Any] = {}
    for p in ctx.command.params:
        if getattr(p, "param_type_name", "") != "option" or p.name in NOT_IN_FILES:
            continue
        found[p.name] = found[p.name.replace("_", "-")] = found[_key(p)] = p
    return found


def _key(param: Any) -> str:
    """An option's name in files: its first long flag without the dashes."""
    long = [o for o in param.opts if o.startswith("--")]
    return long[0][2:] if long else param.name


def _kind(param: Any) -> type | None:
    """The Python type an option's values take (int, float, bool, str, Path), or None if unknown:
    from typer's annotation (typer >= 0.22 has no click types) or else from the click type."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if annotation is not None:
        if get_origin(annotation) is list:
            annotation = (get_args(annotation) or (str,))[0]
        return annotation if annotation in (int, float, bool, str, Path) else None
    name = getattr(getattr(param, "type", None), "name", "")
    return {"integer": int, "integer range": int, "float": float, "float range": float,
            "boolean": bool, "text": str, "path": Path}.get(name)


_WHAT = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
         Path: "a path string"}


def _checked(file: Path, key: str, v: Any, option: Any) -> Any:
    """A TOML value as the option takes it, if it is of the option's type: one value, a list of
    them for a repeatable option, a list joined with commas for a comma-separated text option.
    Else refused (:func:`_refuse`) naming the file, the key, what it takes and what came."""
    kind = _kind(option)
    flag = next((o for o in option.opts if o.startswith("--")), option.name)
    listed = isinstance(v, list)
    joined = listed and not option.multiple and kind in (str, None)
    values = v if listed and (option.multiple or joined) else [v]
    for x in values:
        problem = _problem(x, kind, option)
        if problem:
            _refuse(f"{file}: key {key!r} {problem} (option {flag}); got "
                    f"{'{...}' if isinstance(x, Mapping) else _toml(x)}, {_kind_name(x)}")
    if joined:
        return ",".join(str(x) for x in v)
    return values if option.multiple else v


def _problem(x: Any, kind: type | None, option: Any) -> str | None:
    """What is wrong with ``x`` as a value of an option of type ``kind``, or None."""
    if isinstance(x, list | Mapping):
        return "must be a single value, not a list or table"
    if kind is bool:
        return None if isinstance(x, bool) else "must be true or false"
    if isinstance(x, bool):
        return f"must be {_WHAT.get(kind, 'a value')}, not a boolean" if kind else None
    if kind in (int, float):
        try:
            number = kind(x) if isinstance(x, str) else x
        except ValueError:
            return f"must be {_WHAT[kind]}"
        if not isinstance(number, int | float) or (kind is int and not isinstance(number, int)):
            return f"must be {_WHAT[kind]}"
        lo, hi = getattr(option, "min", None), getattr(option, "max", None)
        if lo is not None and number < lo:
            return f"must be at least {lo}"
        if hi is not None and number > hi:
            return f"must be at most {hi}"
        return None
    if kind is Path and not isinstance(x, str):
        return f"must be {_WHAT[Path]}"
    if kind is str and not isinstance(x, str | int | float):
        return f"must be {_WHAT[str]}"
    return None


def _kind_name(x: Any) -> str:
    for t, name in ((bool, "a boolean"), (int, "an integer"), (float, "a number"),
                    (str, "a string"), (list, "a list"), (Mapping, "a table")):
        if isinstance(x, t):
            return name
    return type(x).__name__


def write_options(path: Path, ctx: typer.Context) -> Path:
    """The command's resolved options as TOML (by flag name); None and run-only ones left out."""
    names = {p.name: _key(p) for p in ctx.command.params}
    lines = []
    for name, v in ctx.params.items():
        if v is None or name in NOT_IN_FILES:
            continue
        lines.append(f"{names.get(name, name)} = {_toml(v)}")
    text = "\n".join(lines) + "\n"
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
