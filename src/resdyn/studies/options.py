"""A study's options, declared once, on its config fields: type (the annotation), bounds,
choices, help and flag (:func:`option`). The study commands, the option files
(``--config FILE.toml``, ``options.toml``) and the checks of every value are made from them.

Every size a user can type is bounded, so a mistyped ``--depths 1000000000000`` or
``--batch-size 0`` is one line before the run folder is touched, not a folder claimed by a run
that fills the disk, runs forever or fails every task. The maxima are stated where they are
declared, with the reason.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... @options_class
    ... class Demo:
    ...     images: int = option(5, 1, 1000, short="-n", help="test images")
    ...     eps: tuple[float, ...] = option((0.1,), above=0, help="levels ε")
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
    >>> f = {f.name: f for f in cli_fields(Demo)}
    >>> from_text(Demo, f["eps"], "0.1, 0.05", "--eps"), from_file(Demo, f["eps"], [1], "eps")
    ((0.1, 0.05), (1.0,))
    >>> from_text(Demo, f["images"], "many", "--images")
    Traceback (most recent call last):
        ...
    ValueError: --images must be an integer; got 'many'
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING
from typing import Any, TypeVar

from ..spectra.api import SINGULAR_METHOD_NAMES

T = TypeVar("T")

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

#: Help shared by the studies' options of one meaning.
IMAGES_HELP = "test images: the first N of a permutation seeded by --seed"
SINGULAR_METHOD_HELP = "singular values: " + " | ".join(SINGULAR_METHOD_NAMES)
TOP_K_HELP = "only the k largest singular values (default: all)"


def option(default: Any = MISSING, lo: float | None = None, hi: float | None = None, *,
           above: float | None = None, help: str = "", flag: str | None = None,
           old: tuple[str, ...] = (), short: str | None = None,
           choices: tuple[str, ...] | None = None, none: str | None = None,
           parse: Callable[[Any], Any] | None = None, multiple: bool = False,
           cli: bool = True, filed: bool = True) -> Any:
    """A config field and everything its option needs, declared once.

    Args:
        default: the value when not given (none: a required option).
        lo, hi, above: bounds, ``lo <= value <= hi`` and ``value > above`` (each item's, for a
            tuple).
        help: what it means; the command's help and the config's documentation.
        flag: its long flag and key in option files (default: the field name, ``_`` as ``-``);
            ``old``: former flags, still accepted; ``short``: e.g. ``-n``.
        choices: the values it may take (each item's, for a tuple).
        none: the word that means None (``all``) on the command line.
        parse: text (or, with ``multiple``, the texts of a repeated flag) to value, where the
            annotation does not say how.
        cli: False for a field the study fills in itself (not an option).
        filed: False for an option that says how to run, not what (``--fresh``): never read
            from an option file nor written to one.
    """
    meta = {"lo": lo, "hi": hi, "above": above, "help": help, "flag": flag, "old": old,
            "short": short, "choices": choices, "none": none, "parse": parse,
            "multiple": multiple, "cli": cli, "filed": filed}
    return dataclasses.field(default=default, metadata=meta)


def options_class(cls: T) -> T:
    """Make ``cls``, a class of options under ``@dataclass(frozen=True)``, check every field
    against its annotation, bounds and choices on construction (before its own
    ``__post_init__``)."""
    own = cls.__dict__.get("__post_init__")

    def __post_init__(self: Any) -> None:
        check_config(self)
        if own is not None:
            own(self)

    cls.__post_init__ = __post_init__  # type: ignore[attr-defined]
    return cls


def flag(f: dataclasses.Field) -> str:
    """A field's long flag without the dashes (its key in option files)."""
    return f.metadata.get("flag") or f.name.replace("_", "-")


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of an options class a user sets (not those the study fills in)."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


def hint(cls: type, f: dataclasses.Field) -> Any:
    """A field's annotation, resolved."""
    return _hints(cls).get(f.name, Any)


def from_text(cls: type, f: dataclasses.Field, text: Any, name: str) -> Any:
    """A value typed on the command line (or given in an option file as text) as the field
    takes it: comma-separated items for a tuple, the ``none`` word as None; checked.

    Raises:
        ValueError: text that is not of the field's type, or a value out of its bounds (names
            ``name``, the flag or key given).
    """
    meta = f.metadata
    if meta.get("parse") is not None:
        value = meta["parse"](text)
    elif isinstance(text, str) and meta.get("none") is not None and text.strip() == meta["none"]:
        value = None
    else:
        value = _typed(required_type(hint(cls, f)), text, name)
    check_value(name, value, hint(cls, f), meta)
    return value


def from_file(cls: type, f: dataclasses.Field, value: Any, name: str) -> Any:
    """A value of an option file (TOML: a number, true/false, a string, a list) as the field
    takes it; a string is read as the command line's text."""
    if isinstance(value, str) or f.metadata.get("parse") is not None:
        return from_text(cls, f, value, name)
    target = required_type(hint(cls, f))
    if isinstance(value, list):
        if typing.get_origin(target) is not tuple:
            raise ValueError(f"{name} must be a single value, not a list; got {value!r}")
        value = tuple(float(v) if item_type(target) is float and type(v) is int else v
                      for v in value)
    elif target is float and type(value) is int:
        value = float(value)
    check_value(name, value, hint(cls, f), f.metadata)
    return value


def to_file(f: dataclasses.Field, value: Any) -> Any:
    """A field's value as an option file holds it (None: left out)."""
    if f.metadata.get("parse") is not None or value is None:
        return None
    return list(value) if isinstance(value, tuple) else value


def required_type(t: Any) -> Any:
    """``X`` of ``X | None``."""
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(t) if a is not type(None)]
        return rest[0] if len(rest) == 1 else t
    return t


