"""Hook specifications of polydiff (pluggy project name ``polydiff``).

A plugin is a module or object with functions marked ``@polydiff.plugins.hookimpl`` named after these specs; it is
found through the entry-point group ``polydiff``. ``register_*`` hooks receive a ``register`` callable and call it
once per thing they provide, so the manager knows which plugin registered what. Hooks run at start-up and at the
edges of a run (per logged step, at the end), never inside a sampler's loop.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("polydiff")
hookimpl = pluggy.HookimplMarker("polydiff")


@hookspec
def polydiff_register_domains(register: Callable[[Any], None]) -> None:
    """Register data domains: call ``register(domain)`` with a ``polydiff.plugins.domain.Domain`` for each."""


@hookspec
def polydiff_register_samplers(register: Callable[[str, Callable], None]) -> None:
    """Register samplers: ``register(name, fn)`` with fn of the core signature
    ``fn(denoiser, x, sigmas, *, cond=None, noise=None, callback=None, generator=None) -> x``."""


@hookspec
def polydiff_register_schedules(register: Callable[[str, type], None]) -> None:
    """Register noise schedules: ``register(name, cls)`` with cls a ``polydiff.core.schedules.Schedule`` subclass."""


@hookspec
def polydiff_register_guidance(register: Callable[[str, Callable], None]) -> None:
    """Register guidance methods: ``register(name, fn)`` with ``fn(denoiser, scale, uncond) -> denoiser`` (as
    ``polydiff.core.guidance.cfg``). ``sample --guidance NAME`` applies it, in every domain, whenever a condition is
    given, with ``uncond`` the domain's null condition and ``scale`` from ``--guidance-scale``."""


@hookspec
def polydiff_register_datasets(register: Callable[[str, str, Any], None]) -> None:
    """Register data sets for a domain: ``register(domain_name, dataset_name, factory)``; the factory's form is the
    domain's (the toy domain takes ``factory(n, generator) -> (points [n, 2], labels [n])`` with ``num_classes``)."""


@hookspec
def polydiff_cli(app: Any) -> None:
    """Add commands or sub-apps to the root typer ``app``: for tools beyond a domain (a domain's commands are built
    from its declarations and need no CLI code)."""


@hookspec
def polydiff_train_step_end(run_dir: Path, step: int, loss: float) -> None:
    """Observe training: called at each logged step (every ``log_every`` steps) with the mean loss since the last,
    averaged over ranks under ``torchrun`` and called on rank 0 only."""


@hookspec
def polydiff_train_end(run_dir: Path, summary: dict) -> None:
    """Observe the end of a training run."""


@hookspec
def polydiff_sample_end(domain: str, out_dir: Path, files: list) -> None:
    """Observe the end of a ``sample`` command: the files it wrote."""
