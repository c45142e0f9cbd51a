"""One way to declare and check config.

A config is a frozen dataclass checked in ``__post_init__``. A field that an
operator sets is declared once, with ``setting(default, help)``: its default,
its help text (with units) and, unless ``flag=False``, its command-line flag.
Checks go through ``check`` and the typed helpers ``check_int`` and
``check_range``, which raise ``ConfigError`` naming the field with its
section's dotted prefix (``server.port``, ``pack.workers``, ``train.steps``).

``add_flags`` generates a parser's flags from a config class's settings
(type from the annotation, byte sizes for ``*_bytes`` fields, choices,
metavar); every generated flag defaults to None, so ``flag_values`` returns
just the flags that were given and the dataclass supplies every default.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

from dataengine.errors import ConfigError

__all__ = [
    "add_flags",
    "check",
    "check_int",
    "check_range",
    "flag_values",
    "parse_bytes",
    "setting",
]

_BYTE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def check(ok: bool, field: str, message: str) -> None:
    """Raise ``ConfigError(field, message)`` unless ``ok``."""
    if not ok:
        raise ConfigError(field, message)


def check_int(value: object, field: str, lo: int, hi: int | None = None, note: str = "") -> None:
    """``value`` is an ``int`` (not a bool) within ``[lo, hi]`` (``hi`` None:
    no upper bound); ``note`` adds a word on meaning, e.g. ``0 = cores``."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= lo
    if ok and hi is not None:
        ok = value <= hi  # type: ignore[operator]
    bound = f">= {lo}" if hi is None else f"within [{lo}, {hi}]"
    extra = f" ({note})" if note else ""
    check(ok, field, f"must be an integer {bound}{extra}, got {value!r}")


def check_range(
    value: object,
    field: str,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    finite: bool = False,
    unit: str = "",
) -> None:
    """``value`` is a real number (int or float, not a bool, never NaN)
    within the interval from ``lo`` to ``hi`` (None: unbounded; ``*_open``:
    the bound itself excluded); ``finite`` also refuses infinities. ``unit``
    names the unit in the message."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = not (finite and math.isinf(v))
        ok = ok and (lo is None or (v > lo if lo_open else v >= lo))
        ok = ok and (hi is None or (v < hi if hi_open else v <= hi))
    if lo is not None and hi is not None:
        bound = f"within {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif lo is not None:
        bound = f"{'>' if lo_open else '>='} {lo:g}"
    elif hi is not None:
        bound = f"{'<' if hi_open else '<='} {hi:g}"
    else:
        bound = ""
    what = "a finite number" if finite else "a number"
    words = " ".join(w for w in ("must be", what, bound, unit) if w)
    check(ok, field, f"{words}, got {value!r}")


def parse_bytes(text: str) -> int:
    """``1073741824``, ``512M``, ``4G``, ``1.5GiB`` -> bytes (binary units)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    suffix = t[-1] if t and t[-1] in _BYTE_UNITS else ""
    try:
        value = float(t[: len(t) - len(suffix)]) * _BYTE_UNITS[suffix]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a byte size: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"byte size must be >= 0: {text!r}")
    return int(value)


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    factory: Any = None,
    flag: str | bool = True,
    metavar: str | None = None,
    choices: tuple[Any, ...] | None = None,
    parse: Any = None,
) -> Any:
    """A dataclass field declared once: ``default`` (or ``factory`` for a
    default computed per instance), ``help`` (meaning and unit), and its
    flag: ``True`` derives ``--field-name``, a string names it, ``False``
    gives none. ``parse`` turns the flag's text into the value (default:
    from the annotation)."""
    meta = {"help": help, "flag": flag, "metavar": metavar, "choices": choices, "parse": parse}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _flagged(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("flag", False) is not False]


def _optional_path(text: str) -> Path | None:
    """A path, or None for an empty string (an unset shell variable)."""
    return Path(text) if text else None


def _show(name: str, value: object) -> str:
    if name.endswith("_bytes") and isinstance(value, int) and value:
        for suffix in ("T", "G", "M", "K"):
            if value % _BYTE_UNITS[suffix] == 0:
                return f"{value // _BYTE_UNITS[suffix]}{suffix}"
    return str(value)


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add a flag for each ``setting`` of dataclass ``cls`` that has one.

    The flag's type comes from the field's annotation (``X | None`` as
    ``X``; ``*_bytes`` integers take sizes like ``4G``; ``Path`` fields
    read an empty string as None; ``bool`` fields are switches, with a
    ``--no-`` form when on by default), its help
    from the setting, with the default appended when it is a plain value.
    Every flag defaults to None: not given.
    """
    hints = typing.get_type_hints(cls)
    for f in _flagged(cls):
        meta = f.metadata
        flag = meta["flag"] if isinstance(meta["flag"], str) else "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        if typing.get_origin(kind) in (typing.Union, types.UnionType):
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        text = meta["help"].replace("%", "%%")
        default = f.default
        if default is not dataclasses.MISSING and default is not None and kind is not bool:
            text += f" (default: {_show(f.name, default)})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": text}
        if kind is bool:  # on by default: --X and --no-X; off by default: --X
            kwargs["action"] = argparse.BooleanOptionalAction if default is True else "store_true"
        else:
            parse = meta["parse"]
            if parse is None:
                parse = {int: int, float: float, str: str, Path: _optional_path}.get(kind)
                if kind is int and f.name.endswith("_bytes"):
                    parse = parse_bytes
            if parse is None:
                raise TypeError(f"{cls.__name__}.{f.name}: no flag for a {kind!r} field")
            kwargs["type"] = parse
            if meta["choices"] is not None:
                kwargs["choices"] = meta["choices"]
            else:  # argparse's own, but from the flag rather than the field name
                kwargs["metavar"] = flag.lstrip("-").replace("-", "_").upper()
            if meta["metavar"] is not None:
                kwargs["metavar"] = meta["metavar"]
        parser.add_argument(flag, **kwargs)


def flag_values(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The settings of ``cls`` whose flags were given (``add_flags``), by
    field name: keyword arguments for ``cls``."""
    given = {f.name: getattr(args, f.name, None) for f in _flagged(cls)}
    return {name: value for name, value in given.items() if value is not None}
