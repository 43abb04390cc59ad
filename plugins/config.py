"""Run configurations: one nested dict per run, each section validated against a declared dataclass.

A run config has the sections ``data`` and ``network`` (the domain's own, declared in ``Domain.sections``),
``diffusion`` (``DiffusionSection``), ``train`` (``polydiff.core.training.TrainConfig``) and ``sample``
(``SampleSection`` plus the domain's extra sampling keys), and any further section a domain declares (text3d's
``distill``). ``validate_config`` checks every section when a config is built or loaded: an unknown key names the key,
its section and the known keys; a wrong type names the key and the type expected. Defaults are filled in from the
dataclasses, so what ``config.json`` records is what the run used. The top level also holds ``domain``, ``preset``
and ``fitted`` (facts fitted on the training data, see ``Domain.fit_data``); sections a capability writes
(``distillation``, ``personalized``) are validated when present.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

TOP_LEVEL = ("domain", "preset", "fitted")


@dataclass
class DiffusionSection:
    """How a run is trained and what its network predicts (read by ``runs.build_denoiser`` and ``runs.default_loss``)."""

    parameterization: str = "edm"
    """``edm`` (EDM preconditioning) or what the network predicts: ``eps``, ``x0``, ``v``, ``score``, ``flow``."""
    sigma_data: float = 1.0
    """Standard deviation of the (normalised) data, for EDM preconditioning and weighting; each domain states its own."""
    schedule: str = "edm"
    """Training noise distribution by name (``polydiff info`` lists them); arguments in ``schedule_args``."""
    schedule_args: dict[str, Any] = field(default_factory=dict)
    objective: str = "dsm"
    """``dsm`` (denoising score matching) or ``flow`` (flow matching with ``coupling``)."""
    weighting: str = "edm"
    """Loss weight over sigma: ``edm``, ``eps``, ``x0``, ``v``, ``min_snr``, ``flow``."""
    coupling: str = "independent"
    """Flow matching's pairing of data and noise (``independent``, ``ot``, ...)."""
    cond_dropout: float = 0.0
    """Probability of training on the null condition (classifier-free guidance needs > 0)."""

    def __post_init__(self) -> None:
        if self.objective not in ("dsm", "flow"):
            raise ValueError(f"objective must be 'dsm' or 'flow', not {self.objective!r}")
        if not 0 <= self.cond_dropout < 1:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if self.sigma_data <= 0:
            raise ValueError(f"sigma_data must be positive, got {self.sigma_data}")


@dataclass
class SampleSection:
    """The run's sampling defaults; ``Run.settings`` resolves a command's choices against them once."""

    sampler: str = "heun"
    steps: int = 20
    grid: str = "karras"
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    guidance_scale: float = 1.0
    """Classifier-free guidance scale (1 = none); used when a condition is given."""
    guidance: str = "cfg"
    """The guidance method applied with a condition (``polydiff info`` lists the registered ones)."""
    precision: str = "fp32"
    """``fp32`` or ``bf16``: the network's arithmetic while sampling (autocast; preconditioning stays float32)."""

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', not {self.precision!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")


@dataclass
class DistillationSection:
    """What a distilled run was distilled from (written by ``distill``; absent in trained runs)."""

    distilled_from: str = ""
    method: str = "progressive"
    teacher_sample: dict[str, Any] = field(default_factory=dict)
    teacher_sampler: str = "ddim"
    teacher_grid: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    rounds: int = 0
    round: int = 0
    weighting: str = "snr_trunc"
    guidance_scale_range: list[float] | None = None
    guidance_embedding: dict[str, Any] | None = None


@dataclass
class PersonalizedSection:
    """The classes a personalization added to its base run and how (written by ``personalize``)."""

    classes: list[str] = field(default_factory=list)
    adds: int = 0
    per_class: bool = False
    """Whether NAME was bound to each class the instances carry (classes ``NAME:CLASS``)."""
    base_run: str = ""
    """The base run's folder (absolute), or ``shipped``."""
    base_classes: int = 0
    instances: int = 0
    prior_weight: float = 1.0
    prior_samples: int = 0
    related: str | None = None
    lora_rank: int | None = None
    lora_alpha: float | None = None


@dataclass
class LatentSection:
    """The autoencoder a latent run diffuses in (written by ``train --latent``; ``plugins/latent.py``)."""

    autoencoder: str = ""
    """The autoencoder run folder; a relative path is read against the run folder (an export ships it inside)."""
    shape: list[int] = field(default_factory=list)
    data_shape: list[int] = field(default_factory=list)
    shift: float = 0.0
    scale: float = 1.0
    network: str = "auto"
    """The denoiser over latents: ``auto`` (the domain's ``latent_network``, else its own network when latents have
    the data's shape, else generic), ``domain`` or ``generic``."""
    width: int | None = None
    depth: int = 4

    def __post_init__(self) -> None:
        if self.network not in ("auto", "domain", "generic"):
            raise ValueError(f"network must be auto, domain or generic, not {self.network!r}")
        if self.scale <= 0:
            raise ValueError(f"scale must be positive, got {self.scale}")


