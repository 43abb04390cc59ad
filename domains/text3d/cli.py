"""text3d's commands: ``train-prior``, ``sample-prior PROMPT``, ``generate PROMPT`` (the documented interface), plus
``sample`` (the older spelling, kept for scripts) and ``evaluate``.

Each behaviour lives in one function that every spelling calls: ``train_prior`` (like the generic ``train``),
``sample_prior_images`` (``sample-prior`` and ``sample --images``) and ``generate_objects`` (``generate`` and
``sample --prompt``). Bad input raises ``ValueError``/``FileNotFoundError``, which the CLI prints as one line (exit 1).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import torch
import typer

from polydiff.cli.domain_app import open_run, train_run, trained_line, write_samples
from polydiff.cli.options import (ConfigOpt, DeviceOpt, NumOpt, OutOpt, PresetOpt, ResumeOpt, RunOpt, SamplerOpt,
                                  ScaleOpt, SeedOpt, StepsOpt, TrainStepsOpt)
from polydiff.plugins.runs import Run

METHODS = ("sds", "sjc")

PromptOpt = Annotated[str, typer.Option("--prompt", help="What to make, e.g. 'a red mug'.")]
PromptArg = Annotated[Optional[str], typer.Argument(help="What to make, e.g. 'a red mug'.", show_default=False)]
MethodOpt = Annotated[str, typer.Option("--method", help="Distillation loss: sds or sjc.")]
IterOpt = Annotated[Optional[int], typer.Option("--iters", help="Distillation steps (default from the distill settings).")]
FieldOpt = Annotated[Optional[str], typer.Option("--field", help="voxel or mlp (default from the distill settings).")]
PriorOpt = Annotated[bool, typer.Option(
    "--prior", help="Score the 2D prior's images (with --sampler, --steps) instead of distilled objects.")]
DistillPresetOpt = Annotated[Optional[str], typer.Option(
    "--preset", help="Distillation settings of this domain preset (quick or full; default: the run's own).")]


def _domain():
    from polydiff.plugins.manager import get_manager

    return get_manager().domain("text3d")


def _check_prompt(prompt: str | None) -> str:
    if prompt is None or not prompt.strip():
        raise ValueError("no prompt: say what to make, e.g. polydiff text3d generate 'a red mug' --out DIR")
    return prompt.strip()


def _open_prior(run: Path | None, device: str) -> Run:
    """The prior of ``--run``, or the shipped one; without either (a trimmed install), say how to train one."""
    try:
        return open_run(_domain(), run, device)
    except FileNotFoundError:
        if run is not None:
            raise
        raise FileNotFoundError("no trained prior (the shipped one is missing): train one with "
                                "`polydiff text3d train-prior --out RUN` and pass --run RUN") from None


def train_prior(out: Path, preset: str = "quick", config: Path | None = None, device: str = "auto", seed: int = 0,
                resume: bool = False, steps: int | None = None) -> Run:
    """Train the text-conditioned 2D prior into the run folder ``out``: the generic ``train`` of this domain."""
    return train_run(_domain(), out, preset, config, device, seed, resume, steps)


def sample_prior_images(prompt: str | None, out: Path, run: Path | None = None, n: int = 4, seed: int = 0,
                        device: str = "auto", guidance_scale: float | None = None, sampler: str | None = None,
                        steps: int | None = None) -> list[Path]:
    """Sample ``n`` prior images of ``prompt`` (random views) and write one PNG each plus a strip into ``out``."""
    prompt = _check_prompt(prompt)
    r = _open_prior(run, device)
    g = torch.Generator(device=r.device).manual_seed(seed)
    t0 = time.time()
    samples = _domain().generate(r, n, sampler=sampler, steps=steps, generator=g, prompt=prompt, images=True,
                                 guidance_scale=guidance_scale, progress=True)
    info: dict[str, Any] = {"prompt": prompt, "images": True, "seed": seed, "run": str(r.path),
                            "sampler": sampler or r.config["sample"]["sampler"],
                            "steps": steps or r.config["sample"]["steps"], "guidance_scale": guidance_scale,
                            "seconds": round(time.time() - t0, 1)}
    return write_samples(_domain(), samples, out, info)


def generate_objects(prompt: str | None, out: Path, run: Path | None = None, n: int = 1, seed: int = 0,
                     device: str = "auto", method: str = "sds", preset: str | None = None, iters: int | None = None,
                     field: str | None = None, guidance_scale: float | None = None) -> list[Path]:
    """Distil ``n`` objects for ``prompt`` and write per object a GLB + OBJ mesh, turntable GIF, loss curve, field."""
    prompt = _check_prompt(prompt)
    if method not in METHODS:
        raise ValueError(f"unknown distillation method {method!r}; choose sds or sjc")
    if preset is not None:
        _domain().preset(preset)
    r = _open_prior(run, device)
    g = torch.Generator(device=r.device).manual_seed(seed)
    t0 = time.time()
    samples = _domain().generate(r, n, generator=g, prompt=prompt, guidance_scale=guidance_scale, progress=True,
                                 method=method, iters=iters, field=field, seed=seed, preset=preset)
    info = {"prompt": prompt, "images": False, "method": method, "preset": preset, "seed": seed, "run": str(r.path),
            "seconds": round(time.time() - t0, 1)}
    return write_samples(_domain(), samples, out, info)


def add_commands(app: typer.Typer) -> None:
    """Register text3d's commands on its sub-app (the generic ``train``, ``export`` and ``info`` stay)."""

    @app.command("train-prior")
    def train_prior_cmd(out: OutOpt = Path("runs") / "text3d", preset: PresetOpt = "quick", config: ConfigOpt = None,
                        device: DeviceOpt = "auto", seed: SeedOpt = 0, resume: ResumeOpt = False,
                        steps: TrainStepsOpt = None) -> None:
        """Train the text-conditioned 2D prior on renders of the shapes (checkpoints, metrics.jsonl, loss.png)."""
        t0 = time.time()
        run = train_prior(out, preset, config, device, seed, resume, steps)
        typer.echo(trained_line("the text3d prior", run, out, t0) + f"; next: polydiff text3d generate 'a red mug' --run {out}")

    @app.command("sample-prior")
    def sample_prior_cmd(prompt: PromptArg = None, out: OutOpt = Path("samples") / "text3d-prior", run: RunOpt = None,
                         n: NumOpt = 4, seed: SeedOpt = 0, device: DeviceOpt = "auto",
                         guidance_scale: ScaleOpt = None, sampler: SamplerOpt = None, steps: StepsOpt = None) -> None:
        """Images of PROMPT from the 2D prior (random views): one PNG each and a strip."""
        sample_prior_images(prompt, out, run, n, seed, device, guidance_scale, sampler, steps)

    @app.command("generate")
    def generate_cmd(prompt: PromptArg = None, out: OutOpt = Path("samples") / "text3d", run: RunOpt = None,
                     n: NumOpt = 1, seed: SeedOpt = 0, device: DeviceOpt = "auto", method: MethodOpt = "sds",
                     preset: DistillPresetOpt = None, iters: IterOpt = None, field: FieldOpt = None,
                     guidance_scale: ScaleOpt = None) -> None:
        """Text to 3D: distil an object for PROMPT (GLB + OBJ mesh, turntable GIF, loss curve, field)."""
        generate_objects(prompt, out, run, n, seed, device, method, preset, iters, field, guidance_scale)

    @app.command("sample")
    def sample(prompt: PromptOpt = "a red mug", out: OutOpt = Path("samples") / "text3d", run: RunOpt = None,
               n: NumOpt = 1, seed: SeedOpt = 0, device: DeviceOpt = "auto", method: MethodOpt = "sds",
               iters: IterOpt = None, field: FieldOpt = None, guidance_scale: ScaleOpt = None,
               images: Annotated[bool, typer.Option("--images", help="Sample 2D prior images of the prompt instead.")] = False,
               sampler: SamplerOpt = None, steps: StepsOpt = None) -> None:
        """Older spelling: `sample --prompt P` is `generate P`; `sample --images --prompt P` is `sample-prior P`."""
        if images:
            sample_prior_images(prompt, out, run, n, seed, device, guidance_scale, sampler, steps)
        else:
            generate_objects(prompt, out, run, n, seed, device, method, None, iters, field, guidance_scale)

    @app.command("evaluate")
    def evaluate(run: RunOpt = None, n: NumOpt = 7, seed: SeedOpt = 0, device: DeviceOpt = "auto",
                 prompts: Annotated[Optional[str], typer.Option("--prompts", help="';'-separated prompts (default: the fixed list).")] = None,
                 iters: IterOpt = None, method: MethodOpt = "sds", prior: PriorOpt = False,
                 sampler: SamplerOpt = None, steps: StepsOpt = None) -> None:
        """R-precision (colour, shape) of distilled objects, or with --prior of the prior's images, from fixed views;
        next to ground truth (ceiling) and an untrained field / the unconditional prior (floor)."""
        r = _open_prior(run, device)
        plist = [p.strip() for p in prompts.split(";") if p.strip()] if prompts else None
        try:
            metrics = _domain().evaluate(r, n=n, prompts=plist, progress=True, method=method, iters=iters, seed=seed,
                                         sampler=sampler, steps=steps, target="prior" if prior else "objects")
        except ValueError as err:
            raise typer.BadParameter(str(err)) from None
        for k, v in metrics.items():
            typer.echo(f"{k}: {v:.4g}")
