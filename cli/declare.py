"""Turn declared options (``polydiff.plugins.options.Field``) into a typer command, the way pytest builds options
from ``pytest_addoption``: the command's signature is synthesised from the declarations, so every domain's
``--help`` shows its own options with their types, ranges, choices and defaults, and no domain writes CLI code."""
from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from polydiff.plugins.errors import UsageError
from polydiff.plugins.options import Field, base_type, check_value

from .errors import DEBUG

try:  # newer typer versions vendor click
    from typer._click.exceptions import UsageError as ClickUsageError
except ImportError:
    from click.exceptions import UsageError as ClickUsageError


def _cli_type(f: Field) -> Any:
    """The type typer parses for a field: values that a declared ``parse`` reads stay strings."""
    tp, _ = base_type(f.type)
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        inner = typing.get_args(tp)[0] if typing.get_args(tp) else str
        return list[inner if inner in (str, int, float, Path) and f.spec.parse is None else str]
    if tp in (bool, int, float, Path, str) and (f.spec.parse is None or tp is bool):
        return tp
    return str


def _help(f: Field) -> str:
    text = f.spec.help
    if f.spec.choices:
        text += f" One of: {', '.join(map(str, f.spec.choices))}."
    return text


def parameter(f: Field, *, argument: bool = False) -> inspect.Parameter:
    """The ``inspect.Parameter`` (with its typer Option/Argument) of one declared field."""
    tp = _cli_type(f)
    has_default = f.default is not None and f.default != []
    if argument or f.spec.argument:
        info = typer.Argument(help=_help(f), show_default=has_default)
    else:
        extra = {k: v for k, v in (("min", f.spec.min), ("max", f.spec.max)) if v is not None}
        if tp is bool and len(f.flags) == 1 and not f.flags[0].startswith("--no-") and f.default is True:
            flags = (f"{f.flags[0]}/--no-{f.flags[0][2:]}",)
        else:
            flags = f.flags
        info = typer.Option(*flags, help=_help(f), show_default=has_default, hidden=f.spec.hidden, **extra)
    annotation = Annotated[tp if tp is bool else Optional[tp], info]
    default = f.default if tp is bool else (f.default if has_default else None)
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def command(name: str, help: str, fields: list[Field], action: Callable[[dict[str, Any]], None], *,
            argument: str | None = None) -> Callable[..., None]:
    """A function typer can register as command ``name``: its parameters are ``fields`` (``argument`` positional);
    when called, ``action`` receives the values by field name, each checked by its declaration."""
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"command {name!r} declares option(s) {', '.join(dup)} twice")
    ordered = sorted(fields, key=lambda f: not (f.name == argument or f.spec.argument))

    def run(**values: Any) -> None:
        try:
            action({f.name: check_value(f, values[f.name]) if f.name in values else f.default for f in fields})
        except UsageError as exc:  # exit 2 however the app is invoked (console script, CliRunner)
            if DEBUG["on"]:
                raise
            raise ClickUsageError(str(exc)) from exc

    run.__name__ = name.replace("-", "_")
    run.__doc__ = help
    run.__signature__ = inspect.Signature([parameter(f, argument=f.name == argument) for f in ordered])
    return run
