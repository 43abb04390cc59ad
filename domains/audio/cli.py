"""The audio domain's ``train``, ``sample`` and ``evaluate`` commands (normaliser stored with the run, class,
guidance, inpainting of a time span, Griffin-Lim iterations)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

from polydiff.cli.domain_app import open_run, train_run, trained_line, write_samples
from polydiff.cli.options import (ConfigOpt, DeviceOpt, OutOpt, PresetOpt, ResumeOpt, RunOpt, SamplerOpt, ScaleOpt,
                                  SeedOpt, StepsOpt)

ClassOpt = Annotated[Optional[str], typer.Option("--digit", "--class", help="Digit/class name or index, or 'all' (default: unconditional).")]
GlOpt = Annotated[Optional[int], typer.Option("--gl-iters", help="Griffin-Lim iterations (default from the run).")]


def _domain():
    from polydiff.plugins.manager import get_manager

    return get_manager().domain("audio")


def add_commands(app: typer.Typer) -> None:
    """Register ``train``, ``sample`` and ``evaluate`` on the audio sub-app."""

    @app.command("train")
    def train(out: OutOpt = Path("runs") / "audio", preset: PresetOpt = "quick", config: ConfigOpt = None,
              device: DeviceOpt = "auto", seed: SeedOpt = 0, resume: ResumeOpt = False, steps: StepsOpt = None,
              folder: Annotated[Optional[Path], typer.Option(
                  "--folder", help="Train on this folder of .wav/.flac/.ogg (sub-folders name classes).")] = None) -> None:
        """Train on spoken digits (or --folder); the log-mel normalisation is stored in the run's config."""
        t0 = time.time()
        override = {"data": {"source": "folder", "folder": str(folder)}} if folder is not None else None
        typer.echo(trained_line("audio", train_run(_domain(), out, preset, config, device, seed, resume, steps, override),
                                out, t0))

    @app.command("sample")
    def sample(out: OutOpt = Path("samples") / "audio", run: RunOpt = None,
               n: Annotated[int, typer.Option("-n", "--n", help="Number of clips.")] = 10,
               sampler: SamplerOpt = None, steps: StepsOpt = None, seed: SeedOpt = 0, device: DeviceOpt = "auto",
               label: ClassOpt = None, guidance_scale: ScaleOpt = None, gl_iters: GlOpt = None,
               inpaint: Annotated[Optional[Path], typer.Option(
                   "--inpaint", help="Audio file whose --mask span is regenerated (the rest is kept).")] = None,
               mask: Annotated[Optional[str], typer.Option(
                   "--mask", help="START:END in seconds of the 1 s clip to regenerate, e.g. 0.3:0.6.")] = None) -> None:
        """Sample clips: one 16 kHz WAV each, spectrograms.png titled by class, normalizer.json."""
        r = open_run(_domain(), run, device)
        g = torch.Generator(device=r.device).manual_seed(seed)
        samples = _domain().generate(r, n, sampler=sampler, steps=steps, generator=g, label=label,
                                     guidance_scale=guidance_scale, inpaint=inpaint, mask=mask, gl_iters=gl_iters,
                                     progress=True)
        info = {"sampler": sampler or r.config["sample"]["sampler"], "steps": steps or r.config["sample"]["steps"],
                "seed": seed, "run": str(r.path), "class": label, "guidance_scale": guidance_scale,
                "gl_iters": gl_iters or r.config["sample"].get("gl_iters"), "inpaint": str(inpaint) if inpaint else None,
                "mask": mask}
        write_samples(_domain(), samples, out, info)

    @app.command("evaluate")
    def evaluate(run: RunOpt = None,
                 n: Annotated[Optional[int], typer.Option("-n", "--n", help="Generated clips (default: as many as test clips).")] = None,
                 sampler: SamplerOpt = None, steps: StepsOpt = None, seed: SeedOpt = 0, device: DeviceOpt = "auto",
                 guidance_scale: ScaleOpt = None, gl_iters: GlOpt = None,
                 classifier_epochs: Annotated[int, typer.Option(help="Epochs of the judge classifier (cached).")] = 20,
                 floor: Annotated[bool, typer.Option(help="Also score real test clips and their Griffin-Lim floor.")] = True,
                 out: Annotated[Optional[Path], typer.Option("--out", help="Also write the metrics to this JSON.")] = None) -> None:
        """Accuracy, FID, IS, mIS, AM and NDB of generated clips, with the real test clips and the Griffin-Lim floor."""
        r = open_run(_domain(), run, device)
        g = torch.Generator(device=r.device).manual_seed(seed)
        result = _domain().evaluate(r, sampler=sampler, steps=steps, n=n, generator=g, guidance_scale=guidance_scale,
                                    gl_iters=gl_iters, classifier_epochs=classifier_epochs, floor=floor)
        for k, v in result.items():
            typer.echo(f"{k}: {v:.6g}")
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"metrics": result, "run": str(r.path),
                                       "sampler": sampler or r.config["sample"]["sampler"],
                                       "steps": steps or r.config["sample"]["steps"]}, indent=2))