def item_type(t: Any) -> Any:
    """The items' type of a tuple annotation; ``t`` itself for another."""
    args = typing.get_args(t)
    return args[0] if typing.get_origin(t) is tuple and args else t


def _typed(t: Any, text: Any, name: str) -> Any:
    if typing.get_origin(t) is tuple:
        items = [s.strip() for s in str(text).split(",") if s.strip()]
        if not items:
            raise ValueError(f"{name}: give at least one value; got {text!r}")
        try:
            return tuple(_typed(item_type(t), s, name) for s in items)
        except ValueError:
            what = _describe(item_type(t)).removeprefix("an ").removeprefix("a ")
            raise ValueError(f"{name} must be comma-separated {what}s; got {text!r}") from None
    if t in (int, float):
        try:
            return t(text)
        except ValueError:
            raise ValueError(f"{name} must be {_describe(t)}; got {text!r}") from None
    return text


def check_config(config: Any) -> None:
    """Check every field of a config dataclass against its annotation, bounds and choices.

    Raises:
        TypeError: a value of another type (names the field, the type expected and what came).
        ValueError: a number out of its bounds, or not finite, or a value not among the
            choices (names the field and the bound).
    """
    hints = _hints(type(config))  # type: ignore[arg-type]  # a class is hashable
    for f in dataclasses.fields(config):
        check_value(f.name, getattr(config, f.name), hints.get(f.name, Any), f.metadata)


def check_value(name: str, value: Any, hint: Any, meta: Any) -> None:
    """One value against its annotation, bounds and choices; errors name it ``name``."""
    _check_type(name, value, hint)
    for item in _numbers(value):
        _check_bounds(name, item, meta)
    choices = meta.get("choices")
    if choices and value is not None:
        wrong = [v for v in (value if isinstance(value, tuple) else (value,)) if v not in choices]
        if wrong or value == ():
            raise ValueError(f"{name}: unknown {wrong[0] if wrong else value!r}; valid: "
                             f"{', '.join(map(str, choices))}")


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


#: Paper 002's perturbation levels, of the identity study and its depth sweep.
EPS_OPTION = option((0.1,), above=0, help="perturbation levels ε of the stopping rule "
                    "L = ceil(d_scaled / ε), comma-separated; the first is the one the claims use")
