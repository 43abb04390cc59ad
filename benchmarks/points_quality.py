"""Point-cloud generation quality on the held-out part of each set (PointFlow / PVD protocol), in one table.

For each set (the procedural ``shapes`` and pybullet's ``random_urdfs``) the script trains the ``quick`` preset (or
reuses a run folder), then compares, against the held-out clouds: our samples with a deterministic sampler at a
20-50 NFE budget, the same with DPM-Solver++(2M), and the train-vs-held-out oracle (what a perfect model scores with
the same number of clouds). It also times sampling per shape with 1000 ancestral DDPM steps (the DDPM chain's own
sigma grid) next to the few-step samplers. Metrics: 1-NNA, MMD and COV with Chamfer and exact EMD (EMD on a random
subsample of ``--emd-points`` points per cloud, CPU). Not run by CI.

    .venv/bin/python benchmarks/points_quality.py --runs-dir runs/points-bench --sets shapes,random_urdfs
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from polydiff.core.samplers import nfe as count_nfe
from polydiff.core.samplers import steps_for_nfe
from polydiff.core.schedules import LinearBeta, ddpm_sigmas
from polydiff.domains.points.metrics import evaluate_sets
from polydiff.domains.points.plugin import make_domain
from polydiff.domains.points.prepared import prepare
from polydiff.plugins.runs import load_run, resolve_config, train

COLUMNS = ("1nna_cd", "1nna_emd", "mmd_cd", "mmd_emd", "cov_cd", "cov_emd")


def get_run(source: str, runs_dir: Path, preset: str, train_steps: int | None, n_points: int | None):
    """Load ``runs_dir/source`` when it holds a run, else train the preset on ``source`` into it."""
    domain = make_domain()
    out = runs_dir / source
    if (out / "config.json").is_file():
        return load_run(domain, out), None
    override: dict = {"data": {"source": source}}
    if train_steps is not None:
        override["train"] = {"steps": train_steps}
    if n_points is not None:
        override["data"]["n_points"] = n_points
    cfg = resolve_config(domain, preset, override)
    t0 = time.perf_counter()
    run = train(domain, cfg, out, device="cpu")
    return run, time.perf_counter() - t0


def trained_steps(run) -> int:
    """The step of the checkpoint that was loaded (a run stopped early has fewer than its config says)."""
    state = Path(run.path) / "checkpoint" / "state.json"
    return int(json.loads(state.read_text())["step"]) if state.is_file() else int(run.config["train"]["steps"])


def calls_per_step(run, conditional: bool, guidance_scale: float | None) -> int:
    """Network evaluations per denoiser call: classifier-free guidance runs the network twice (cond and null)."""
    scale = run.config["sample"].get("guidance_scale", 1.0) if guidance_scale is None else guidance_scale
    return 2 if conditional and float(scale) != 1.0 else 1


def timed_generate(run, labels: torch.Tensor | None, n: int, sigmas: torch.Tensor, sampler: str, seed: int,
                   guidance_scale: float | None) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    pts = run.sample(n, sampler=sampler, sigmas=sigmas, seed=seed, labels=labels, guidance_scale=guidance_scale)["points"]
    return pts, (time.perf_counter() - t0) / n


def bench_set(args: argparse.Namespace, source: str) -> list[dict]:
    run, train_seconds = get_run(source, args.runs_dir, args.preset, args.train_steps, args.n_points)
    p = prepare(run.config["data"])
    m = min(args.n_eval, len(p.test))
    pick = np.random.default_rng(0).permutation(len(p.test))[:m]
    ref = torch.from_numpy(p.test_points[pick])
    labels = torch.from_numpy(p.test.labels[pick]) if p.conditional else None
    base = {"set": source, "n_ref": m, "n_train": len(p.train), "n_points": int(run.config["data"]["n_points"]),
            "normalization": p.normalization.mode, "train_steps": trained_steps(run),
            "train_seconds": train_seconds}
    rows = []
    oracle = torch.from_numpy(p.train_points[np.random.default_rng(1).permutation(len(p.train))[:m]])
    rows.append({**base, "method": "oracle: train vs held-out", "nfe": 0, "s_per_shape": 0.0,
                 **evaluate_sets(oracle, ref, emd_points=args.emd_points)})
    s = run.config["sample"]
    per_call = calls_per_step(run, p.conditional, args.guidance_scale)
    guided = f", CFG {args.guidance_scale:g}" if per_call == 2 else ""
    for sampler in args.samplers.split(","):
        steps = steps_for_nfe(sampler, args.nfe // per_call)
        sig = run.sigmas(steps)
        gen, sec = timed_generate(run, labels, m, sig, sampler, args.seed, args.guidance_scale)
        rows.append({**base, "method": f"ours {sampler} ({s['grid']} grid{guided})",
                     "nfe": per_call * count_nfe(sampler, steps), "s_per_shape": sec,
                     **evaluate_sets(torch.from_numpy(gen), ref, emd_points=args.emd_points)})
    ddpm_grid = ddpm_sigmas(LinearBeta(T=1000))
    k = m if args.ddpm_shapes is None else min(args.ddpm_shapes, m)
    timed = min(args.ddpm_time_steps, 1000)
    gen, sec = timed_generate(run, None if labels is None else labels[:k], k, ddpm_grid[:timed + 1], "ddpm",
                              args.seed, args.guidance_scale)
    method = "ours ddpm (1000 steps, linear-beta grid)"
    if timed < 1000:
        method = f"ours ddpm 1000 steps (timed {timed}, x{1000 / timed:g})"
    row = {**base, "method": method + guided, "nfe": 1000 * per_call, "s_per_shape": sec * 1000 / timed}
    if k == m and timed == 1000:
        row.update(evaluate_sets(torch.from_numpy(gen), ref, emd_points=args.emd_points))
    rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    head = f"{'set':<13} {'method':<42} {'NFE':>4} " + " ".join(f"{c:>9}" for c in COLUMNS) + f" {'s/shape':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        vals = " ".join(f"{100 * r[c]:8.1f}%" if c.startswith(("1nna", "cov")) and c in r else
                        (f"{r[c]:9.4f}" if c in r else f"{'-':>9}") for c in COLUMNS)
        lines.append(f"{r['set']:<13} {r['method']:<42} {r['nfe']:>4} {vals} {r['s_per_shape']:8.3f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="shapes,random_urdfs", help="comma-separated: shapes, random_urdfs or folders")
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/points-bench"), help="reuse or write runs here")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--train-steps", type=int, default=None, help="override the preset's training steps")
    ap.add_argument("--n-points", type=int, default=None, help="override the preset's points per cloud")
    ap.add_argument("--n-eval", type=int, default=100, help="at most this many held-out clouds (CPU cost ~ n^2)")
    ap.add_argument("--emd-points", type=int, default=256, help="points per cloud for the exact EMD")
    ap.add_argument("--nfe", type=int, default=35,
                    help="network evaluations per shape for the few-step samplers (guidance counts two per call)")
    ap.add_argument("--samplers", default="heun,dpmpp_2m")
    ap.add_argument("--ddpm-shapes", type=int, default=None,
                    help="clouds timed with 1000 DDPM steps (default: all held-out ones, the batch the others use, "
                         "so seconds per shape compare; all + a full chain: also scored)")
    ap.add_argument("--ddpm-time-steps", type=int, default=1000,
                    help="run only the first K of the 1000 DDPM steps and scale the time by 1000/K (same network call "
                         "per step); scores are only computed for a full chain over every held-out cloud")
    ap.add_argument("--guidance-scale", type=float, default=None,
                    help="classifier-free guidance scale for labelled sets (default: the run's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    rows = []
    for source in [s.strip() for s in args.sets.split(",") if s.strip()]:
        rows += bench_set(args, source)
        print(table(rows), flush=True)
        print(f"{source}: {rows[-1]['n_train']} train / {rows[-1]['n_ref']} held-out clouds of {rows[-1]['n_points']} "
              f"points, {rows[-1]['train_steps']} training steps", flush=True)
    print("\nMetrics in the normalised frame of each set (global: PointFlow mean/std of the train points). "
          f"EMD: exact assignment on {args.emd_points} random points per cloud. 1-NNA: 50% is ideal. "
          "Oracle: as many train clouds as held-out ones.")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
