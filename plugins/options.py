"""Declarative options: what a command takes, written once as a dataclass and read by the CLI and by Python callers.

A domain declares one dataclass per command (``train``, ``sample``, ``evaluate``) whose fields are made with
``option(...)``: the field's type annotation is the option's type, its default the default, and the metadata its help,
flags, range, choices and parser. The CLI turns each field into ``--field-name`` (with the declared help shown in
``--help``); ``Run.sample(**kwargs)`` and ``Run.evaluate(**kwargs)`` accept the same names. ``build_options`` validates
a dict of values against the dataclass in one place for both, raising ``OptionError`` (exit 2) naming the option::

    @dataclass
    class SampleOptions:
        mask: str | None = option(None, "START:END seconds to regenerate, e.g. 0.3:0.6.", parse=parse_span)
        points: int | None = option(None, "Points per cloud.", min=1)

This module imports nothing heavy: declarations are metadata, so ``--help`` stays fast.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import OptionError

META = "polydiff"


@dataclass(frozen=True)
class Option:
    """How one dataclass field appears as a command option."""

    help: str
    flags: tuple[str, ...] = ()
    """Command-line spellings; default ``--field-name``. Extra spellings are aliases (old names keep working)."""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    parse: Callable[[Any], Any] | None = None
    """Applied to the given value (a string from the CLI); raises ValueError with a message for a bad one. Must
    accept its own output (a Python caller may pass the parsed value)."""
    exists: bool = False
    """A path that must exist (an input file or folder)."""
    argument: bool = False
    """Positional (``polydiff molecules sample CCO``) instead of ``--name``."""
    config: str | None = None
    """For ``train`` options: the config key (``section.key``) the value overrides."""
    hidden: bool = False


def option(default: Any = None, help: str = "", **spec: Any) -> Any:
    """A dataclass field declaring a command option (see ``Option`` for ``flags``, ``min``, ``choices``, ...)."""
    meta = {META: Option(help, **spec)}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Field:
    """One declared option, resolved: its name, type, default and ``Option`` spec."""

    name: str
    type: Any
    default: Any
    spec: Option

    @property
    def flag(self) -> str:
        """The first spelling, used in messages."""
        return self.flags[0]

    @property
    def flags(self) -> tuple[str, ...]:
        return self.spec.flags or (f"--{self.name.replace('_', '-')}",)


def fields_of(cls: type | None) -> list[Field]:
    """The declared options of an options dataclass (None: none)."""
    if cls is None:
        return []
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(META) or Option(help="")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        out.append(Field(f.name, hints[f.name], default, spec))
    return out


def base_type(tp: Any) -> tuple[Any, bool]:
    """(the type without Optional, whether None is allowed)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return tp, False


def _coerce(f: Field, value: Any) -> Any:
    """Convert ``value`` to the field's type (strings from a config or the CLI), or raise OptionError."""
    tp, optional = base_type(f.type)
    if value is None:
        if optional or f.default is None:
            return None
        raise OptionError(f.flag, "a value is required")
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        (inner,) = typing.get_args(tp)[:1] or (str,)
        items = value if isinstance(value, (list, tuple)) else [value]
        return [_scalar(f, inner, v) for v in items]
    return _scalar(f, tp, value)


def _scalar(f: Field, tp: Any, value: Any) -> Any:
    try:
        if tp is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if tp is Path:
            return Path(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError):
        raise OptionError(f.flag, f"expected {getattr(tp, '__name__', tp)}, got {value!r}") from None
    return value


def check_value(f: Field, value: Any) -> Any:
    """Coerce, parse and range-check one value of field ``f``; OptionError naming the option when it is bad."""
    value = _coerce(f, value)
    if value is None:
        return None
    s = f.spec
    if s.parse is not None:
        try:
            value = s.parse(value)
        except (ValueError, TypeError) as exc:
            raise OptionError(f.flag, str(exc)) from None
    for v in value if isinstance(value, list) else [value]:
        if s.choices is not None and v not in s.choices:
            raise OptionError(f.flag, f"{v!r} is not one of {', '.join(map(str, s.choices))}")
        if s.min is not None and isinstance(v, (int, float)) and v < s.min:
            raise OptionError(f.flag, f"must be at least {s.min:g}, got {v}")
        if s.max is not None and isinstance(v, (int, float)) and v > s.max:
            raise OptionError(f.flag, f"must be at most {s.max:g}, got {v}")
        if s.exists and isinstance(v, Path) and not v.exists():
            raise OptionError(f.flag, f"{v} does not exist; give an existing path")
    return value


def build_options(cls: type | None, values: dict[str, Any] | None = None) -> Any:
    """An instance of options dataclass ``cls`` from ``values`` (field names), every value checked; unknown names are
    an error listing the known ones. None for a command that declares no options."""
    values = dict(values or {})
    if cls is None:
        if values:
            raise OptionError(f"--{next(iter(values)).replace('_', '-')}", "this command takes no such option")
        return None
    known = {f.name: f for f in fields_of(cls)}
    unknown = [k for k in values if k not in known]
    if unknown:
        raise OptionError(f"--{unknown[0].replace('_', '-')}",
                          f"unknown option; known: {', '.join(sorted(known)) or 'none'}")
    return cls(**{name: check_value(f, values.get(name, f.default)) for name, f in known.items()})


def as_dict(options: Any) -> dict[str, Any]:
    """JSON-ready values of an options instance (paths as strings), for samples.json and command records."""
    if options is None:
        return {}
    return {k: (str(v) if isinstance(v, Path) else [str(p) if isinstance(p, Path) else p for p in v]
                if isinstance(v, list) else v) for k, v in dataclasses.asdict(options).items()}
