"""text3d's R-precision: distilled objects (or the prior's own images) judged from fixed views, with ceiling and
floor."""
from __future__ import annotations

import numpy as np

from polydiff.plugins.domain import EvaluateRequest
from polydiff.plugins.errors import OptionError

from .distill import make_field
from .sampling import data_config, distill_config, generate_object, prior_images


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
