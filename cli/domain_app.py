"""The sub-app every domain gets: ``train``, ``sample``, ``evaluate`` and ``info``, built from its ``Domain``.

A domain's own ``cli(app)`` runs first; any command it defines replaces the generic one of the same name.
"""
from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from polydiff.plugins.domain import Domain
from polydiff.plugins.manager import get_manager
from polydiff.plugins.runs import (Run, export_run, load_run, merge, read_config_file, resolve_config, resolve_device,
                                   train)

from .options import (ConfigOpt, DeviceOpt, NumOpt, OutOpt, PresetOpt, ResumeOpt, RunOpt, SamplerOpt, SeedOpt, StepsOpt,
                      TrainStepsOpt)


def open_run(domain: Domain, run: Path | None, device: str):
    """Load ``--run`` (or the shipped checkpoint) on ``--device``."""
    return load_run(domain, run, resolve_device(device))


def train_run(domain: Domain, out: Path, preset: str = "quick", config: Path | None = None, device: str = "auto",
              seed: int = 0, resume: bool = False, steps: int | None = None,
              override: dict[str, Any] | None = None) -> Run:
    """What ``train`` does: resolve the preset (or the run's own config on ``resume``) with the TOML file's and
    ``override``'s settings, record the command line in ``out/command.txt`` and train into ``out``."""
    override = merge(read_config_file(config) if config else {}, override or {})
    saved = out / "config.json"
    if resume and saved.is_file():  # continue the run as it was configured, with this call's overrides
        cfg = merge(json.loads(saved.read_text()), override)
    else:
        cfg = resolve_config(domain, preset, override)
        cfg["train"]["seed"] = seed
    if steps is not None:
        cfg["train"]["steps"] = steps
    dev = resolve_device(device)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "command.txt", "a") as f:
        f.write(shlex.join(["polydiff", *sys.argv[1:]]) + "\n")
    return train(domain, cfg, out, device=str(dev), resume=resume, hooks=get_manager().hook)


def trained_line(what: str, run: Run, out: Path, t0: float) -> str:
    """The line ``train`` ends with: what was trained, with which preset (a resumed run's own), how long, where."""
    preset = run.config.get("preset", "custom")
    return f"trained {what} ({preset}) in {time.time() - t0:.0f} s -> {out} (loss plot: {out / 'loss.png'})"


def write_samples(domain: Domain, samples: Any, out: Path, info: dict[str, Any]) -> list[Path]:
    """Save samples with the domain's writer, state ``info`` in ``out/samples.json``, tell plugins, print the files."""
    out.mkdir(parents=True, exist_ok=True)
    files = domain.save_samples(samples, out, info)
    (out / "samples.json").write_text(json.dumps(info, indent=2, default=str))
    get_manager().hook.polydiff_sample_end(domain=domain.name, out_dir=out, files=files)
    for f in files:
        typer.echo(str(f))
    return files


def _command_names(app: typer.Typer) -> set[str]:
    return {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}


def build_domain_app(domain: Domain) -> typer.Typer:
    """The typer sub-app of ``domain``."""
    app = typer.Typer(help=domain.summary, no_args_is_help=True)
    if domain.cli is not None:
        domain.cli(app)
    own = _command_names(app)

    if "train" not in own:
        @app.command("train")
        def train_cmd(out: OutOpt = Path("runs") / domain.name, preset: PresetOpt = "quick", config: ConfigOpt = None,
                      device: DeviceOpt = "auto", seed: SeedOpt = 0, resume: ResumeOpt = False,
                      steps: TrainStepsOpt = None) -> None:
            """Train a model into a run folder (checkpoints, metrics.jsonl, loss.png)."""
            t0 = time.time()
            run = train_run(domain, out, preset, config, device, seed, resume, steps)
            typer.echo(trained_line(domain.name, run, out, t0))

    if "sample" not in own:
        @app.command("sample")
        def sample_cmd(out: OutOpt = Path("samples") / domain.name, run: RunOpt = None, n: NumOpt = 16,
                       sampler: SamplerOpt = None, steps: StepsOpt = None, seed: SeedOpt = 0,
                       device: DeviceOpt = "auto") -> None:
            """Draw samples and write them with a PNG preview."""
            r = open_run(domain, run, device)
            g = torch.Generator(device=r.device).manual_seed(seed)
            samples = domain.generate(r, n, sampler=sampler, steps=steps, generator=g, progress=True)
            write_samples(domain, samples, out, {"sampler": sampler or r.config["sample"]["sampler"],
                                                 "steps": steps or r.config["sample"]["steps"], "seed": seed,
                                                 "run": str(r.path)})

    if "evaluate" not in own:
        @app.command("evaluate")
        def evaluate_cmd(run: RunOpt = None, n: NumOpt = 1000, sampler: SamplerOpt = None, steps: StepsOpt = None,
                         seed: SeedOpt = 0, device: DeviceOpt = "auto") -> None:
            """Print the domain's metrics for samples of the run against held-out data."""
            r = open_run(domain, run, device)
            g = torch.Generator(device=r.device).manual_seed(seed)
            metrics = domain.evaluate(r, sampler=sampler, steps=steps, n=n, generator=g)
            for k, v in metrics.items():
                typer.echo(f"{k}: {v:.6g}" if isinstance(v, float) else f"{k}: {v}")

    if "export" not in own:
        @app.command("export")
        def export_cmd(run: Annotated[Path, typer.Argument(help="Run folder from `train --out`.")], out: OutOpt,
                       dtype: Annotated[str, typer.Option(help="float16, bfloat16 or float32.")] = "float16") -> None:
            """Write a run's shippable form: config + EMA weights only (safetensors + JSON), loss plot, commands."""
            export_run(run, out, dtype)
            size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
            typer.echo(f"exported {run} -> {out} ({size / 1e6:.1f} MB, {dtype}); sample with --run {out}")

    if "info" not in own:
        @app.command("info")
        def info_cmd() -> None:
            """Show the domain's presets and whether it ships a checkpoint."""
            typer.echo(f"{domain.name}: {domain.summary}")
            typer.echo(f"presets: {', '.join(domain.presets)}")
            shipped = domain.shipped_run is not None and (Path(domain.shipped_run) / "config.json").is_file()
            typer.echo(f"shipped checkpoint: {domain.shipped_run if shipped else 'none'}")
            typer.echo(f"primary metric: {domain.primary_metric} ({'lower' if domain.lower_is_better else 'higher'} is better)")

    return app
