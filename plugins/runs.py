"""Runs: train a domain into a run folder, and load a run folder back as a ready-to-sample denoiser.

A run folder holds ``config.json`` (the full configuration), ``checkpoint/`` (safetensors + JSON, see
``polydiff.core.checkpoint``), ``metrics.jsonl`` and ``loss.png``. The same functions serve the CLI, ``polydiff demo``
and Python scripts.
"""
from __future__ import annotations

import copy
import json
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polydiff.core.denoisers import Denoiser
from polydiff.core.losses import denoising_loss, flow_matching_loss
from polydiff.core.noise import NoiseFn, gaussian
from polydiff.core.samplers import sample as core_sample
from polydiff.core.schedules import Schedule, get_schedule, make_grid
from polydiff.core.checkpoint import load_checkpoint, save_checkpoint
from polydiff.core.training import Trainer, TrainConfig, load_weights

from .domain import Batch, Domain

DEFAULT_DIFFUSION = {"parameterization": "edm", "sigma_data": 1.0, "schedule": "edm", "schedule_args": {},
                     "objective": "dsm", "weighting": "edm", "coupling": "independent", "cond_dropout": 0.0}
DEFAULT_SAMPLE = {"sampler": "heun", "steps": 20, "grid": "karras", "sigma_min": 0.002, "sigma_max": 80.0,
                  "guidance_scale": 1.0}


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base``."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML (or JSON) configuration file with a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot parse config file {path}: {exc}") from None


def resolve_config(domain: Domain, preset: str = "quick", override: dict[str, Any] | None = None) -> dict[str, Any]:
    """A domain's preset with the defaults filled in and ``override`` merged on top."""
    cfg = merge({"diffusion": DEFAULT_DIFFUSION, "sample": DEFAULT_SAMPLE, "train": {}, "data": {}, "network": {}},
                domain.preset(preset))
    cfg = merge(cfg, override or {})
    cfg["domain"], cfg["preset"] = domain.name, preset
    return cfg


def build_schedule(cfg: dict[str, Any]) -> Schedule:
    d = cfg["diffusion"]
    return get_schedule(d["schedule"], **d.get("schedule_args", {}))


def build_denoiser(domain: Domain, cfg: dict[str, Any]) -> Denoiser:
    """The domain's network wrapped with the configured preconditioning."""
    d = cfg["diffusion"]
    return Denoiser(domain.build_network(cfg), parameterization=d["parameterization"], sigma_data=d["sigma_data"])


def default_loss(domain: Domain, cfg: dict[str, Any]):
    """The loss the ``diffusion`` config describes: denoising score matching or flow matching."""
    d = cfg["diffusion"]
    schedule = build_schedule(cfg)

    def loss(model: nn.Module, batch: Any, generator: torch.Generator) -> torch.Tensor:
        if not isinstance(batch, Batch):
            batch = Batch(batch)
        cond = batch.cond
        if d.get("cond_dropout", 0) > 0 and domain.drop_cond is not None and cond is not None:
            cond = domain.drop_cond(cond, d["cond_dropout"], generator)
        if d["objective"] == "flow":
            return flow_matching_loss(model, batch.x0, coupling=d.get("coupling", "independent"), schedule=schedule,
                                      cond=cond, generator=generator)
        noise = domain.noise(batch) if domain.noise is not None else None
        return denoising_loss(model, batch.x0, schedule=schedule, weighting=d["weighting"], sigma_data=d["sigma_data"],
                              cond=cond, group=batch.group, noise=noise, generator=generator)

    if domain.loss is not None:
        return lambda model, batch, generator: domain.loss(model, batch, generator, cfg)
    return loss


def train(domain: Domain, cfg: dict[str, Any], out: Path, *, device: str = "cpu", resume: bool = False,
          hooks: Any = None, stop_after: int | None = None) -> "Run":
    """Train ``domain`` with the resolved config ``cfg`` into the run folder ``out``; returns the trained Run."""
    out = Path(out)
    if domain.fit_data is not None and "fitted" not in cfg:
        cfg = {**cfg, "fitted": domain.fit_data(cfg["data"])}
    torch.manual_seed(cfg["train"].get("seed", 0))
    denoiser = build_denoiser(domain, cfg)
    dataset = domain.build_dataset(cfg["data"], "train")
    tcfg = TrainConfig.from_dict(cfg["train"])
    step_end = (lambda step, loss: hooks.polydiff_train_step_end(run_dir=out, step=step, loss=loss)) if hooks else None
    run_end = (lambda summary: hooks.polydiff_train_end(run_dir=out, summary=summary)) if hooks else None
    trainer = Trainer(denoiser, default_loss(domain, cfg), dataset, out, tcfg, collate=domain.collate, device=device,
                      run_config=cfg, on_step_end=step_end, on_run_end=run_end, stop_after=stop_after)
    ema = trainer.fit(resume=resume)
    return Run(domain, cfg, ema.eval(), out, torch.device(device))


