"""The toy domain's ``sample`` command: every core sampler and every guidance method from the command line."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import torch
import typer

from polydiff.cli.domain_app import open_run, write_samples
from polydiff.cli.options import DeviceOpt, NumOpt, OutOpt, RunOpt, SamplerOpt, ScaleOpt, SeedOpt, StepsOpt

GUIDANCE = ("cfg", "classifier", "dps", "inpaint", "compose", "sdedit")


def add_commands(app: typer.Typer) -> None:
    """Register the toy ``sample`` command on the domain's sub-app."""

    @app.command("sample")
    def sample(out: OutOpt = Path("samples") / "toy", run: RunOpt = None, n: NumOpt = 2000, sampler: SamplerOpt = None,
               steps: StepsOpt = None, seed: SeedOpt = 0, device: DeviceOpt = "auto",
               label: Annotated[Optional[int], typer.Option("--class", help="Class label (moon, mode, ...).")] = None,
               guidance_scale: ScaleOpt = None,
               guidance: Annotated[str, typer.Option("--guidance", help=f"One of {', '.join(GUIDANCE)}.")] = "cfg",
               observe_x: Annotated[Optional[float], typer.Option(help="dps/inpaint: the observed x coordinate.")] = None,
               toward: Annotated[Optional[str], typer.Option(help="classifier: target point 'X,Y'.")] = None,
               compose: Annotated[Optional[str], typer.Option(help="compose: 'label:weight,...' (negative = avoid).")] = None,
               init: Annotated[Optional[Path], typer.Option(help="sdedit: .npy of points to edit.")] = None,
               strength: Annotated[float, typer.Option(help="sdedit: fraction of the grid to run.")] = 0.5) -> None:
        """Sample 2D points (samples.npy + samples.png) with any sampler and guidance."""
        if guidance not in GUIDANCE:
            raise typer.BadParameter(f"{guidance!r} is not one of {', '.join(GUIDANCE)}", param_hint="--guidance")
        target = None
        if toward is not None:
            try:
                target = tuple(float(v) for v in toward.split(","))
                assert len(target) == 2
            except (ValueError, AssertionError):
                raise typer.BadParameter("expected 'X,Y'", param_hint="--toward") from None
        points = None
        if init is not None:
            if not init.is_file():
                raise typer.BadParameter(f"{init} does not exist", param_hint="--init")
            points = np.load(init, allow_pickle=False)
            if points.ndim != 2 or points.shape[1] != 2:
                raise typer.BadParameter(f"expected an array of shape [n, 2], got {points.shape}", param_hint="--init")
        r = open_run(app_domain(), run, device)
        g = torch.Generator(device=r.device).manual_seed(seed)
        samples = app_domain().generate(r, n if points is None else len(points), sampler=sampler, steps=steps,
                                        generator=g, label=label, guidance_scale=guidance_scale, method=guidance,
                                        observe_x=observe_x, toward=target, compose=compose, init=points,
                                        strength=strength, progress=True)
        info = {"sampler": sampler or r.config["sample"]["sampler"], "steps": steps or r.config["sample"]["steps"],
                "guidance": guidance, "class": label, "seed": seed, "run": str(r.path),
                "title": f"toy {r.config['data']['dataset']}: {sampler or r.config['sample']['sampler']}, {guidance}"}
        write_samples(app_domain(), samples, out, info)


def app_domain():
    from polydiff.plugins.manager import get_manager

    return get_manager().domain("toy")
