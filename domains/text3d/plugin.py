"""The text-to-3D domain as a polydiff plugin.

``train-prior`` (or the generic ``train``) fits the text-conditioned 2D prior on multi-view renders of the procedural
shapes; ``generate PROMPT`` distils a 3D object from it (mesh GLB/OBJ, turntable GIF, loss curve) and
``sample-prior PROMPT`` writes prior images (``sample --prompt`` / ``sample --images`` are the older spellings);
``evaluate`` reports R-precision of generated objects next to its ceiling (ground truth) and floor (untrained field).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.plugins import hookimpl
from polydiff.plugins.domain import Domain

from .data import RenderSetConfig, from_model_range
from .distill import DistillConfig, DistillResult, distill, make_field, plot_loss_curve
from .mesh import extract_mesh, save_mesh
from .prior import RenderDataset, build_prior_network, collate_renders, drop_embeddings, null_condition, prompt_condition
from .turntable import save_gif, save_strip, to_uint8, turntable_frames

DATA_KEYS = {f.name for f in dataclasses.fields(RenderSetConfig)}
SHIPPED = Path(__file__).parent / "checkpoints" / "prior"


def _presets() -> dict[str, dict[str, Any]]:
    quick = {
        "data": {"n_per_class": 24, "views_per_shape": 8, "size": 32, "voxel_resolution": 48, "n_samples": 64, "seed": 0},
        "network": {"base": 32, "mults": [1, 2, 2], "num_res": 1, "attn_levels": [2], "dropout": 0.0},
        "diffusion": {"parameterization": "edm", "sigma_data": 0.5, "schedule": "edm", "weighting": "edm",
                      "cond_dropout": 0.1},
        "train": {"steps": 2000, "batch_size": 32, "lr": 1e-3, "ema_decay": 0.995, "warmup": 100, "log_every": 50,
                  "ckpt_every": 500},
        "sample": {"sampler": "heun", "steps": 18, "grid": "karras", "sigma_min": 0.002, "sigma_max": 80.0,
                   "guidance_scale": 3.0},
        "distill": dataclasses.asdict(DistillConfig()),
        "evaluate": {"n_views": 8, "classifier_steps": 600, "mesh_resolution": 64, "mesh_threshold": 5.0},
    }
    full = {
        **quick,
        "data": {**quick["data"], "n_per_class": 120, "views_per_shape": 12, "size": 64, "voxel_resolution": 64,
                 "n_samples": 96},
        "network": {"base": 64, "mults": [1, 2, 2, 2], "num_res": 2, "attn_levels": [2, 3], "dropout": 0.1},
        "train": {**quick["train"], "steps": 40000, "batch_size": 64, "lr": 2e-4, "ema_decay": 0.9995,
                  "warmup": 1000, "ckpt_every": 2000},
        "distill": {**dataclasses.asdict(DistillConfig()), "steps": 2500, "size": 64, "n_samples": 96,
                    "resolution": 64, "batch": 4, "lr": 0.03},
        "evaluate": {**quick["evaluate"], "classifier_steps": 2000, "mesh_resolution": 96},
    }
    return {"quick": quick, "full": full}


def data_config(cfg: dict[str, Any], split: str = "train") -> RenderSetConfig:
    """The render-set settings of a data config; ``val``/``test`` use other seeds and a quarter of the shapes."""
    unknown = set(cfg) - DATA_KEYS
    if unknown:
        raise ValueError(f"unknown text3d data setting(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(DATA_KEYS))}")
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
    """One text-to-3D optimisation with the run's prior."""
    dev = run.device
    return distill(run.denoiser, lambda cams: prompt_condition(prompt, cams, dev), cfg, progress=progress, device=dev)