EXPORT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def export_run(run_dir: Path, out: Path, dtype: str = "float16") -> Path:
    """Write the shippable form of a run into ``out``: its config, the EMA weights alone cast to ``dtype`` (no optimizer
    state, a quarter of the size in float16), and its loss plot, metrics and the commands that trained it."""
    run_dir, out = Path(run_dir), Path(out)
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(EXPORT_DTYPES)}")
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.json); pass the --out of a `train`")
    if out.resolve() == run_dir.resolve():
        raise ValueError("export into a new folder, not the run itself")
    tensors, state = load_checkpoint(run_dir / "checkpoint", ("model",))
    weights = tensors.get("model", {})
    prefix = "ema." if any(k.startswith("ema.") for k in weights) else ""
    picked = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix) and (prefix or not k.startswith("ema."))}
    cast = {k: v.to(EXPORT_DTYPES[dtype]) if v.is_floating_point() else v for k, v in picked.items()}
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "checkpoint", {"model": cast},
                    {"step": state.get("step"), "exported_from": str(run_dir), "dtype": dtype, "ema": bool(prefix)})
    for name in ("config.json", "loss.png", "metrics.jsonl", "command.txt"):
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, out / name)
    return out


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without it is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)


def load_run(domain: Domain, run_dir: Path | None = None, device: str | torch.device = "cpu") -> "Run":
    """Load a run folder (or the domain's shipped run) as a Run holding the EMA denoiser in eval mode."""
    if run_dir is None:
        if domain.shipped_run is None or not (Path(domain.shipped_run) / "config.json").is_file():
            raise FileNotFoundError(f"domain {domain.name!r} ships no checkpoint: train one with "
                                    f"`polydiff {domain.name} train --out RUN` and pass --run RUN")
        run_dir = Path(domain.shipped_run)
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.json); pass the --out of a `train`")
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("domain") != domain.name:
        raise ValueError(f"{run_dir} holds a {cfg.get('domain')!r} run, not {domain.name!r}")
    denoiser = build_denoiser(domain, cfg)
    load_weights(run_dir, denoiser, ema=True)
    device = torch.device(device)
    return Run(domain, cfg, denoiser.to(device).eval(), run_dir, device)


@dataclass
class Run:
    """A trained model ready to sample: the domain, its config, the EMA denoiser and where it lives."""

    domain: Domain
    config: dict[str, Any]
    denoiser: nn.Module
    path: Path
    device: torch.device

    @property
    def schedule(self) -> Schedule:
        return build_schedule(self.config)

    def sigmas(self, steps: int | None = None, grid: str | None = None) -> torch.Tensor:
        """The sampling grid of the run's config (``steps`` intervals), ending in 0."""
        s = self.config["sample"]
        return make_grid(grid or s["grid"], steps or s["steps"], s["sigma_min"], s["sigma_max"],
                         schedule=self.schedule, device=self.device)

    def guided(self, cond: Any = None, scale: float | None = None, denoiser: Any = None):
        """The denoiser (or ``denoiser``, a wrapper of it) with classifier-free guidance at ``scale`` (config default)
        when the domain has a null cond."""
        from polydiff.core.guidance import cfg as cfg_guidance

        base = self.denoiser if denoiser is None else denoiser
        scale = self.config["sample"].get("guidance_scale", 1.0) if scale is None else scale
        if cond is None or self.domain.null_cond is None or scale == 1.0:
            return base
        return cfg_guidance(base, scale, self.domain.null_cond(cond))

    def sample(self, shape_like: torch.Tensor, *, cond: Any = None, sampler: str | None = None, steps: int | None = None,
               noise: NoiseFn | None = None, generator: torch.Generator | None = None, denoiser: Any = None,
               sigmas: torch.Tensor | None = None, progress: bool = False, **options) -> torch.Tensor:
        """Draw samples shaped like ``shape_like``: noise at sigma_max, then the sampler down the grid."""
        sigmas = self.sigmas(steps) if sigmas is None else sigmas
        like = torch.empty_like(shape_like, device=self.device, dtype=torch.float32)
        x = (noise or gaussian)(like, generator) * sigmas[0]
        return core_sample(denoiser or self.guided(cond), x, sigmas, sampler or self.config["sample"]["sampler"],
                           cond=cond, noise=noise, generator=generator, progress=progress, **options)
