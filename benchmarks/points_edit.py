"""Editing point clouds (issue 21): held-out chairs turned into tables (and tables into chairs) by the shipped shapes
model, with ``edit``'s three methods at several strengths, in one run.

- inputs: the held-out clouds of the source class, ``--points`` points each (default: the run's training subset
  size, 256, so the network sees clouds of the size it was trained on and no anchored sets are needed), in the
  run's normalised frame;
- success: the edit's class by a 5-nearest-neighbour vote in Chamfer distance among the training clouds of every
  class (subsampled to the same size): the share judged the target class;
- kept: Chamfer distance from the edit to its source (lower keeps more of the input), the change of its bounding-box
  extent (size, relative, mean over axes) and of its centroid (pose), each as the median over inputs; as a scale,
  the median Chamfer distance from a source to the nearest training cloud of the target class (what an edit that
  forgets the input and draws a typical target would cost) is printed too.

The issue's goal: at least 80% success, with the source kept better than SDEdit at the same success rate.

    OMP_NUM_THREADS=1 python benchmarks/points_edit.py --guidance-scale 3 --steps 20 \
        --methods ddpm:0.6,ddpm:0.8,ddpm:1.0,invert:1.0,sdedit:0.3,sdedit:0.4,sdedit:0.5 --json runs/points-edit.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

K = 5


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=None, help="points run (default: the shipped shapes model)")
    p.add_argument("--pairs", default="chair:table,table:chair", help="SOURCE:TARGET pairs")
    p.add_argument("--methods", default="ddpm:1.0,invert:1.0,sdedit:0.5,sdedit:0.7,sdedit:1.0",
                   help="METHOD:STRENGTH pairs")
    p.add_argument("--points", type=int, default=None, help="points per cloud (default: the run's train_points)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the run's)")
    p.add_argument("--guidance-scale", type=float, default=None, help="classifier-free guidance (default: the run's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args()


def knn_class(clouds: torch.Tensor, refs: torch.Tensor, ref_labels: torch.Tensor, k: int = K) -> torch.Tensor:
    """The majority class of each cloud's k nearest reference clouds in Chamfer distance."""
    from polydiff.domains.points.metrics import pairwise_chamfer

    near = pairwise_chamfer(clouds, refs).topk(k, dim=1, largest=False).indices
    return torch.mode(ref_labels[near], dim=1).values


def extent(clouds: torch.Tensor) -> torch.Tensor:
    """Bounding-box size of each cloud along each axis [B, 3]."""
    return clouds.amax(1) - clouds.amin(1)


def main() -> None:
    a = arguments()
    import polydiff
    from polydiff.domains.points.metrics import chamfer, pairwise_chamfer, subsample
    from polydiff.domains.points.prepared import prepare
    from polydiff.plugins.domain import Batch
    from polydiff.plugins.editing import edit_run
    from polydiff.plugins.runtime import set_threads

    set_threads(None)
    run = polydiff.load("points", a.run)
    p = prepare(run.config["data"])
    n_points = a.points or int(run.config["data"]["train_points"] or run.config["data"]["n_points"])
    g = torch.Generator().manual_seed(a.seed)
    refs = subsample(torch.as_tensor(p.train_points, dtype=torch.float32), n_points, g)
    ref_labels = torch.as_tensor(p.train.labels)
    test = subsample(torch.as_tensor(p.test_points, dtype=torch.float32), n_points, g)
    test_labels = torch.as_tensor(p.test.labels)
    classes = list(p.train.classes)
    check = (knn_class(test, refs, ref_labels) == test_labels).float().mean()
    print(f"judge: {K}-NN in Chamfer distance over {len(refs)} training clouds of {n_points} points; on the "
          f"{len(test)} held-out clouds it is right for {float(check):.1%}")
    rows = []
    for pair in a.pairs.split(","):
        src_name, tgt_name = pair.split(":")
        src, tgt = classes.index(src_name), classes.index(tgt_name)
        x0 = test[test_labels == src]
        typical = pairwise_chamfer(x0, refs[ref_labels == tgt]).min(1).values.median()
        for spec in a.methods.split(","):
            method, strength = spec.split(":")
            t0 = time.perf_counter()
            out = edit_run(run, Batch(x0), tgt_name, source=src_name, method=method, strength=float(strength),
                           steps=a.steps, guidance_scale=a.guidance_scale, seed=a.seed)
            seconds = (time.perf_counter() - t0) / len(x0)
            y = torch.as_tensor(out["points"], dtype=torch.float32)
            success = float((knn_class(y, refs, ref_labels) == tgt).float().mean())
            kept = float(chamfer(y, x0).median())
            size = float(((extent(y) - extent(x0)).abs() / extent(x0)).mean(1).median())
            pose = float((y.mean(1) - x0.mean(1)).norm(dim=1).median())
            rows.append({"pair": pair, "method": method, "strength": float(strength), "n": len(x0),
                         "success": success, "chamfer_to_source": kept, "size_change": size, "centroid_shift": pose,
                         "typical_target_chamfer": float(typical), "seconds_per_edit": seconds})
            print(f"{pair:12s} {method:7s} {float(strength):4.2f}  n {len(x0):3d}  success {success:6.1%}  "
                  f"Chamfer to source {kept:.4f} (typical {src_name}->{tgt_name} {float(typical):.4f})  "
                  f"size change {size:6.1%}  centroid shift {pose:.4f}  {seconds:.2f} s/edit", flush=True)
    if a.json:
        a.json.write_text(json.dumps({"points": n_points, "steps": a.steps, "guidance_scale": a.guidance_scale,
                                      "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
