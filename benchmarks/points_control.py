"""Shape completion from a partial scan (issue 20, item 4): a ControlNet control run against training-free completion
and retrieval, on the held-out clouds of a set, in one run and at the same NFE.

- inputs: the first ``-n`` held-out clouds of the base run's set (2048 points, the run's normalised frame), each seen
  by a depth camera from its own seeded random viewpoint (``domains/points/partial.py``: the z-buffer of the
  ``partial`` control, on the full cloud);
- (a) ``controlnet``: the control run sampled with the scan as ``--control`` (256 of the visible points);
- (b) ``complete``: the base run's ``sample --complete`` (the scan's points stay fixed, inpainting guidance; through a
  PLY file, the user's path);
- (c) ``retrieval``: the training cloud nearest to the scan (one-sided Chamfer distance from the 256 scan points the
  control run reads, to ``--retrieval-points`` of each training cloud);
- ``uncontrolled``: the base run's own samples (no scan), for scale;
- all sampled unconditionally (the null class: the scan alone says what the shape is), with the same sampler, steps
  and noise seed.

Columns: Chamfer distance (squared, both ways, as ``metrics.chamfer``) from the completion to the full held-out cloud
(the issue's goal: (a) below (b) and (c) on both sets), and one-sided from the scan to the completion (how well the
completion keeps what was seen); means and medians over the inputs, seconds per shape.

    OMP_NUM_THREADS=1 python benchmarks/points_control.py --control-run runs/points-partial-shapes -n 50 \\
        --json runs/points-control-shapes.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

METHODS = ("controlnet", "complete", "retrieval", "uncontrolled")


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--control-run", type=Path, required=True, help="a points control run (train-control --control "
                                                                    "partial); its base run is the base")
    p.add_argument("-n", type=int, default=50, help="held-out clouds")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--control-scale", type=float, default=None,
                   help="guidance on the control for (a) (default: the control run's)")
    p.add_argument("--seed", type=int, default=0, help="viewpoints and sampling noise")
    p.add_argument("--retrieval-points", type=int, default=512, help="points of each training cloud searched")
    p.add_argument("--json", type=Path, default=None, help="write the table and per-input figures here")
    p.add_argument("--previews", type=Path, default=None, help="write a PNG of scans and completions here")
    return p.parse_args()


def one_sided(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared distance from each point of a [N, 3] to its nearest point of each cloud of b [M, K, 3] -> [M]."""
    a = a.float()
    out = []
    for part in b.float().split(64):
        flat = part.reshape(-1, 3)
        d = (a.pow(2).sum(1, keepdim=True) + flat.pow(2).sum(1)[None] - 2 * a @ flat.T).clamp_min(0)
        out.append(d.reshape(len(a), len(part), -1).amin(2).mean(0))
    return torch.cat(out)


def main() -> None:
    args = arguments()
    import polydiff
    from polydiff.core.samplers import nfe
    from polydiff.domains.points.files import preview_grid, write_ply
    from polydiff.domains.points.metrics import chamfer
    from polydiff.domains.points.partial import CONTROL_POINTS, random_directions, visible
    from polydiff.domains.points.prepared import prepare
    from polydiff.plugins.manager import get_manager
    from polydiff.plugins.runs import shipped_folder
    from polydiff.plugins.runtime import set_threads

    set_threads(None)
    domain = get_manager().domain("points")
    control_run = polydiff.load("points", args.control_run)
    where = control_run.config["control"]["base_run"]
    base = polydiff.load("points", shipped_folder(domain, where) or Path(where))
    prepared = prepare(base.config["data"])
    norm = prepared.normalization
    truth = torch.as_tensor(prepared.test_points[:args.n], dtype=torch.float32)
    train = torch.as_tensor(prepared.train_points, dtype=torch.float32)
    g = torch.Generator().manual_seed(args.seed)
    train = train[:, torch.randperm(train.shape[1], generator=g)[:args.retrieval_points]]
    directions = random_directions(len(truth), g)
    masks = visible(truth, directions)
    scans = [truth[i][masks[i]] for i in range(len(truth))]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    common = {"sampler": args.sampler, "steps": args.steps}
    print(f"{len(truth)} held-out clouds of {base.config['data']['source']}; scans keep "
          f"{sum(len(s) for s in scans) / len(scans):.0f} of {truth.shape[1]} points on average; "
          f"{args.sampler} {args.steps} steps = {nfe(args.sampler, args.steps)} NFE", flush=True)

    completions, seconds = {}, {}
    for method in methods:
        start, out = time.perf_counter(), []
        for i, scan in enumerate(scans):
            seed = args.seed * 100_000 + i
            rows = scan[torch.randint(len(scan), (CONTROL_POINTS,), generator=torch.Generator().manual_seed(i))]
            if method == "controlnet":
                s = control_run.sample(1, control=rows[None], control_scale=args.control_scale, seed=seed, **common)
                out.append(torch.as_tensor(s["points"][0]))
            elif method == "complete":
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "scan.ply"
                    data = norm.invert(scan.numpy()[None])[0] if norm.mode == "global" else scan.numpy()
                    write_ply(path, data)
                    s = base.sample(1, complete=path, seed=seed, **common)
                out.append(torch.as_tensor(s["points"][0]))
            elif method == "retrieval":
                out.append(torch.as_tensor(prepared.train_points[int(one_sided(rows, train).argmin())]))
            elif method == "uncontrolled":
                out.append(torch.as_tensor(base.sample(1, seed=seed, **common)["points"][0]))
            else:
                raise SystemExit(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
        seconds[method] = (time.perf_counter() - start) / len(scans)
        completions[method] = torch.stack(out).float()
        print(f"  {method}: {seconds[method]:.2f} s/shape", flush=True)

    table = {}
    print(f"\n{'method':14s} {'CD to truth mean':>17s} {'median':>9s} {'scan->completion mean':>22s} {'median':>9s} "
          f"{'s/shape':>8s}")
    for method, comp in completions.items():
        cd = chamfer(comp, truth)
        kept = torch.stack([one_sided(scan, comp[i:i + 1])[0] for i, scan in enumerate(scans)])
        table[method] = {"cd_mean": cd.mean().item(), "cd_median": cd.median().item(), "kept_mean": kept.mean().item(),
                         "kept_median": kept.median().item(), "s_per_shape": seconds[method],
                         "cd": cd.tolist(), "kept": kept.tolist()}
        row = table[method]
        print(f"{method:14s} {row['cd_mean']:17.4f} {row['cd_median']:9.4f} {row['kept_mean']:22.4f} "
              f"{row['kept_median']:9.4f} {row['s_per_shape']:8.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"set": base.config["data"]["source"], "n": len(truth), **common,
                                         "nfe": nfe(args.sampler, args.steps), "control_run": str(args.control_run),
                                         "table": table}, indent=1))
    if args.previews:
        k = min(4, len(truth))
        grid, titles = [], []
        for i in range(k):
            scan = scans[i][torch.randint(len(scans[i]), (truth.shape[1],), generator=torch.Generator().manual_seed(i))]
            grid += [truth[i], scan] + [completions[m][i] for m in methods]
            titles += ["truth", "scan"] + methods
        preview_grid(torch.stack(grid).numpy(), args.previews, titles, cols=2 + len(methods))


if __name__ == "__main__":
    main()
