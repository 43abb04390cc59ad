"""The text-to-3D domain as a polydiff plugin.

``train-prior`` (or the generic ``train``) fits the text-conditioned 2D prior on multi-view renders of the procedural
shapes; ``generate PROMPT`` distils a 3D object from it (mesh GLB/OBJ, turntable GIF, loss curve) and
``sample-prior PROMPT`` writes prior images (``sample --prompt`` / ``sample --images`` are the older spellings);
``evaluate`` reports R-precision of generated objects next to its ceiling (ground truth) and floor (untrained field).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.plugins import hookimpl
from polydiff.plugins.domain import Count, Domain, EvaluateRequest, SampleRequest, Samples, Verb
from polydiff.plugins.errors import OptionError
from polydiff.plugins.options import option

from .data import RenderSetConfig, from_model_range
from .distill import DistillConfig, DistillResult, distill, make_field, plot_loss_curve
from .mesh import extract_mesh, save_mesh
from .prior import RenderDataset, build_prior_network, collate_renders, drop_embeddings, null_condition, prompt_condition
from .turntable import save_gif, save_strip, to_uint8, turntable_frames

SHIPPED = Path(__file__).parent / "checkpoints" / "prior"
METHODS = ("sds", "sjc")
FIELDS = ("voxel", "mlp")


@dataclass
class Network:
    """The ``network`` section: the prior's U-Net (``prior.build_prior_network``)."""

    base: int = 32
    mults: tuple[int, ...] = (1, 2, 2)
    num_res: int = 1
    attn_levels: tuple[int, ...] = (2,)
    dropout: float = 0.0


@dataclass
class Evaluation:
    """The ``evaluate`` section: views per prompt, the judge's training steps, and mesh extraction."""

    n_views: int = 8
    classifier_steps: int = 600
    mesh_resolution: int = 64
    mesh_threshold: float = 5.0


def _prompt(text: str) -> str:
    if not str(text).strip():
        raise ValueError("empty prompt: say what to make, e.g. 'a red mug'")
    return str(text).strip()


@dataclass
class SampleOptions:
    """What text3d's ``sample`` (and its verbs ``generate`` and ``sample-prior``) take."""

    prompt: str = option("a red mug", "What to make, e.g. 'a red mug'.", parse=_prompt)
    images: bool = option(False, "Sample 2D prior images of the prompt instead of distilling objects.",
                          flags=("--images",))
    method: str = option("sds", "Distillation loss.", choices=METHODS)
    preset: str | None = option(None, "Distillation settings of this domain preset (quick or full; default: the "
                                "run's own).", choices=("quick", "full"))
    iters: int | None = option(None, "Distillation steps (default from the distill settings).", min=1)
    field: str | None = option(None, "Field (default from the distill settings).", choices=FIELDS)


@dataclass
class EvaluateOptions:
    """What text3d's ``evaluate`` takes beyond the shared options."""

    prompts: str | None = option(None, "';'-separated prompts (default: the fixed list).")
    iters: int | None = option(None, "Distillation steps (default from the distill settings).", min=1)
    method: str = option("sds", "Distillation loss.", choices=METHODS)
    prior: bool = option(False, "Score the 2D prior's images (with --sampler, --steps) instead of distilled objects.",
                         flags=("--prior",))


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
    return Samples({"kind": "objects", "results": results},
                   {"prompt": prompt, "method": opts.method, "preset": opts.preset,
                    "mesh": {"resolution": ev["mesh_resolution"], "threshold": ev["mesh_threshold"]},
                    "seconds": [round(r.seconds, 1) for r in results]})


