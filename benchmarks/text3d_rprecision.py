"""Text-to-3D R-precision over several seeds (not run by CI): objects distilled for the fixed prompt list vs
ground-truth shapes (ceiling) vs an untrained field (floor), scored by the colour/shape classifier trained on renders
of the procedural set, plus the seconds per object.

One seed gives 7 objects, so its shape precision moves in steps of about 1/7; the mean over seeds is the figure.

    python benchmarks/text3d_rprecision.py --seeds 0,1,2,3            # the shipped prior, quick distillation
    python benchmarks/text3d_rprecision.py --run RUN --method sjc --iters 600
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from polydiff.domains.text3d.plugin import make_domain
from polydiff.plugins.runs import load_run

COLUMNS = {"rprecision_color": "colour", "rprecision_shape": "shape", "ceiling_rprecision_color": "ceiling colour",
           "ceiling_rprecision_shape": "ceiling shape", "floor_rprecision_color": "floor colour",
           "floor_rprecision_shape": "floor shape", "seconds_per_object": "s/object"}
PER_PROMPT = "rprecision_shape["  # evaluate's per-prompt keys: rprecision_shape[<colour> <shape>]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=None, help="a prior run folder (default: the shipped prior)")
    ap.add_argument("--seeds", default="0,1,2,3", help="comma-separated distillation seeds")
    ap.add_argument("--method", default="sds", choices=("sds", "sjc"))
    ap.add_argument("--iters", type=int, default=None, help="distillation steps (default: the run's)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    domain = make_domain()
    run = load_run(domain, args.run, args.device)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        rows.append(run.evaluate(seed=seed, method=args.method, iters=args.iters, progress=True))
        per_prompt = {k[len(PER_PROMPT):-1]: v for k, v in rows[-1].items() if k.startswith(PER_PROMPT)}
        print(f"seed {seed}: " + ", ".join(f"{prompt} {v:.2f}" for prompt, v in per_prompt.items()), flush=True)
    print(f"\ntext3d R-precision, {args.method}, run {run.path}, torch threads {torch.get_num_threads()}")
    print(f"{'seed':<6}" + "".join(f"{name:>16}" for name in COLUMNS.values()))
    for seed, r in zip(args.seeds.split(","), rows):
        print(f"{seed:<6}" + "".join(f"{r[c]:>16.3f}" for c in COLUMNS))
    print(f"{'mean':<6}" + "".join(f"{statistics.fmean(r[c] for r in rows):>16.3f}" for c in COLUMNS))
    gap = statistics.fmean(r["ceiling_rprecision_shape"] - r["rprecision_shape"] for r in rows)
    print(f"shape precision below the ceiling: {100 * gap:.1f} points on average (goal: at most 15)")


if __name__ == "__main__":
    main()
