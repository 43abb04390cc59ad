"""The points domain's ``sample`` and ``evaluate`` commands (class, guidance, completion, metric options)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

from polydiff.cli.domain_app import open_run, write_samples
from polydiff.cli.options import DeviceOpt, OutOpt, RunOpt, SamplerOpt, ScaleOpt, SeedOpt, StepsOpt

ClassOpt = Annotated[Optional[str], typer.Option("--class", help="Class name or index (labelled sets only).")]


def _domain():
    from polydiff.plugins.manager import get_manager

    return get_manager().domain("points")


def add_commands(app: typer.Typer) -> None:
    """Register ``sample`` and ``evaluate`` on the points sub-app."""

    @app.command("sample")
    def sample(out: OutOpt = Path("samples") / "points", run: RunOpt = None,
               n: Annotated[int, typer.Option("-n", "--n", help="Number of clouds.")] = 16,
               points: Annotated[Optional[int], typer.Option(
                   "--points", min=1, help="Points per cloud (default: the run's, 2048 for the shipped models).")] = None,
               sampler: SamplerOpt = None, steps: StepsOpt = None, seed: SeedOpt = 0, device: DeviceOpt = "auto",
               label: ClassOpt = None, guidance_scale: ScaleOpt = None,
               complete: Annotated[Optional[Path], typer.Option(
                   "--complete", "--partial",
                   help="Shape completion: this partial cloud/mesh file's points stay fixed, the rest is generated.")] = None,
               upsample: Annotated[Optional[Path], typer.Option(
                   "--upsample", help="Upsampling: this sparse cloud's points stay fixed and --points are filled in.")] = None,
               partial_points: Annotated[Optional[int], typer.Option(
                   min=1, help="Points taken from --complete/--upsample (needed for a mesh; default: all points of a "
                               "cloud).")] = None) -> None:
        """Sample point clouds: one PLY each, preview.png and clouds.json (normalisation stated)."""
        from .files import read_cloud

        if complete is not None and upsample is not None:
            raise typer.BadParameter("give one of --complete and --upsample", param_hint="--upsample")
        given, flag = (complete, "--complete") if complete is not None else (upsample, "--upsample")
        r = open_run(_domain(), run, device)
        n_points = points or int(r.config["data"]["n_points"])
        known = None
        if given is not None:
            try:
                known = read_cloud(given, n_points=partial_points)
            except ValueError as exc:
                raise typer.BadParameter(str(exc).replace("give n_points", "give --partial-points"),
                                         param_hint=flag) from None
            if len(known) >= n_points:
                raise typer.BadParameter(f"{given} has {len(known)} points; ask for more with --points (now {n_points})",
                                         param_hint="--points")
        g = torch.Generator(device=r.device).manual_seed(seed)
        samples = _domain().generate(r, n, sampler=sampler, steps=steps, generator=g, label=label,
                                     guidance_scale=guidance_scale, partial=known, progress=True, n_points=n_points)
        info = {"sampler": sampler or r.config["sample"]["sampler"], "steps": steps or r.config["sample"]["steps"],
                "seed": seed, "run": str(r.path), "class": label, "guidance_scale": guidance_scale,
                "n_points": n_points, "complete": str(complete) if complete else None,
                "upsample": str(upsample) if upsample else None}
        write_samples(_domain(), samples, out, info)

    @app.command("evaluate")
    def evaluate(run: RunOpt = None,
                 n: Annotated[Optional[int], typer.Option("-n", "--n", help="Held-out clouds to compare (default all).")] = None,
                 sampler: SamplerOpt = None, steps: StepsOpt = None, seed: SeedOpt = 0, device: DeviceOpt = "auto",
                 emd_points: Annotated[int, typer.Option(help="Points per cloud for the exact EMD (CPU cost ~ n^3).")] = 256,
                 metrics: Annotated[str, typer.Option(help="Comma-separated distances: cd, emd.")] = "cd,emd",
                 guidance_scale: ScaleOpt = None,
                 reference: Annotated[Optional[Path], typer.Option(
                     "--reference", help="Folder of meshes to compare with (default: the run's held-out set).")] = None,
                 oracle: Annotated[bool, typer.Option(
                     "--oracle", help="Also score training clouds against the same references (the train-vs-held-out "
                                      "figures a perfect model would get).")] = False,
                 out: Annotated[Optional[Path], typer.Option("--out", help="Also write the metrics to this JSON.")] = None) -> None:
        """MMD, COV and 1-NNA (Chamfer, EMD) of samples vs the held-out set or --reference meshes (EMD on a random
        --emd-points subsample of each cloud, exact assignment); --oracle adds the train-vs-reference figures."""
        names = tuple(m.strip() for m in metrics.split(",") if m.strip())
        bad = [m for m in names if m not in ("cd", "emd")]
        if bad or not names:
            raise typer.BadParameter(f"unknown metric(s) {', '.join(bad) or '(none)'}; use cd and/or emd", param_hint="--metrics")
        from .plugin import reference_clouds, sampling_spec

        r = open_run(_domain(), run, device)
        ref = None
        if reference is not None:
            ref, loaded = reference_clouds(r, reference, seed)
            typer.echo(f"reference {reference}: {loaded.report()}", err=True)
        g = torch.Generator(device=r.device).manual_seed(seed)
        result = _domain().evaluate(r, sampler=sampler, steps=steps, n=n, generator=g, metrics=names,
                                    emd_points=emd_points, guidance_scale=guidance_scale, oracle=oracle, reference=ref)
        norm = sampling_spec(r.config).normalization.to_dict()
        for k, v in result.items():
            typer.echo(f"{k}: {v:.6g}")
        typer.echo(f"normalization: {norm['description']}")
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"metrics": result, "normalization": norm, "run": str(r.path),
                                       "sampler": sampler or r.config["sample"]["sampler"],
                                       "steps": steps or r.config["sample"]["steps"]}, indent=2))
