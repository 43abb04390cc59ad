"""Runs: train a domain into a run folder, load a run folder back, and sample or evaluate it.

A run folder holds ``config.json`` (the validated configuration, see ``plugins/config.py``), ``checkpoint/``
(safetensors + JSON, see ``polydiff.core.checkpoint``), ``metrics.jsonl``, ``loss.png`` and ``command.txt``. ``Run``
is what a loaded folder is: ``run.sample(...)`` and ``run.evaluate(...)`` serve the CLI, ``polydiff demo`` and scripts
alike, with the domain's declared options as keyword arguments.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polydiff.core.checkpoint import load_checkpoint, save_checkpoint
from polydiff.core.denoisers import PRECISIONS, Denoiser, reduced_precision
from polydiff.core.inversion import replay
from polydiff.core.losses import denoising_loss, flow_matching_loss
from polydiff.core.noise import NoiseFn, gaussian
from polydiff.core.samplers import sample as core_sample
from polydiff.core.schedules import Schedule, make_grid
from polydiff.core.training import Trainer, TrainConfig, load_weights

from .config import fitted, merge, read_config_file, validate_config
from .domain import Batch, Domain, EvaluateRequest, SampleRequest, Samples, SampleSettings
from .errors import ConfigError, OptionError, UsageError
from .folders import check_export_target, locked, prepare_train_folder, replace_folder
from .manager import get_manager
from .options import build_options


def resolve_config(domain: Domain, preset: str = "quick", override: dict[str, Any] | None = None) -> dict[str, Any]:
    """A domain's preset with ``override`` merged on top, validated, with every default filled in."""
    cfg = merge(domain.preset(preset), override or {})
    cfg["domain"], cfg["preset"] = domain.name, preset
    return validate_config(cfg, domain.sections)


def build_schedule(cfg: dict[str, Any]) -> Schedule:
    """The training/grid schedule of a config, by its registered name."""
    d = cfg["diffusion"]
    args = d.get("schedule_args", {})
    try:
        return get_manager().schedule(d["schedule"])(**args)
    except TypeError as exc:  # a misspelt or foreign argument
        raise ConfigError(f"diffusion.schedule_args {sorted(args)} do not fit the {d['schedule']!r} schedule: "
                          f"{exc}") from None


def build_denoiser(domain: Domain, cfg: dict[str, Any]) -> Denoiser:
    """The domain's network wrapped with the configured preconditioning (a guided student's network also takes the
    guidance scale)."""
    d = cfg["diffusion"]
    net = domain.build_network(cfg)
    spec = (cfg.get("distillation") or {}).get("guidance_embedding")
    if spec:  # a guided student: the network also takes the guidance scale (``core.distillation``)
        from polydiff.core.distillation import guidance_conditioned

        net = guidance_conditioned(net, spec)
    from .personalize import prepare_network

    return prepare_network(Denoiser(net, parameterization=d["parameterization"], sigma_data=d["sigma_data"]), cfg)


def default_loss(domain: Domain, cfg: dict[str, Any]):
    """The loss the ``diffusion`` section describes: denoising score matching or flow matching, with the domain's
    noise and ragged ``group`` respected by both, and condition dropout for classifier-free guidance."""
    if domain.loss is not None:
        return lambda model, batch, generator: domain.loss(model, batch, generator, cfg)
    d = cfg["diffusion"]
    schedule = build_schedule(cfg)

    def loss(model: nn.Module, batch: Any, generator: torch.Generator) -> torch.Tensor:
        batch = batch if isinstance(batch, Batch) else Batch(batch)
        cond = batch.cond
        if d["cond_dropout"] > 0 and domain.drop_cond is not None and cond is not None:
            cond = domain.drop_cond(cond, d["cond_dropout"], generator)
        noise = domain.noise(batch) if domain.noise is not None else None
        if d["objective"] == "flow":
            return flow_matching_loss(model, batch.x0, coupling=d["coupling"], schedule=schedule, cond=cond,
                                      group=batch.group, noise=noise, generator=generator)
        return denoising_loss(model, batch.x0, schedule=schedule, weighting=d["weighting"], sigma_data=d["sigma_data"],
                              cond=cond, group=batch.group, noise=noise, generator=generator)

    return loss


