"""text3d's functions behind the contract: the render set and the prior's network, prior images of a prompt, and
objects distilled from the prior, written as meshes, turntables and fields."""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.plugins.domain import SampleRequest, Samples
from polydiff.plugins.errors import OptionError

from .cleanup import clean_mesh, mesh_report, report_line
from .data import from_model_range
from .distill import DistillResult, distill, plot_loss_curve
from .mesh import extract_mesh, save_mesh
from .plugin import METHODS, SampleOptions
from .prior import RenderDataset, build_prior_network, null_condition, prompt_condition
from .sections import DistillConfig, RenderSetConfig
from .turntable import save_gif, save_strip, to_uint8, turntable_frames


def data_config(cfg: dict[str, Any], split: str = "train") -> RenderSetConfig:
    """The render-set settings of a data config; ``val``/``test`` use other seeds and a quarter of the shapes."""
    rs = RenderSetConfig(**cfg)
    if split == "train":
        return rs
    offset = {"val": 1, "test": 2}.get(split)
    if offset is None:
        raise ValueError(f"unknown split {split!r}; use train, val or test")
    return dataclasses.replace(rs, seed=rs.seed + 1000 * offset, n_per_class=max(2, rs.n_per_class // 4))


def build_dataset(cfg: dict[str, Any], split: str) -> RenderDataset:
    return RenderDataset(data_config(cfg, split), progress=True)


def build_network(cfg: dict[str, Any]):
    net = dict(cfg["network"])
    return build_prior_network(size=cfg["data"]["size"], **net)


def distill_config(run, overrides: dict[str, Any] | None = None, preset: str | None = None) -> DistillConfig:
    """The run's distillation settings, or those of the domain preset ``preset``, with ``overrides`` (None values
    ignored) merged on top. A preset's render size is not taken: renders always have the prior's image size."""
    if preset is None:
        base = dict(run.config.get("distill", {}))
    else:
        base = {k: v for k, v in run.domain.preset(preset).get("distill", {}).items() if k != "size"}
    base.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if base.get("size", run.config["data"]["size"]) != run.config["data"]["size"]:
        raise ValueError(f"distillation renders must have the prior's image size {run.config['data']['size']}")
    base.setdefault("size", run.config["data"]["size"])
    return DistillConfig.from_dict(base)


def generate_object(run, prompt: str, cfg: DistillConfig, progress: bool = False) -> DistillResult:
    """One text-to-3D optimisation with the run's prior (the null prompt of guidance: ``prior.null_condition``)."""
    dev = run.device
    return distill(run.denoiser, lambda cams: prompt_condition(prompt, cams, dev), cfg, progress=progress, device=dev,
                   null=lambda cams: null_condition(prompt_condition(prompt, cams, dev)))


def prior_images(run, prompt: str, cams, request: SampleRequest, *, scale: float | None = None) -> torch.Tensor:
    """The prior's guided images [V, 3, S, S] in [0, 1] of ``prompt`` seen from ``cams`` (view-dependent prompts);
    ``scale`` overrides the request's guidance scale (0: the unconditional model)."""
    cond = prompt_condition(prompt, cams, run.device)
    size = run.config["data"]["size"]
    settings = request.settings if scale is None else dataclasses.replace(request.settings, guidance_scale=scale)
    x = run.draw(torch.empty(len(cams.azimuth), 3, size, size), request, cond=cond,
                 denoiser=run.guided(cond, settings))
    return from_model_range(x).cpu()


def generate(run, request: SampleRequest) -> Samples:
    """``n`` 3D objects for the prompt (score distillation), or with ``--images`` n prior images of it.

    ``--method``, ``--iters``, ``--field`` override the run's ``distill`` settings, or those of the domain preset
    ``--preset`` when one is named; ``--guidance-scale``, when given, is the distillation's guidance scale."""
    opts, n = request.options or SampleOptions(), request.n
    prompt = opts.prompt
    if opts.images:
        from .cameras import random_cameras

        g = request.generator
        cams = random_cameras(n, g if g is not None and g.device.type == "cpu" else None)
        return Samples({"kind": "images", "images": prior_images(run, prompt, cams, request)}, {"prompt": prompt})
    if opts.method not in METHODS:
        raise OptionError("--method", f"unknown distillation method {opts.method!r}; choose sds or sjc")
    scale = request.settings.guidance_scale if "guidance_scale" in request.explicit else None
    seed = request.settings.seed or 0
    results = []
    for k in range(n):
        overrides = {"method": opts.method, "steps": opts.iters, "field": opts.field, "guidance_scale": scale,
                     "seed": seed + k}
        results.append(generate_object(run, prompt, distill_config(run, overrides, opts.preset), request.progress))
    ev = run.config["evaluate"]
    meshes, reports = [], []
    for k, r in enumerate(results):
        mesh, report = object_mesh(r.field, ev, opts)
        meshes.append(mesh)
        reports.append(report)
        if request.progress:
            print(f"object_{k:02d} mesh: {mesh_line(report)}", file=sys.stderr)
    return Samples({"kind": "objects", "results": results, "meshes": meshes, "preview_size": opts.preview_size},
                   {"prompt": prompt, "method": opts.method, "preset": opts.preset,
                    "mesh": {"resolution": ev["mesh_resolution"], "threshold": ev["mesh_threshold"],
                             "cleanup": cleanup_settings(opts), "objects": reports},
                    "seconds": [round(r.seconds, 1) for r in results]})


def mesh_line(report: dict[str, Any]) -> str:
    """One object's mesh report in one line, with marching cubes' mesh before the clean-up when there was one."""
    line = report_line(report)
    if "marching_cubes" in report:
        line += f" (marching cubes: {report_line(report['marching_cubes'])}; {report['seconds']} s)"
    return line


def cleanup_settings(opts: SampleOptions) -> dict[str, Any] | None:
    """The mesh clean-up ``opts`` ask for, as recorded in samples.json (None: the raw marching-cubes mesh)."""
    if not opts.mesh_cleanup:
        return None
    return {"blur": opts.mesh_blur, "components": opts.mesh_components, "holes": opts.mesh_holes,
            "smooth": opts.mesh_smooth}


def object_mesh(field, ev: dict[str, Any], opts: SampleOptions) -> tuple[Any, dict[str, Any]]:
    """The exported mesh of one field (or the reason there is none, a string) and its report; with clean-up the report
    also gives marching cubes' mesh before the mesh-level steps, so the two can be compared."""
    t0 = time.perf_counter()
    cleanup = cleanup_settings(opts)
    try:
        mesh = extract_mesh(field, resolution=ev["mesh_resolution"], threshold=ev["mesh_threshold"],
                            blur=cleanup["blur"] if cleanup else 0.0)
    except ValueError as err:
        return str(err), {"error": str(err)}
    before = mesh_report(mesh)
    if cleanup:
        mesh = clean_mesh(mesh, components=cleanup["components"], max_hole=cleanup["holes"], smooth=cleanup["smooth"])
    report = mesh_report(mesh)
    if cleanup:
        report["marching_cubes"] = before
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return mesh, report


def save_samples(samples: Samples, out: Path) -> list[Path]:
    """Images: one PNG each and a strip of all. Objects: per object a GLB and an OBJ mesh (the one ``generate`` made),
    a turntable GIF of ``preview_size`` px frames, the loss curve and the field; a strip of every third frame."""
    from safetensors.torch import save_file

    if samples["kind"] == "images":
        images = to_uint8(samples["images"])
        files = [save_strip(img[None], out / f"prior_{k:02d}.png") for k, img in enumerate(images)]
        return files + [save_strip(images, out / "prior_samples.png")]
    files: list[Path] = []
    size = samples["preview_size"]
    previews = []
    for k, (r, mesh) in enumerate(zip(samples["results"], samples["meshes"])):
        stem = f"object_{k:02d}"
        if isinstance(mesh, str):
            (out / f"{stem}_mesh_error.txt").write_text(mesh + "\n")
        else:
            files += [save_mesh(mesh, out / f"{stem}.glb"), save_mesh(mesh, out / f"{stem}.obj")]
        frames = turntable_frames(r.field, n_frames=24, size=size)
        previews.append(frames[::3])
        files.append(save_gif(frames, out / f"{stem}_turntable.gif"))
        plot_loss_curve(r.losses, out / f"{stem}_loss.png")
        files.append(out / f"{stem}_loss.png")
        state = {k2: v.detach().cpu().contiguous() for k2, v in r.field.state_dict().items()}
        save_file(state, str(out / f"{stem}_field.safetensors"),
                  metadata={"config": json.dumps(r.config), "prompt": samples.meta["prompt"],
                            "seconds": f"{r.seconds:.1f}"})
        files.append(out / f"{stem}_field.safetensors")
    files.append(save_strip(np.concatenate(previews, axis=1) if len(previews) > 1 else previews[0], out / "preview.png"))
    return files
