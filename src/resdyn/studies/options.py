"""A study option's checks, declared once on its config field: the type from the annotation,
the bounds from :func:`bounded`.

Every size a user can type is bounded, so a mistyped ``--depths 1000000000000`` or
``--batch-size 0`` is one line before the run folder is touched, not a folder claimed by a run
that fills the disk, runs forever or fails every task. The maxima are stated where they are
declared, with the reason.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Demo:
    ...     images: int = bounded(5, 1, 1000)
    ...     eps: tuple[float, ...] = bounded((0.1,), above=0)
    ...     def __post_init__(self):
    ...         check_config(self)
    >>> Demo(images=0)
    Traceback (most recent call last):
        ...
    ValueError: images must be at least 1; got 0
    >>> Demo(images="3")
    Traceback (most recent call last):
        ...
    TypeError: images must be an integer; got '3' (a str)
    >>> Demo(eps=0.1)
    Traceback (most recent call last):
        ...
    TypeError: eps must be a tuple of numbers, e.g. eps=(0.1,); got 0.1 (a float)
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any

#: The most images a study analyses (each image is a task or more; the largest test split
#: resdyn loads, CIFAR-10's, holds 10 000).
MAX_IMAGES = 100_000
#: The most blocks per section of the depth sweep's networks (paper 002 goes to 100).
MAX_DEPTH = 500
#: The most training epochs (a day of digits training at the default sizes is about 3 000).
MAX_EPOCHS = 10_000
#: The largest training batch (also the largest data set resdyn trains on holds fewer images).
MAX_BATCH = 65_536
#: The widest matrix a dense path may form: 32768² float64 numbers are 8 GiB.
MAX_DENSE = 32_768
#: The most values asked of an iterative solver per block (ARPACK, QR exponents).
MAX_K = 10_000
#: The most blocks and the widest layer of paper 004's small networks (width 8 and 8 blocks by
#: default).
MAX_BLOCKS, MAX_WIDTH = 1_000, 4_096
#: The finest grid of a decision-boundary figure (2000² points).
MAX_GRID = 2_000
#: The largest seed: every random generator resdyn seeds takes it.
MAX_SEED = 2**32 - 1


def bounded(default: Any, lo: float | None = None, hi: float | None = None, *,
            above: float | None = None) -> Any:
    """A config field with ``default`` and its bounds (each item's, for a tuple):
    ``lo <= value <= hi``, ``value > above``."""
    return dataclasses.field(default=default, metadata={"lo": lo, "hi": hi, "above": above})


def check_config(config: Any) -> None:
    """Check every field of a config dataclass against its annotation and bounds.

    Raises:
        TypeError: a value of another type (names the field, the type expected and what came).
        ValueError: a number out of its bounds, or not finite (names the field and the bound).
    """
    hints = _hints(type(config))  # type: ignore[arg-type]  # a class is hashable
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        _check_type(f.name, value, hints.get(f.name, Any))
        for item in _numbers(value):
            _check_bounds(f.name, item, f.metadata)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):  # a user's config with annotations that do not resolve
        return {}


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [value]
    if isinstance(value, tuple | list):
        return [n for v in value for n in _numbers(v)]
    return []


def _check_bounds(name: str, value: float, bounds: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    lo, hi, above = bounds.get("lo"), bounds.get("hi"), bounds.get("above")
    if lo is not None and value < lo:
        raise ValueError(f"{name} must be at least {lo}; got {value!r}")
    if hi is not None and value > hi:
        raise ValueError(f"{name} must be at most {hi:_} (a stated maximum of resdyn, see "
                         f"resdyn.studies.options); got {value:_}".replace("_", " "))
    if above is not None and not value > above:
        raise ValueError(f"{name} must be greater than {above}; got {value!r}")


def _check_type(name: str, value: Any, hint: Any) -> None:
    if not _fits(value, hint):
        example = _example(hint)
        raise TypeError(f"{name} must be {_describe(hint)}"
                        + (f", e.g. {name}={example}" if example else "")
                        + f"; got {value!r} (a {type(value).__name__})")


def _fits(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(args) == len(value) and all(_fits(v, a) for v, a in zip(value, args,
                                                                            strict=True))
    return True  # a type this check does not know: the study's own checks judge it


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    names = {type(None): "None", bool: "True or False", int: "an integer", float: "a number",
             str: "a string"}
    if hint in names:
        return names[hint]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        inner = _describe(args[0]).removeprefix("an ").removeprefix("a ")
        return f"a tuple of {inner}s"
    if origin is tuple:
        return f"a tuple of {len(args)} values"
    return str(hint)


def _example(hint: Any) -> str:
    """A value of ``hint`` to show, for a tuple (where a single value is the usual slip)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return next((e for e in map(_example, args) if e), "")
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return {float: "(0.1,)", int: "(2, 4)", str: '("a", "b")'}.get(args[0], "")
    return ""