def prior_images(run, prompt: str, cams, *, sampler: str | None = None, steps: int | None = None,
                 generator: torch.Generator | None = None, guidance_scale: float | None = None,
                 progress: bool = False) -> torch.Tensor:
    """The prior's guided images [V, 3, S, S] in [0, 1] of ``prompt`` seen from ``cams`` (view-dependent prompts)."""
    cond = prompt_condition(prompt, cams, run.device)
    size = run.config["data"]["size"]
    x = run.sample(torch.empty(len(cams.azimuth), 3, size, size), cond=cond, sampler=sampler, steps=steps,
                   generator=generator, denoiser=run.guided(cond, guidance_scale), progress=progress)
    return from_model_range(x).cpu()


def generate(run, n: int, *, sampler: str | None = None, steps: int | None = None,
             generator: torch.Generator | None = None, prompt: str = "a red mug", images: bool = False,
             guidance_scale: float | None = None, progress: bool = False, method: str | None = None,
             iters: int | None = None, field: str | None = None, seed: int = 0,
             preset: str | None = None) -> dict[str, Any]:
    """``n`` 3D objects for ``prompt`` (score distillation), or with ``images=True`` n prior images of the prompt.

    ``method`` (sds/sjc), ``iters`` (distillation steps), ``field`` (voxel/mlp) override the run's ``distill`` settings,
    or those of the domain preset ``preset`` when one is named.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    if images:
        from .cameras import random_cameras

        cams = random_cameras(n, generator if generator is not None and generator.device.type == "cpu" else None)
        x = prior_images(run, prompt, cams, sampler=sampler, steps=steps, generator=generator,
                         guidance_scale=guidance_scale, progress=progress)
        return {"kind": "images", "prompt": prompt, "images": x}
    results = []
    for k in range(n):
        overrides = {"method": method, "steps": iters, "field": field, "guidance_scale": guidance_scale, "seed": seed + k}
        results.append(generate_object(run, prompt, distill_config(run, overrides, preset), progress))
    return {"kind": "objects", "prompt": prompt, "results": results,
            "mesh": {k: run.config.get("evaluate", {}).get(k) for k in ("mesh_resolution", "mesh_threshold")}}


def save_samples(samples: dict[str, Any], out: Path, info: dict[str, Any]) -> list[Path]:
    """Images: one PNG each and a strip of all. Objects: per object a GLB and an OBJ mesh, a turntable GIF, the loss
    curve and the field."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    if samples["kind"] == "images":
        images = to_uint8(samples["images"])
        files = [save_strip(img[None], out / f"prior_{k:02d}.png") for k, img in enumerate(images)]
        return files + [save_strip(images, out / "prior_samples.png")]
    files: list[Path] = []
    res = samples["mesh"].get("mesh_resolution") or 64
    thr = samples["mesh"].get("mesh_threshold") or 5.0
    previews = []
    for k, r in enumerate(samples["results"]):
        stem = f"object_{k:02d}"
        try:
            mesh = extract_mesh(r.field, resolution=res, threshold=thr)
            files += [save_mesh(mesh, out / f"{stem}.glb"), save_mesh(mesh, out / f"{stem}.obj")]
        except ValueError as err:
            (out / f"{stem}_mesh_error.txt").write_text(str(err) + "\n")
        frames = turntable_frames(r.field, n_frames=24, size=64)
        previews.append(frames[::3])
        files.append(save_gif(frames, out / f"{stem}_turntable.gif"))
        plot_loss_curve(r.losses, out / f"{stem}_loss.png")
        files.append(out / f"{stem}_loss.png")
        state = {k2: v.detach().cpu().contiguous() for k2, v in r.field.state_dict().items()}
        save_file(state, str(out / f"{stem}_field.safetensors"),
                  metadata={"config": json.dumps(r.config), "prompt": samples["prompt"], "seconds": f"{r.seconds:.1f}"})
        files.append(out / f"{stem}_field.safetensors")
        info[f"{stem}_seconds"] = round(r.seconds, 1)
    files.append(save_strip(np.concatenate(previews, axis=1) if len(previews) > 1 else previews[0], out / "preview.png"))
    return files


