"""Text-to-3D R-precision (not run by CI): generated objects vs ground-truth shapes (ceiling) vs an untrained field
(floor), scored by the colour/shape classifier trained on renders of the procedural set.

Usage: python benchmarks/text3d_rprecision.py --run RUN [--preset quick] [--prompts 7] [--method sds] [--iters N]
(``RUN`` from ``polydiff text3d train --preset quick --out RUN``; without --run the prior is trained first into
runs/text3d_bench). Prints one table: colour / shape / both top-1 precision per source, and seconds per generation.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from polydiff.domains.text3d.data import caption
from polydiff.domains.text3d.metric import (DEFAULT_PROMPTS, ground_truth_field, load_or_train_classifier, r_precision,
                                           render_views)
from polydiff.domains.text3d.plugin import data_config, distill_config, generate_object, make_domain
from polydiff.domains.text3d.distill import make_field
from polydiff.plugins.runs import load_run, resolve_config, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=None)
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--prompts", type=int, default=len(DEFAULT_PROMPTS))
    ap.add_argument("--method", default="sds", choices=("sds", "sjc"))
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--guidance-scale", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    domain = make_domain()
    if args.run is None:
        args.run = Path("runs/text3d_bench")
        if not (args.run / "config.json").is_file():
            train(domain, resolve_config(domain, args.preset), args.run, device="cpu")
    run = load_run(domain, args.run, "cpu")
    cfg = distill_config(run, {"method": args.method, "steps": args.iters, "guidance_scale": args.guidance_scale,
                               "seed": args.seed})
    ev = run.config.get("evaluate", {})
    size, views = run.config["data"]["size"], ev.get("n_views", 8)
    clf = load_or_train_classifier(data_config(run.config["data"]), ev.get("classifier_steps", 600), progress=True)
    pairs = list(DEFAULT_PROMPTS)[: args.prompts]
    gen, gt, floor, secs = [], [], [], []
    for color, shape in pairs:
        t0 = time.time()
        obj = generate_object(run, caption(color, shape), cfg, progress=True)
        secs.append(time.time() - t0)
        gen.append(render_views(obj.field, size, views))
        gt.append(render_views(ground_truth_field(color, shape, resolution=run.config["data"]["voxel_resolution"]), size, views))
        floor.append(render_views(make_field(cfg), size, views))
    rows = [("ground truth (ceiling)", r_precision(clf, gt, pairs)), (f"generated ({args.method})", r_precision(clf, gen, pairs)),
            ("untrained field (floor)", r_precision(clf, floor, pairs))]
    print(f"\ntext3d R-precision: {len(pairs)} prompts x {views} views, renders {size}x{size}, "
          f"{cfg.steps} {args.method} steps, guidance {cfg.guidance_scale}, run {args.run}")
    print(f"{'source':<26}{'colour':>8}{'shape':>8}{'both':>8}")
    for name, r in rows:
        print(f"{name:<26}{100 * r['color']:>8.1f}{100 * r['shape']:>8.1f}{100 * r['both']:>8.1f}")
    print(f"seconds per generation: mean {sum(secs) / len(secs):.0f}, max {max(secs):.0f} "
          f"(torch threads {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
