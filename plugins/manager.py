"""The plugin manager: loads plugins from the entry-point group ``polydiff`` and is the one registry.

Samplers, schedules, guidance methods, domains and data sets all live here; the core keeps its built-ins as plain
constants and never reads plugin state. Each plugin is loaded and registered on its own: one that raises is reported
by name in one line and the others keep working. ``POLYDIFF_DISABLE_PLUGINS=a,b`` blocks plugins by entry-point name.
A name registered twice is refused with an error naming both plugins. Observers (``polydiff_train_step_end`` ...) are
called through ``notify``: one that raises is named in one warning and not called again in this process.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import hookspecs
from .errors import OptionError
from .lazy import lazy, resolve

GROUP = "polydiff"
DISABLE_ENV = "POLYDIFF_DISABLE_PLUGINS"
CORE = "polydiff.core"


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


BUILTIN_SAMPLERS = ("euler", "heun", "ddim", "ddpm", "euler_maruyama", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde",
                    "dpmpp_3m_sde", "langevin_pc")
BUILTIN_SCHEDULES = {"linear": "LinearBeta", "cosine": "Cosine", "sigmoid": "Sigmoid", "edm": "EDM",
                     "flow": "RectifiedFlow"}
BUILTIN_GUIDANCE = {"cfg": "polydiff.core.guidance:cfg",
                    "distilled": "polydiff.core.distillation:scale_conditioned"}


def _builtins() -> dict[str, dict[str, Any]]:
    """The core's samplers, schedules and guidance methods as lazy references (``polydiff --help`` imports no torch);
    a test checks these names against the core's own tables."""
    return {"samplers": {n: lazy(f"polydiff.core.samplers:{n}") for n in BUILTIN_SAMPLERS},
            "schedules": {n: lazy(f"polydiff.core.schedules:{c}") for n, c in BUILTIN_SCHEDULES.items()},
            "guidance": {n: lazy(path) for n, path in BUILTIN_GUIDANCE.items()}}


class PluginManager:
    """Loads plugins once and holds what they registered: domains, samplers, schedules, guidance, data sets."""

    KINDS = ("domains", "samplers", "schedules", "guidance", "datasets")

    def __init__(self, load_entry_points: bool = True, extra: dict[str, Any] | None = None) -> None:
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.registry: dict[str, dict[str, Any]] = {k: {} for k in self.KINDS}
        self.owner: dict[tuple[str, str], str] = {}
        self.silenced: set[str] = set()
        for kind, items in _builtins().items():
            for name, obj in items.items():
                self.registry[kind][name] = obj
                self.owner[(kind, name)] = CORE
        disabled = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
        if load_entry_points:
            eps = sorted(entry_points(group=GROUP), key=lambda e: (e.dist.name != "polydiff" if e.dist else True, e.name))
            for ep in eps:
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
            for impl in [i for i in hook.get_hookimpls() if i.plugin_name == name]:
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

        return register

    # ---- queries ---------------------------------------------------------------------------------------------
    @property
    def domains(self) -> dict[str, Any]:
        return self.registry["domains"]

    @property
    def samplers(self) -> dict[str, Callable[..., Any]]:
        return self.registry["samplers"]

    @property
    def schedules(self) -> dict[str, type]:
        return self.registry["schedules"]

    @property
    def guidance(self) -> dict[str, Callable[..., Any]]:
        return self.registry["guidance"]

    def _lookup(self, kind: str, name: str, option: str) -> Any:
        if name not in self.registry[kind]:
            known = ", ".join(sorted(self.registry[kind]))
            raise OptionError(option, f"unknown {kind[:-1]} {name!r}; known: {known} (see `polydiff info`)")
        return resolve(self.registry[kind][name])

    def sampler(self, name: str) -> Callable[..., Any]:
        """The sampler function registered as ``name``; a usage error listing the known ones otherwise."""
        return self._lookup("samplers", name, "--sampler")

    def schedule(self, name: str) -> type:
        """The schedule class registered as ``name``."""
        return self._lookup("schedules", name, "diffusion.schedule")

    def guidance_method(self, name: str) -> Callable[..., Any]:
        """The guidance method registered as ``name``: ``fn(denoiser, scale, uncond) -> denoiser``."""
        return self._lookup("guidance", name, "--guidance")

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

    # ---- observers -------------------------------------------------------------------------------------------
    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call every plugin's ``hook_name`` observer; one that raises is named in one warning and silenced."""
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            if impl.plugin_name in self.silenced:
                continue
            try:
                impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
            except Exception as exc:  # an observer must never stop the run it observes
                self.silenced.add(impl.plugin_name)
                print(f"warning: plugin {impl.plugin_name!r} raised in {hook_name}: {type(exc).__name__}: {exc}; "
                      "it is not called again in this run", file=sys.stderr)


_MANAGER: PluginManager | None = None


def get_manager(reload: bool = False) -> PluginManager:
    """The process-wide plugin manager (loaded on first use)."""
    global _MANAGER
    if _MANAGER is None or reload:
        _MANAGER = PluginManager()
    return _MANAGER
