"""The domain contract: everything a domain supplies to polydiff, in one dataclass.

A third-party author reads this file and ``domains/toy/`` and knows the whole contract. A domain plugin returns a
``Domain`` from its ``polydiff_register_domains`` hook; the shared training loop, the CLI (``polydiff <name> train |
sample | evaluate | info``), ``polydiff demo`` and ``examples/cross_domain.py`` then work with it unchanged.

Configuration is one nested, JSON/TOML-able dict, the same shape for every domain::

    {"data": {...}, "network": {...},                      # the domain's own keys
     "diffusion": {"parameterization": "edm", "sigma_data": 0.5, "schedule": "edm", "schedule_args": {},
                   "objective": "dsm" | "flow", "weighting": "edm", "coupling": "independent", "cond_dropout": 0.1},
     "train": {... polydiff.core.training.TrainConfig ...},
     "sample": {"sampler": "heun", "steps": 20, "grid": "karras", "sigma_min": 0.002, "sigma_max": 80.0,
                "guidance_scale": 1.0}}

``presets`` holds at least ``quick`` (minutes on a 2-core CPU) and ``full``; ``--config FILE.toml`` overrides keys.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polydiff.core.noise import NoiseFn

Tensor = torch.Tensor


@dataclass
class Batch:
    """A training batch: clean data ``x0``, its condition, and for ragged data the sample of each row.

    ``group[i]`` is the index of the sample that row i belongs to (atom -> molecule); None when rows are samples.
    """

    x0: Tensor
    cond: Any = None
    group: Tensor | None = None

    def to(self, device: torch.device | str) -> "Batch":
        def move(v: Any) -> Any:
            if torch.is_tensor(v):
                return v.to(device, non_blocking=True)
            if isinstance(v, dict):
                return {k: move(u) for k, u in v.items()}
            return v.to(device) if hasattr(v, "to") else v

        return Batch(move(self.x0), move(self.cond), move(self.group))


@dataclass
class Domain:
    """What a domain supplies. Only the first block is required; the rest have working defaults."""

    name: str
    """Short name: the CLI sub-app (``polydiff <name> ...``) and the key in the registry."""
    summary: str
    """One line for ``polydiff --help`` and ``polydiff plugins``."""
    presets: dict[str, dict[str, Any]]
    """Full configurations by name; at least ``quick`` and ``full`` (see the module docstring for the shape)."""
    build_dataset: Callable[[dict[str, Any], str], Any]
    """``(data_config, split) -> dataset`` for split ``train``/``val``/``test``: a Tensor of examples or a Dataset."""
    build_network: Callable[[dict[str, Any]], nn.Module]
    """``(full_config) -> F(x_in, c_noise, cond)``; c_noise has one entry per leading row of x_in."""
    generate: Callable[..., Any]
    """``(run, n, *, sampler, steps, generator, **options) -> samples``: draw n samples with ``run.sample``."""
    save_samples: Callable[[Any, Path, dict[str, Any]], list[Path]]
    """``(samples, out_dir, info) -> files``: write the domain's file formats and a PNG preview; ``info`` is stated
    in a JSON next to them (sampler, steps, normalisation, ...)."""
    evaluate: Callable[..., dict[str, float]]
    """``(run, *, sampler, steps, n, generator, **options) -> metrics``: the domain's own metrics on held-out data."""
    primary_metric: str
    """The metric ``examples/cross_domain.py`` tabulates; ``lower_is_better`` says which way is good."""
    lower_is_better: bool = True
    collate: Callable[[list[Any]], Batch] | None = None
    """Items of a Dataset -> Batch; None when ``build_dataset`` returns a Tensor (batches are its rows)."""
    noise: Callable[[Batch], NoiseFn] | None = None
    """Noise for a batch (e.g. zero centre of mass per molecule); None means i.i.d. Gaussian."""
    drop_cond: Callable[[Any, float, torch.Generator], Any] | None = None
    """Replace conditions by the null condition with probability p (classifier-free guidance training)."""
    null_cond: Callable[[Any], Any] | None = None
    """The null (unconditional) version of a condition, for classifier-free guidance at sampling time."""
    loss: Callable[[nn.Module, Batch, torch.Generator, dict[str, Any]], Tensor] | None = None
    """Override of the default denoising / flow-matching loss built from the ``diffusion`` config."""
    fit_data: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    """``(data_config) -> facts``: what is fitted on the training data and needed to sample (a normalisation, class
    names), stored as the run config's ``fitted`` section before training so a shipped run samples without its data."""
    cli: Callable[[Any], None] | None = None
    """``(typer_app) -> None``: add domain-specific commands; a command it defines replaces the generic one."""
    shipped_run: Path | None = None
    """A run folder shipped inside the package (config.json + checkpoint/), used when ``--run`` is not given."""
    demo: dict[str, Any] = field(default_factory=dict)
    """Keyword overrides for ``generate`` in ``polydiff demo`` (e.g. ``{"n": 1}`` when one sample takes minutes)."""
    sweep: dict[str, Any] = field(default_factory=dict)
    """Keyword overrides for ``evaluate`` in sampler sweeps (``examples/cross_domain.py``), e.g. text3d scores its 2D
    prior's images there: the part of it that a sampler drives."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Anything else the domain wants to expose to plugins (metric functions, file readers)."""

    def preset(self, name: str) -> dict[str, Any]:
        if name not in self.presets:
            raise ValueError(f"domain {self.name!r} has no preset {name!r}; presets: {', '.join(self.presets)}")
        return self.presets[name]