@dataclass
class ControlSection:
    """The control branch of a control run (written by ``train-control``; ``plugins/control.py``)."""

    kind: str = ""
    base_run: str = ""
    control_shape: list[int] = field(default_factory=list)
    encoder: str = "vector"
    width: int = 128
    dropout: float = 0.0
    guidance_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.encoder not in ("domain", "vector", "set", "grid"):
            raise ValueError(f"encoder must be domain, vector, set or grid, not {self.encoder!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


OPTIONAL = {"distillation": DistillationSection, "personalized": PersonalizedSection, "latent": LatentSection,
            "control": ControlSection}
"""Sections validated only when present (written by a capability, not by ``train``)."""


def type_name(tp: Any) -> str:
    """A readable name of a type annotation (``int``, ``list of float``, ``str or None``)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin in (list, tuple):
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict or tp is dict:
        return "table"
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in args)
    return "None" if tp is type(None) else getattr(tp, "__name__", str(tp))


def matches(value: Any, tp: Any) -> bool:
    """Whether a JSON/TOML value fits a type annotation (an int fits float; a list fits a tuple)."""
    if tp is Any:
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if tp is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args))
        return all(matches(v, args[0]) for v in value) if args else True
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def section_defaults(schema: type) -> dict[str, Any]:
    """The defaults of a section dataclass as a JSON-ready dict."""
    out = {}
    for f in dataclasses.fields(schema):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return json.loads(json.dumps(out))


def validate_section(name: str, values: Any, schema: type) -> dict[str, Any]:
    """``values`` checked against dataclass ``schema`` and completed with its defaults; ConfigError when invalid."""
    if not isinstance(values, dict):
        raise ConfigError(f"[{name}] must be a table of settings, got {values!r}")
    hints = typing.get_type_hints(schema)
    known = [f.name for f in dataclasses.fields(schema)]
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(f"unknown key {key!r} in [{name}]; known keys: {', '.join(known)}")
        if not matches(value, hints[key]):
            raise ConfigError(f"[{name}] {key} must be {type_name(hints[key])}, got {value!r}")
    out = {**section_defaults(schema), **copy.deepcopy(values)}
    try:
        schema(**{k: tuple(v) if typing.get_origin(hints[k]) is tuple else v for k, v in out.items()})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{name}] {exc}") from None
    return out


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base``."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def sample_schema(extra: type | None) -> type:
    """``SampleSection`` extended with a domain's own sampling keys (audio's ``gl_iters``, ...)."""
    if extra is None:
        return SampleSection
    return dataclasses.make_dataclass(f"SampleSection_{extra.__name__}", [], bases=(extra, SampleSection))


def schemas(sections: dict[str, type]) -> dict[str, type]:
    """Every section's schema for a domain's declared ``sections``."""
    from polydiff.core.training import TrainConfig

    own = {k: v for k, v in sections.items() if k != "sample"}
    return {**own, "diffusion": DiffusionSection, "train": TrainConfig, "sample": sample_schema(sections.get("sample"))}


def validate_config(cfg: dict[str, Any], sections: dict[str, type]) -> dict[str, Any]:
    """The whole config checked section by section (unknown sections are an error too) with defaults filled in."""
    known = schemas(sections)
    for key in cfg:
        if key not in known and key not in TOP_LEVEL and key not in OPTIONAL:
            raise ConfigError(f"unknown section [{key}]; known sections: {', '.join([*known, *OPTIONAL])}")
    out = {k: v for k, v in cfg.items() if k in TOP_LEVEL}
    for name, schema in known.items():
        out[name] = validate_section(name, cfg.get(name, {}), schema)
    for name, schema in OPTIONAL.items():
        if name in cfg:
            out[name] = validate_section(name, cfg[name], schema)
    return out


def fitted(cfg: dict[str, Any], fit_data: Any) -> dict[str, Any]:
    """The run's facts fitted on its training data: its ``fitted`` section, or (a run from before fitted facts were
    stored) ``fit_data(cfg["data"])`` computed again from the data."""
    return cfg["fitted"] if cfg.get("fitted") else fit_data(cfg["data"])


def read_config_file(path: Path) -> dict[str, Any]:
    """A TOML (or JSON) file of config overrides; a missing or unparsable file is a ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text()
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot parse config file {path}: {exc}") from None
