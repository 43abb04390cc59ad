"""The plugin manager: loads plugins from the entry-point group ``polydiff`` and keeps the registries.

Each plugin is loaded and registered on its own: one that raises is reported by name in one line and the others keep
working. ``POLYDIFF_DISABLE_PLUGINS=a,b`` blocks plugins by entry-point name. A name registered twice is refused with
an error naming both plugins.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from polydiff.core import samplers as core_samplers
from polydiff.core import schedules as core_schedules

from . import hookspecs

GROUP = "polydiff"
DISABLE_ENV = "POLYDIFF_DISABLE_PLUGINS"


@dataclass
class PluginInfo:
    """What the manager knows of one plugin."""

    name: str
    module: str
    distribution: str
    version: str
    builtin: bool
    provides: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    disabled: bool = False


class PluginManager:
    """Loads plugins once and holds what they registered: domains, samplers, schedules, guidance."""

    KINDS = ("domains", "samplers", "schedules", "guidance", "datasets")

    def __init__(self, load_entry_points: bool = True, extra: dict[str, Any] | None = None) -> None:
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.registry: dict[str, dict[str, Any]] = {k: {} for k in self.KINDS}
        self.owner: dict[tuple[str, str], str] = {}
        for name in core_samplers.BUILTIN:
            self.registry["samplers"][name] = core_samplers.SAMPLERS[name]
            self.owner[("samplers", name)] = "polydiff.core"
        disabled = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
        if load_entry_points:
            for ep in sorted(entry_points(group=GROUP), key=lambda e: (e.dist.name != "polydiff" if e.dist else True, e.name)):
                dist = ep.dist.name if ep.dist else "?"
                info = PluginInfo(ep.name, ep.value, dist, ep.dist.version if ep.dist else "?", dist == "polydiff")
                self.plugins[ep.name] = info
                if ep.name in disabled:
                    info.disabled = True
                    continue
                try:
                    obj = ep.load()
                except Exception as exc:  # a broken plugin must not take the others down
                    info.error = f"failed to load: {type(exc).__name__}: {exc}"
                    continue
                self._add(ep.name, obj, info)
        for name, obj in (extra or {}).items():
            info = PluginInfo(name, getattr(obj, "__name__", repr(obj)), "(in process)", "", False)
            self.plugins[name] = info
            if name in disabled:
                info.disabled = True
                continue
            self._add(name, obj, info)

    def _add(self, name: str, obj: Any, info: PluginInfo) -> None:
        try:
            self.pm.register(obj, name=name)
        except Exception as exc:
            info.error = f"failed to register: {type(exc).__name__}: {exc}"
            return
        for kind in self.KINDS:
            hook = getattr(self.pm.hook, f"polydiff_register_{kind}")
            impls = [i for i in hook.get_hookimpls() if i.plugin_name == name]
            for impl in impls:
                try:
                    impl.function(register=self._registrar(kind, name, info))
                except Exception as exc:
                    info.error = f"failed while registering {kind}: {type(exc).__name__}: {exc}"

    def _registrar(self, kind: str, plugin: str, info: PluginInfo) -> Callable[..., None]:
        def register(*args: Any) -> None:
            if kind == "domains":
                (obj,) = args
                key = obj.name
            elif kind == "datasets":
                domain, dataset, obj = args
                key = f"{domain}:{dataset}"
            else:
                key, obj = args
            previous = self.owner.get((kind, key))
            if previous is not None and previous != plugin:
                raise ValueError(f"{kind[:-1]} {key!r} is registered by both {previous!r} and {plugin!r}")
            self.registry[kind][key] = obj
            self.owner[(kind, key)] = plugin
            info.provides.setdefault(kind, []).append(key)
            if kind == "samplers":
                core_samplers.SAMPLERS[key] = obj
            elif kind == "schedules":
                core_schedules.SCHEDULES[key] = obj

        return register

    # ---- queries ---------------------------------------------------------------------------------------------
    @property
    def domains(self) -> dict[str, Any]:
        return self.registry["domains"]

    def datasets(self, domain: str) -> dict[str, Any]:
        """Data sets that plugins registered for ``domain``, by name."""
        prefix = f"{domain}:"
        return {k[len(prefix):]: v for k, v in self.registry["datasets"].items() if k.startswith(prefix)}

    def domain(self, name: str) -> Any:
        """The registered domain ``name``, or a clear error listing those that are."""
        if name not in self.domains:
            known = ", ".join(sorted(self.domains)) or "none"
            raise KeyError(f"no domain {name!r} is registered (registered: {known}); see `polydiff plugins`")
        return self.domains[name]

    def errors(self) -> list[str]:
        """One line per plugin that failed to load or register."""
        return [f"plugin {p.name!r} ({p.module}) {p.error}" for p in self.plugins.values() if p.error]

    @property
    def hook(self) -> Any:
        return self.pm.hook


_MANAGER: PluginManager | None = None


def get_manager(reload: bool = False) -> PluginManager:
    """The process-wide plugin manager (loaded on first use)."""
    global _MANAGER
    if _MANAGER is None or reload:
        _MANAGER = PluginManager()
    return _MANAGER