def with_fitted(domain: Domain, cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with its ``fitted`` section (the domain's facts fitted on the training data) computed if missing."""
    if domain.fit_data is None or cfg.get("fitted"):
        return cfg
    return {**cfg, "fitted": fitted(cfg, domain.fit_data)}


def train(domain: Domain, cfg: dict[str, Any], out: Path, *, device: str = "cpu", resume: bool = False,
          stop_after: int | None = None) -> "Run":
    """Train ``domain`` with the resolved config ``cfg`` into the run folder ``out``; returns the trained Run.

    Observers (``polydiff_train_step_end``, ``polydiff_train_end``) are told through the plugin manager."""
    out = Path(out)
    cfg = with_fitted(domain, cfg)
    torch.manual_seed(cfg["train"]["seed"])
    denoiser = build_denoiser(domain, cfg)
    dataset = domain.build_dataset(cfg["data"], "train")
    manager = get_manager()
    trainer = Trainer(denoiser, default_loss(domain, cfg), dataset, out, TrainConfig.from_dict(cfg["train"]),
                      collate=domain.collate, device=device, run_config=cfg,
                      on_step_end=lambda step, loss: manager.notify("polydiff_train_step_end", run_dir=out, step=step,
                                                                    loss=loss),
                      on_run_end=lambda summary: manager.notify("polydiff_train_end", run_dir=out, summary=summary),
                      stop_after=stop_after)
    ema = trainer.fit(resume=resume)
    return Run(domain, cfg, ema.eval(), out, trainer.device)


def train_folder(domain: Domain, out: Path, *, preset: str = "quick", config_file: Path | None = None,
                 override: dict[str, Any] | None = None, device: str = "cpu", seed: int = 0, resume: bool = False,
                 overwrite: bool = False, steps: int | None = None, command: str | None = None) -> "Run":
    """What ``train`` does: resolve the preset (or on ``resume`` the run's own config) with the file's and
    ``override``'s settings, guard the folder (see ``plugins/folders.py``), record ``command`` and train."""
    from polydiff.core.training import distributed_context

    out = Path(out)
    override = merge(read_config_file(config_file) if config_file else {}, override or {})
    if steps is not None:
        override = merge(override, {"train": {"steps": steps}})
    first = distributed_context()[0] == 0  # under torchrun rank 0 guards the folder; the others train beside it
    with locked(out) if first else contextlib.nullcontext(out):
        if first:
            prepare_train_folder(out, resume=resume, overwrite=overwrite)
        saved = out / "config.json"
        if resume and saved.is_file():  # continue the run as it was configured, with this call's overrides
            cfg = validate_config(merge(json.loads(saved.read_text()), override), domain.sections)
        else:
            cfg = resolve_config(domain, preset, merge(override, {"train": {"seed": seed}}))
        build_schedule(cfg)  # a schedule argument that does not fit fails here, before the folder records anything
        if command:
            with open(out / "command.txt", "a") as f:
                f.write(command + "\n")
        return train(domain, cfg, out, device=device, resume=resume)


EXPORT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def export_run(run_dir: Path, out: Path, dtype: str = "float16", *, overwrite: bool = False) -> Path:
    """Write the shippable form of a run into ``out``: its config, the EMA weights alone cast to ``dtype`` (no optimizer
    state, a quarter of the size in float16), and its loss plot, metrics and the commands that trained it. The folder
    is written beside ``out`` and renamed into place; see ``plugins/folders.py`` for what it refuses."""
    run_dir, out = Path(run_dir), Path(out)
    if dtype not in EXPORT_DTYPES:
        raise OptionError("--dtype", f"unknown dtype {dtype!r}; use one of {', '.join(EXPORT_DTYPES)}")
    if not (run_dir / "config.json").is_file():
        raise UsageError(f"{run_dir} is not a run folder (no config.json); pass the --out of a `train`")
    if out.resolve() == run_dir.resolve():
        raise UsageError("export into a new folder, not the run itself")
    check_export_target(out, overwrite=overwrite)
    tensors, state = load_checkpoint(run_dir / "checkpoint", ("model",))
    weights = tensors.get("model", {})
    prefix = "ema." if any(k.startswith("ema.") for k in weights) else ""
    picked = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix) and (prefix or not k.startswith("ema."))}
    config = json.loads((run_dir / "config.json").read_text())
    meta: dict[str, Any] = {}
    if config.get("control"):  # a control run on a shipped base ships its branch alone
        from .control import without_shipped_base

        picked, meta = without_shipped_base(config, picked)
    cast = {k: v.to(EXPORT_DTYPES[dtype]) if v.is_floating_point() else v for k, v in picked.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_checkpoint(staged / "checkpoint", {"model": cast},
                        {"step": state.get("step"), "exported_from": str(run_dir), "dtype": dtype, "ema": bool(prefix),
                         **meta})
        for name in ("config.json", "loss.png", "metrics.jsonl", "command.txt"):
            if (run_dir / name).is_file():
                shutil.copyfile(run_dir / name, staged / name)
        if config.get("latent"):  # ship the decoder with the run
            from .latent import bundle_autoencoder

            bundle_autoencoder(run_dir, staged)
        replace_folder(staged, out)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return out


SHIPPED = "shipped"
"""How a run made from a shipped checkpoint names its base: ``shipped:<folder>`` (the folder beside the domain's
default checkpoint), never a machine's path; a bare ``shipped`` (older runs) means the domain's default."""


def shipped_name(run: "Run") -> str | None:
    """``shipped:<folder>`` when ``run`` is one of its domain's shipped checkpoints (the default or another folder in
    the same ``checkpoints/``), else None."""
    shipped = run.domain.shipped_run
    if shipped is None:
        return None
    path = Path(run.path).resolve()
    return f"{SHIPPED}:{path.name}" if path.parent == Path(shipped).resolve().parent else None


def shipped_folder(domain: Domain, name: str) -> Path | None:
    """The folder a recorded base names: a ``shipped:<folder>`` checkpoint of ``domain``, the default for a bare
    ``shipped``, or None when ``name`` is not a shipped name (then it is a path)."""
    if domain.shipped_run is None or not (name == SHIPPED or name.startswith(SHIPPED + ":")):
        return None
    folder = name.partition(":")[2]
    return Path(domain.shipped_run).parent / folder if folder else Path(domain.shipped_run)


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
        raise UsageError(f"--run {run_dir} is not a run folder (no config.json); pass the --out of a `train`")
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("domain") != domain.name:
        raise UsageError(f"--run {run_dir} holds a {cfg.get('domain')!r} run, not {domain.name!r}")
    if cfg.get("latent") and "latent" not in domain.sections:  # loaded through its latent view, which decodes
        from .latent import load_latent_run

        return load_latent_run(domain, run_dir, device)
    if cfg.get("control") and "control" not in domain.sections:  # loaded through its controlled view
        from .control import load_control_run

        return load_control_run(domain, run_dir, device)
    if (cfg.get("personalized") or {}).get("lora_rank"):  # an adapter on its base run
        from .personalize import load_personalized

        return load_personalized(domain, run_dir, device)
    cfg = validate_config(cfg, domain.sections)
    denoiser = build_denoiser(domain, cfg)
    load_weights(run_dir, denoiser, ema=True)
    device = torch.device(device)
    return Run(domain, cfg, denoiser.to(device).eval(), run_dir, device)


def _given(**settings: Any) -> frozenset[str]:
    return frozenset(k for k, v in settings.items() if v is not None)


@dataclass
class Run:
    """A trained model ready to sample: the domain, its validated config, the EMA denoiser and where it lives."""

    domain: Domain
    config: dict[str, Any]
    denoiser: nn.Module
    path: Path
    device: torch.device
    _fitted: dict[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def from_folder(cls, path: str | Path, device: str | torch.device = "cpu") -> "Run":
        """The run saved in ``path`` (by ``train``, ``export`` or ``save``), its domain read from its config."""
        cfg_path = Path(path) / "config.json"
        if not cfg_path.is_file():
            raise UsageError(f"{path} is not a run folder (no config.json)")
        domain = get_manager().domain(json.loads(cfg_path.read_text()).get("domain", "?"))
        return load_run(domain, Path(path), device)

    def save(self, out: str | Path, *, dtype: str = "float32", overwrite: bool = False) -> Path:
        """Write this run (its current weights, cast to ``dtype``, and its config) as a run folder ``out`` that
        ``from_folder``, ``--run`` and ``export`` read; the rules of ``export`` apply to ``out``."""
        out = Path(out)
        if dtype not in EXPORT_DTYPES:
            raise OptionError("--dtype", f"unknown dtype {dtype!r}; use one of {', '.join(EXPORT_DTYPES)}")
        check_export_target(out, overwrite=overwrite)
        weights = {k: v.detach().to("cpu", EXPORT_DTYPES[dtype]) if v.is_floating_point() else v.detach().cpu()
                   for k, v in self.denoiser.state_dict().items()}
        out.parent.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            save_checkpoint(staged / "checkpoint", {"model": weights},
                            {"exported_from": str(self.path), "dtype": dtype, "ema": False})
            (staged / "config.json").write_text(json.dumps(self.config, indent=2))
            for name in ("loss.png", "metrics.jsonl", "command.txt"):
                if (Path(self.path) / name).is_file():
                    shutil.copyfile(Path(self.path) / name, staged / name)
            replace_folder(staged, out)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        return out

    def save_samples(self, samples: Samples, out: str | Path, *, overwrite: bool = False) -> list[Path]:
        """Write ``samples`` with the domain's file formats, a PNG preview and ``samples.json`` into ``out``."""
        from .outputs import write_samples

        return write_samples(self.domain, samples, Path(out), record={"run": str(self.path)}, overwrite=overwrite)

    @property
    def schedule(self) -> Schedule:
        return build_schedule(self.config)

    @property
    def fitted(self) -> dict[str, Any]:
        """The facts fitted on the training data (config ``fitted``; older runs: fitted again from their data)."""
        if self._fitted is None:
            self._fitted = with_fitted(self.domain, self.config).get("fitted", {})
        return self._fitted

    def sigmas(self, steps: int | None = None, grid: str | None = None, sigma_max: float | None = None) -> torch.Tensor:
        """The sampling grid of the run's config (``steps`` intervals, from ``sigma_max``), ending in 0."""
        s = self.config["sample"]
        return make_grid(grid or s["grid"], steps or s["steps"], s["sigma_min"], sigma_max or s["sigma_max"],
                         schedule=self.schedule, device=self.device)

    # ---- settings, labels and guidance -------------------------------------------------------------------------
    def settings(self, sampler: str | None = None, steps: int | None = None, guidance: str | None = None,
                 guidance_scale: float | None = None, seed: int | None = None,
                 precision: str | None = None) -> SampleSettings:
        """The run's sampling defaults with the given choices on top, each checked once (unknown names, steps < 1)."""
        s = self.config["sample"]
        sampler = sampler or s["sampler"]
        get_manager().sampler(sampler)
        if steps is not None and steps < 1:
            raise OptionError("--steps", f"must be at least 1, got {steps}")
        guidance = guidance or s["guidance"]
        if guidance not in self.domain.guidance:
            get_manager().guidance_method(guidance)
        scale = float(s["guidance_scale"] if guidance_scale is None else guidance_scale)
        precision = precision or s["precision"]
        if precision not in PRECISIONS:
            raise OptionError("--precision", f"unknown precision {precision!r}; use {' or '.join(PRECISIONS)}")
        return SampleSettings(sampler, int(steps or s["steps"]), guidance, scale, seed, precision)

    def class_names(self) -> list[str]:
        """The run's class names ([] for an unconditional run or a domain without classes)."""
        if self.domain.classes is None:
            return []
        names = list(self.domain.classes.names(self.config))
        return names + [c for c in (self.config.get("personalized") or {}).get("classes", []) if c not in names]

    def labels(self, label: int | str | None, n: int) -> torch.Tensor | None:
        """Labels [n] for ``label``: a class name or index, ``all`` (cycle through the classes), or None."""
        if label is None:
            return None
        flag = self.domain.classes.flags[0] if self.domain.classes else "--class"
        if self.domain.classes is None:
            raise OptionError(flag, f"the {self.domain.name} domain has no class labels")
        names = self.class_names()
        if not names:
            raise OptionError(flag, "this run is unconditional: sample without a class")
        if label == "all":
            return torch.arange(n) % len(names)
        text = str(label)
        if text.lstrip("-").isdigit():
            idx = int(text)
            if not 0 <= idx < len(names):
                raise OptionError(flag, f"must be in 0..{len(names) - 1} ({', '.join(names)}) or 'all', got {idx}")
        elif text in names:
            idx = names.index(text)
        else:
            raise OptionError(flag, f"unknown class {text!r}; classes: {', '.join(names)} (or an index, or 'all')")
        return torch.full((n,), idx, dtype=torch.long)

    def guided(self, cond: Any, settings: SampleSettings, base: Any = None) -> Any:
        """``base`` (default: the run's denoiser) with the settings' guidance method at its scale, when there is a
        condition to guide by and the domain has a null condition; a domain's own methods are applied by the domain
        on top of classifier-free guidance."""
        base = self.denoiser if base is None else base
        if cond is None or self.domain.null_cond is None or settings.guidance_scale == 1.0:
            return base
        name = "cfg" if settings.guidance in self.domain.guidance else settings.guidance
        return get_manager().guidance_method(name)(base, settings.guidance_scale, self.domain.null_cond(cond))

    # ---- drawing ------------------------------------------------------------------------------------------------
    @staticmethod
    def sampler_function(name: str) -> Any:
        """The sampler function registered as ``name`` (built-in or a plugin's)."""
        return get_manager().sampler(name)

    def draw(self, like: torch.Tensor, request: SampleRequest, *, cond: Any = None, denoiser: Any = None,
             noise: NoiseFn | None = None, sigmas: torch.Tensor | None = None) -> torch.Tensor:
        """Samples shaped like ``like``: noise at the grid's first sigma, then the request's sampler down the grid
        (``sigmas``, else the request's, else ``settings.steps`` of the run's grid), guided by ``cond``."""
        if sigmas is None:
            sigmas = request.sigmas if request.sigmas is not None else self.sigmas(request.settings.steps)
        sigmas = sigmas.to(self.device)
        blank = torch.empty(like.shape, device=self.device, dtype=torch.float32)
        replayed = {}
        if request.start is not None:
            x, maps = request.next_start(like.shape[0])
            x = x.to(self.device, torch.float32)
            if x.shape != blank.shape:
                raise UsageError(f"samples shaped {tuple(blank.shape)} were drawn from a start shaped {tuple(x.shape)}")
            if maps is not None:
                replayed["noise_sampler"] = replay(maps.to(self.device, torch.float32))
        else:
            x = (noise or gaussian)(blank, request.generator) * sigmas[0]
        den = self.guided(cond, request.settings) if denoiser is None else denoiser
        method = self.sampler_function(request.settings.sampler)
        return core_sample(den, x, sigmas, method, cond=cond, noise=noise, generator=request.generator,
                           progress=request.progress, **replayed)

    def generator(self, seed: int | None) -> torch.Generator:
        """A generator on the run's device seeded with ``seed`` (0 when None)."""
        return torch.Generator(device=self.device).manual_seed(0 if seed is None else int(seed))

    def request(self, n: int | None = None, *, label: int | str | None = None, labels: torch.Tensor | None = None,
                sampler: str | None = None, steps: int | None = None, guidance: str | None = None,
                guidance_scale: float | None = None, seed: int | None = None, precision: str | None = None,
                generator: torch.Generator | None = None, progress: bool = False, sigmas: torch.Tensor | None = None,
                **options: Any) -> SampleRequest:
        """The ``SampleRequest`` that ``sample`` hands to the domain, every choice checked (for callers that call a
        domain's ``generate`` with more than options carry, such as prepared molecules in a benchmark)."""
        n = self.domain.count("sample").default if n is None else n
        if n is None or n < 1:
            raise OptionError(self.domain.count("sample").flags[0], f"must be at least 1, got {n}")
        settings = self.settings(sampler, steps, guidance, guidance_scale, seed, precision)
        opts = build_options(self.domain.options.get("sample"), options)
        if labels is None:
            labels = self.labels(label, n)
        explicit = _given(sampler=sampler, steps=steps, guidance=guidance, guidance_scale=guidance_scale, seed=seed)
        return SampleRequest(n, settings, generator or self.generator(seed), labels, opts, progress, sigmas, explicit)

    def sample(self, n: int | None = None, **kwargs: Any) -> Samples:
        """Draw ``n`` samples (default: the domain's ``-n``) as ``Samples``. Keywords: ``label`` (a class name, index
        or ``all``) or ``labels`` (a class per sample), ``sampler``, ``steps``, ``guidance``, ``guidance_scale``,
        ``seed`` or ``generator``, ``progress``, ``sigmas``, and the domain's declared ``sample`` options."""
        request = self.request(n, **kwargs)
        with reduced_precision(self.denoiser, request.settings.precision):
            samples = self.domain.generate(self, request)
        samples.settings = request.settings
        return samples

    def evaluate(self, n: int | None = None, *, sampler: str | None = None, steps: int | None = None,
                 guidance: str | None = None, guidance_scale: float | None = None, seed: int | None = None,
                 precision: str | None = None, generator: torch.Generator | None = None, progress: bool = False,
                 **options: Any) -> dict[str, float]:
        """The domain's metrics for samples of this run (``options``: the domain's declared ``evaluate`` options)."""
        if n is not None and n < 1:
            raise OptionError(self.domain.count("evaluate").flags[0], f"must be at least 1, got {n}")
        settings = self.settings(sampler, steps, guidance, guidance_scale, seed, precision)
        opts = build_options(self.domain.options.get("evaluate"), options)
        explicit = _given(sampler=sampler, steps=steps, guidance=guidance, guidance_scale=guidance_scale, seed=seed)
        request = EvaluateRequest(n, settings, generator or self.generator(seed), opts, progress, explicit)
        with reduced_precision(self.denoiser, settings.precision):
            return self.domain.evaluate(self, request)

