"""text3d's evaluation: distilled objects (or the prior's own images) judged from fixed views by a colour/shape
classifier, with ceiling and floor, on the fixed prompts and the run's held-out colour-shape pairs; the exported mesh of
each object is checked for its class's parts and its connected components."""
from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

import numpy as np

from polydiff.plugins.domain import EvaluateRequest
from polydiff.plugins.errors import OptionError

from .distill import make_field
from .sampling import data_config, distill_config, generate_object, object_mesh, prior_images
from .sections import RenderSetConfig


def prompt_list(run, prompts: str | None) -> list[tuple[str, str, str]]:
    """(prompt, colour, shape) of ``--prompts`` (';'-separated), else the fixed list and then the run's held-out pairs
    (``data.holdout``: colour-shape pairs its prior never saw)."""
    from .data import caption
    from .metric import DEFAULT_PROMPTS, parse_prompt

    if prompts:
        texts = [p.strip() for p in prompts.split(";") if p.strip()]
        try:
            return [(t, *parse_prompt(t)) for t in texts]
        except ValueError as exc:
            raise OptionError("--prompts", str(exc)) from None
    pairs = list(DEFAULT_PROMPTS) + [tuple(h.split()) for h in run.config["data"].get("holdout", [])]
    return [(caption(c, s), c, s) for c, s in dict.fromkeys(pairs)]


def judge_config(data: dict) -> RenderSetConfig:
    """The render set the judge learns from: the prior's, but with every colour-shape pair (a judge that never saw a
    green chair learns that green means "not a chair" and scores a held-out pair's ground truth at chance)."""
    return dataclasses.replace(data_config(data), holdout=())


def _views_folder(path: Path | None) -> Path | None:
    if path is None:
        return None
    if path.exists() and any(path.iterdir()):
        raise OptionError("--views", f"{path} exists and is not empty; name a new folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _mean(metrics: dict[str, float], prefix: str, names: list[str]) -> float | None:
    values = [metrics[f"{prefix}[{n}]"] for n in names if f"{prefix}[{n}]" in metrics]
    return float(statistics.fmean(values)) if values else None


def evaluate(run, request: EvaluateRequest) -> dict[str, float]:
    """R-precision (colour, shape, both) over the first n prompts from the fixed evaluation views, next to its
    ceiling (renders of held-out ground-truth shapes) and floor; per prompt its shape precision and, for objects,
    its mesh's components and class check (``shape_checks``); the held-out pairs' means as ``*_heldout``.

    Objects (default): objects distilled for each prompt (floor: an untrained field), and the mean distillation time
    per object. ``--prior``: the 2D prior's own images of each view-dependent prompt drawn with the request's sampler
    and steps (floor: its unconditional images); this is what a sampler sweep varies."""
    from .metric import eval_cameras, ground_truth_field, load_or_train_classifier, r_precision, render_views
    from .plugin import SampleOptions
    from .shape_checks import check_shape
    from .turntable import save_strip, to_uint8

    opts = request.options
    items = prompt_list(run, opts.prompts)[:request.n or None]
    held = {tuple(h.split()) for h in run.config["data"].get("holdout", [])}
    views_dir = _views_folder(opts.views)
    ev = run.config["evaluate"]
    size, views = run.config["data"]["size"], ev["n_views"]
    clf = load_or_train_classifier(judge_config(run.config["data"]), ev["classifier_steps"], progress=request.progress)
    cfg = distill_config(run, {"method": opts.method, "steps": opts.iters, "seed": request.settings.seed or 0})
    cams = eval_cameras(views)
    gen_r, gt_r, floor_r, seconds = [], [], [], []
    metrics: dict[str, float] = {}
    for prompt, color, shape in items:
        truth = ground_truth_field(color, shape, resolution=run.config["data"]["voxel_resolution"])
        gt_r.append(render_views(truth, size, views))
        if opts.prior:
            req = request.sample(len(cams.azimuth))
            gen_r.append(prior_images(run, prompt, cams, req))
            floor_r.append(prior_images(run, prompt, cams, req, scale=0.0))  # 0: the unconditional model
            if views_dir is not None:
                save_strip(to_uint8(gen_r[-1]), views_dir / f"{color}_{shape}_prior.png")
            continue
        obj = generate_object(run, prompt, cfg, request.progress)
        seconds.append(obj.seconds)
        gen_r.append(render_views(obj.field, size, views))
        floor_r.append(render_views(make_field(cfg), size, views))
        mesh, report = object_mesh(obj.field, ev, SampleOptions())
        key = f"{color} {shape}"
        metrics[f"components[{key}]"] = float(report.get("components", 0))
        check = check_shape(mesh, shape) if not isinstance(mesh, str) else {"passed": False}
        if check.get("passed") is not None:
            metrics[f"geometry[{key}]"] = float(bool(check["passed"]))
        if views_dir is not None:
            rows = [np.concatenate(list(to_uint8(render_views(f, opts.views_size, views))), axis=1)
                    for f in (obj.field, truth)]
            save_strip(np.concatenate(rows, axis=0)[None], views_dir / f"{key.replace(' ', '_')}.png")
    pairs = [(c, s) for _, c, s in items]
    held_idx = [i for i, p in enumerate(pairs) if p in held]
    for name, renders in (("", gen_r), ("ceiling_", gt_r), ("floor_", floor_r)):
        for k, v in r_precision(clf, renders, pairs).items():
            metrics[f"{name}rprecision_{k}"] = v
        if held_idx:
            sub = r_precision(clf, [renders[i] for i in held_idx], [pairs[i] for i in held_idx])
            metrics.update({f"{name}rprecision_{k}_heldout": v for k, v in sub.items()})
    for (color, shape), renders in zip(pairs, gen_r):
        metrics[f"rprecision_shape[{color} {shape}]"] = r_precision(clf, [renders], [(color, shape)])["shape"]
    names = [f"{c} {s}" for c, s in pairs]
    for summary, prefix in (("geometry_pass", "geometry"), ("components_mean", "components")):
        value = _mean(metrics, prefix, names)
        if value is not None:
            metrics[summary] = value
    if not opts.prior:
        metrics["one_component"] = float(np.mean([metrics[f"components[{n}]"] == 1 for n in names]))
    metrics["prompts"] = float(len(pairs))
    if seconds:
        metrics["seconds_per_object"] = float(np.mean(seconds))
    return metrics
