"""Lazy references: ``lazy("package.module:name")`` is called like the object it names, importing it on first use.

A domain's declaration (its ``Domain``) is read at start-up to build the CLI; the functions it points to need torch
and more. Declaring them as lazy references keeps ``polydiff --help`` free of those imports: the module is imported
only when a command actually calls one.
"""
from __future__ import annotations

import importlib
from typing import Any


class Lazy:
    """A callable standing for ``module:attr``; resolved (once) on the first call or ``resolve()``."""

    __slots__ = ("path", "_target")

    def __init__(self, path: str) -> None:
        if ":" not in path:
            raise ValueError(f"a lazy reference is 'package.module:name', got {path!r}")
        self.path = path
        self._target: Any = None

    def resolve(self) -> Any:
        """The named object (imported now if needed)."""
        if self._target is None:
            module, _, attr = self.path.partition(":")
            target: Any = importlib.import_module(module)
            for part in attr.split("."):
                target = getattr(target, part)
            self._target = target
        return self._target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"lazy({self.path!r})"


def lazy(path: str) -> Lazy:
    """A lazy reference to ``package.module:name`` (see the module docstring)."""
    return Lazy(path)


def resolve(obj: Any) -> Any:
    """``obj`` itself, or the object a lazy reference names."""
    return obj.resolve() if isinstance(obj, Lazy) else obj
