"""Caching a function of a JSON-able config: prepared data sets are built once per process for equal configs."""
from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def by_config(maxsize: int = 4) -> Callable[[Callable[[dict[str, Any]], T]], Callable[[dict[str, Any]], T]]:
    """Decorate ``fn(config) -> value`` so equal configs (compared as canonical JSON) share one result."""

    def wrap(fn: Callable[[dict[str, Any]], T]) -> Callable[[dict[str, Any]], T]:
        @functools.lru_cache(maxsize=maxsize)
        def cached(key: str) -> T:
            return fn(json.loads(key))

        @functools.wraps(fn)
        def call(config: dict[str, Any]) -> T:
            return cached(json.dumps(config, sort_keys=True))

        call.cache_clear = cached.cache_clear
        return call

    return wrap