def save_samples(samples: Samples, out: Path) -> list[Path]:
    """Images: one PNG each and a strip of all. Objects: per object a GLB and an OBJ mesh, a turntable GIF, the loss
    curve and the field."""
    from safetensors.torch import save_file

    if samples["kind"] == "images":
        images = to_uint8(samples["images"])
        files = [save_strip(img[None], out / f"prior_{k:02d}.png") for k, img in enumerate(images)]
        return files + [save_strip(images, out / "prior_samples.png")]
    files: list[Path] = []
    res, thr = samples.meta["mesh"]["resolution"], samples.meta["mesh"]["threshold"]
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
                  metadata={"config": json.dumps(r.config), "prompt": samples.meta["prompt"],
                            "seconds": f"{r.seconds:.1f}"})
        files.append(out / f"{stem}_field.safetensors")
    files.append(save_strip(np.concatenate(previews, axis=1) if len(previews) > 1 else previews[0], out / "preview.png"))
    return files


def evaluate(run, request: EvaluateRequest) -> dict[str, float]:
    """R-precision (colour, shape, both) over the first n prompts from the fixed evaluation views, next to its
    ceiling (renders of held-out ground-truth shapes) and floor; also the shape precision of each prompt.

    Objects (default): objects distilled for each prompt (floor: an untrained field), and the mean distillation time
    per object. ``--prior``: the 2D prior's own images of each view-dependent prompt drawn with the request's sampler
    and steps (floor: its unconditional images); this is what a sampler sweep varies."""
    from .data import caption
    from .metric import (DEFAULT_PROMPTS, eval_cameras, ground_truth_field, load_or_train_classifier, parse_prompt,
                         r_precision, render_views)

    opts = request.options
    prompts = [p.strip() for p in opts.prompts.split(";") if p.strip()] if opts.prompts else None
    try:
        pairs = [parse_prompt(p) for p in prompts] if prompts else list(DEFAULT_PROMPTS)
    except ValueError as exc:
        raise OptionError("--prompts", str(exc)) from None
    pairs = pairs[:request.n or len(pairs)]
    ev = run.config["evaluate"]
    size, views = run.config["data"]["size"], ev["n_views"]
    clf = load_or_train_classifier(data_config(run.config["data"]), ev["classifier_steps"], progress=request.progress)
    cfg = distill_config(run, {"method": opts.method, "steps": opts.iters, "seed": request.settings.seed or 0})
    target = "prior" if opts.prior else "objects"
    cams = eval_cameras(views)
    gen_r, gt_r, floor_r, seconds = [], [], [], []
    for color, shape in pairs:
        gt_r.append(render_views(ground_truth_field(color, shape, resolution=run.config["data"]["voxel_resolution"]),
                                 size, views))
        if target == "prior":
            req = request.sample(len(cams.azimuth))
            gen_r.append(prior_images(run, caption(color, shape), cams, req))
            floor_r.append(prior_images(run, caption(color, shape), cams, req, scale=0.0))  # 0: the unconditional model
            continue
        obj = generate_object(run, caption(color, shape), cfg, request.progress)
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
        sections={"data": RenderSetConfig, "network": Network, "distill": DistillConfig, "evaluate": Evaluation},
        options={"sample": SampleOptions, "evaluate": EvaluateOptions},
        counts={"sample": Count(1, "Objects to distil (or prior images with --images)."),
                "evaluate": Count(None, "Prompts: the first n of the list (default: all).")},
        verbs={"train-prior": Verb("train", "Train the text-conditioned 2D prior on renders of the shapes."),
               "generate": Verb("sample", "Text to 3D: distil an object for PROMPT (GLB + OBJ mesh, turntable GIF, "
                                "loss curve, field).", fixed={"images": False}, argument="prompt"),
               "sample-prior": Verb("sample", "Images of PROMPT from the 2D prior (random views): one PNG each and a "
                                    "strip.", fixed={"images": True}, defaults={"n": 4}, argument="prompt")},
        collate=collate_renders,
        drop_cond=drop_embeddings,
        null_cond=null_condition,
        demo={"n": 1, "iters": 100},
        sweep={"prior": True},
    )


@hookimpl
def polydiff_register_domains(register) -> None:
    register(make_domain())
