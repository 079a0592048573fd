"""``--config FILE.toml`` for the study commands: options from a file, flags win.

A file holds the command's options by name (``images = 20``, ``top-k`` or ``top_k``, lists for
comma-separated options: ``depths = [2, 4, 8]``). Every run writes the options it resolved to
``options.toml`` in its folder, so ``--config DIR/options.toml`` repeats it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
        raise typer.BadParameter(f"cannot read {value}: {e.strerror}", ctx, param) from None
    except tomllib.TOMLDecodeError as e:
        raise typer.BadParameter(f"{value} is not valid TOML: {e}", ctx, param) from None
    params = _options(ctx)
    options: dict[str, Any] = {}
    for key, v in raw.items():
        if key not in params:
            valid = ", ".join(sorted({_key(p) for p in params.values()}))
            raise typer.BadParameter(f"{value}: unknown option {key!r}; this command takes "
                                     f"{valid}", ctx, param)
        options[params[key].name] = _value(v, params[key])
    ctx.default_map = {**(ctx.default_map or {}), **options}
    return value


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


def _value(v: Any, param: Any) -> Any:
    """A TOML value as the option takes it: lists joined with commas for one-string options."""
    if isinstance(v, list) and not param.multiple:
        return ",".join(str(x) for x in v)
    if isinstance(v, Mapping):
        raise typer.BadParameter(f"option {param.name!r}: a table is not an option value")
    return v


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
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if v != v else ("inf" if v > 0 else "-inf"))
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    text = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