def evaluate(run, *, sampler: str | None = None, steps: int | None = None, n: int = 1000,
             generator: torch.Generator | None = None, prompts: list[str] | None = None, progress: bool = False,
             method: str | None = None, iters: int | None = None, seed: int = 0,
             target: str = "objects") -> dict[str, float]:
    """R-precision (colour, shape, both) over the first ``n`` prompts from the fixed evaluation views, next to its
    ceiling (renders of held-out ground-truth shapes) and floor; also the shape precision of each prompt.

    ``target="objects"``: objects distilled for each prompt (floor: an untrained field), and the mean distillation time
    per object. ``target="prior"``: the 2D prior's own images of each view-dependent prompt drawn with ``sampler`` and
    ``steps`` (floor: its unconditional images); this is what a sampler sweep varies.
    """
    from .data import caption
    from .metric import (DEFAULT_PROMPTS, eval_cameras, ground_truth_field, load_or_train_classifier, parse_prompt,
                         r_precision, render_views)

    if target not in ("objects", "prior"):
        raise ValueError(f"unknown evaluation target {target!r}; choose objects or prior")
    pairs = [parse_prompt(p) for p in prompts] if prompts else list(DEFAULT_PROMPTS)
    pairs = pairs[:max(1, n)]
    ev = run.config.get("evaluate", {})
    size, views = run.config["data"]["size"], ev.get("n_views", 8)
    clf = load_or_train_classifier(data_config(run.config["data"]), ev.get("classifier_steps", 600), progress=progress)
    cfg = distill_config(run, {"method": method, "steps": iters, "seed": seed})
    if generator is None:
        generator = torch.Generator(device=run.device).manual_seed(seed)
    cams = eval_cameras(views)
    gen_r, gt_r, floor_r, seconds = [], [], [], []
    for color, shape in pairs:
        gt_r.append(render_views(ground_truth_field(color, shape, resolution=run.config["data"]["voxel_resolution"]),
                                 size, views))
        if target == "prior":
            gen_r.append(prior_images(run, caption(color, shape), cams, sampler=sampler, steps=steps,
                                      generator=generator))
            floor_r.append(prior_images(run, caption(color, shape), cams, sampler=sampler, steps=steps,
                                        generator=generator, guidance_scale=0.0))  # scale 0: the unconditional model
            continue
        obj = generate_object(run, caption(color, shape), cfg, progress)
        seconds.append(obj.seconds)
        gen_r.append(render_views(obj.field, size, views))
        floor_r.append(render_views(make_field(cfg), size, views))
    metrics: dict[str, float] = {}
    for name, renders in (("", gen_r), ("ceiling_", gt_r), ("floor_", floor_r)):
        for k, v in r_precision(clf, renders, pairs).items():
            metrics[f"{name}rprecision_{k}"] = v
    for (color, shape), renders in zip(pairs, gen_r):
        metrics[f"rprecision_shape[{color} {shape}]"] = r_precision(clf, [renders], [(color, shape)])["shape"]
    metrics["prompts"] = float(len(pairs))
    if seconds:
        metrics["seconds_per_object"] = float(np.mean(seconds))
    return metrics


def make_domain() -> Domain:
    """The text3d Domain."""
    from .cli import add_commands

    return Domain(
        name="text3d",
        summary="text-to-3D: a text-conditioned render prior, score distillation into a radiance field, GLB/GIF export",
        presets=_presets(),
        shipped_run=SHIPPED,
        build_dataset=build_dataset,
        build_network=build_network,
        generate=generate,
        save_samples=save_samples,
        evaluate=evaluate,
        primary_metric="rprecision_shape",
        lower_is_better=False,
        collate=collate_renders,
        drop_cond=drop_embeddings,
        null_cond=null_condition,
        cli=add_commands,
        demo={"n": 1, "iters": 100},
        sweep={"target": "prior"},
    )


@hookimpl
def polydiff_register_domains(register) -> None:
    register(make_domain())
