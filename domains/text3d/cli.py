"""The text3d ``sample`` and ``evaluate`` commands: a prompt in, a mesh + turntable GIF out; R-precision."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

from polydiff.cli.domain_app import open_run, write_samples
from polydiff.cli.options import DeviceOpt, NumOpt, OutOpt, RunOpt, SamplerOpt, ScaleOpt, SeedOpt, StepsOpt

PromptOpt = Annotated[str, typer.Option("--prompt", help="What to make, e.g. 'a red mug'.")]
MethodOpt = Annotated[str, typer.Option("--method", help="Distillation loss: sds or sjc.")]
IterOpt = Annotated[Optional[int], typer.Option("--iters", help="Distillation steps (default from the run's preset).")]
FieldOpt = Annotated[Optional[str], typer.Option("--field", help="voxel or mlp (default from the preset).")]


def _domain():
    from polydiff.plugins.manager import get_manager

    return get_manager().domain("text3d")


def add_commands(app: typer.Typer) -> None:
    """Register text3d's ``sample`` and ``evaluate`` on its sub-app."""

    @app.command("sample")
    def sample(prompt: PromptOpt = "a red mug", out: OutOpt = Path("samples") / "text3d", run: RunOpt = None,
               n: NumOpt = 1, seed: SeedOpt = 0, device: DeviceOpt = "auto", method: MethodOpt = "sds",
               iters: IterOpt = None, field: FieldOpt = None, guidance_scale: ScaleOpt = None,
               images: Annotated[bool, typer.Option("--images", help="Sample 2D prior images of the prompt instead.")] = False,
               sampler: SamplerOpt = None, steps: StepsOpt = None) -> None:
        """Text to 3D: distil an object for --prompt (GLB + OBJ mesh, turntable GIF, loss curve, field)."""
        if method not in ("sds", "sjc"):
            raise typer.BadParameter("choose sds or sjc", param_hint="--method")
        r = open_run(_domain(), run, device)
        g = torch.Generator(device=r.device).manual_seed(seed)
        t0 = time.time()
        extra = {} if images else {"method": method, "iters": iters, "field": field, "seed": seed}
        try:
            samples = _domain().generate(r, n, sampler=sampler, steps=steps, generator=g, prompt=prompt, images=images,
                                         guidance_scale=guidance_scale, progress=True, **extra)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from None
        info = {"prompt": prompt, "method": method, "seed": seed, "run": str(r.path), "images": images,
                "seconds": round(time.time() - t0, 1)}
        write_samples(_domain(), samples, out, info)

    @app.command("evaluate")
    def evaluate(run: RunOpt = None, n: NumOpt = 7, seed: SeedOpt = 0, device: DeviceOpt = "auto",
                 prompts: Annotated[Optional[str], typer.Option("--prompts", help="';'-separated prompts (default: the fixed list).")] = None,
                 iters: IterOpt = None, method: MethodOpt = "sds", sampler: SamplerOpt = None, steps: StepsOpt = None) -> None:
        """R-precision of generated objects (colour, shape) next to ground truth (ceiling) and an untrained field (floor)."""
        r = open_run(_domain(), run, device)
        plist = [p.strip() for p in prompts.split(";") if p.strip()] if prompts else None
        try:
            metrics = _domain().evaluate(r, n=n, prompts=plist, progress=True, method=method, iters=iters, seed=seed)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from None
        for k, v in metrics.items():
            typer.echo(f"{k}: {v:.4g}")
