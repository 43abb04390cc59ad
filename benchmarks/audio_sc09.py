"""SC09-style benchmark of the audio domain (DiffWave's protocol with our own digit classifier), one table, one run.

Rows: real test clips (unheard voices), their Griffin-Lim re-synthesis (the floor any mel + Griffin-Lim model meets),
and our samples with a long sampler (default 1000 Euler steps) and at a 20-50 NFE budget (default Heun, 35 NFE).
Goal of the issue: digit accuracy within 10 points of the floor and FID <= 2x the floor at <= 50 NFE.

    python benchmarks/audio_sc09.py --run runs/audio            # an existing run
    python benchmarks/audio_sc09.py --train --preset quick      # train the quick preset first (CPU: minutes)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from polydiff.core.samplers import nfe, steps_for_nfe
from polydiff.domains.audio.evaluation import get_judge, reanalyse, score
from polydiff.domains.audio.data import prepare
from polydiff.domains.audio.plugin import make_domain
from polydiff.plugins.runs import load_run, resolve_config, train

COLUMNS = ("accuracy", "fid", "is", "mis", "am", "ndb_over_k")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=Path("runs/audio_sc09"))
    ap.add_argument("--train", action="store_true", help="train --preset into --run first (unless it exists)")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--train-steps", type=int, default=None)
    ap.add_argument("--n", type=int, default=None, help="generated clips per row (default: number of test clips)")
    ap.add_argument("--sampler", default="heun")
    ap.add_argument("--nfe", type=int, default=35)
    ap.add_argument("--long-sampler", default="euler")
    ap.add_argument("--long-steps", type=int, default=1000, help="0 skips the long row")
    ap.add_argument("--long-n", type=int, default=None, help="clips for the long row (default --n)")
    ap.add_argument("--guidance-scale", type=float, default=None)
    ap.add_argument("--gl-iters", type=int, default=32)
    ap.add_argument("--classifier-epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the table as JSON")
    a = ap.parse_args()

    domain = make_domain()
    t_train = None
    if a.train and not (a.run / "config.json").is_file():
        cfg = resolve_config(domain, a.preset)
        if a.train_steps:
            cfg["train"]["steps"] = a.train_steps
        cfg["data"]["normalizer"] = prepare(cfg["data"]).normalizer.to_dict()
        t0 = time.perf_counter()
        train(domain, cfg, a.run, device="cuda" if torch.cuda.is_available() else "cpu")
        t_train = time.perf_counter() - t0
    run = load_run(domain, a.run, "cuda" if torch.cuda.is_available() else "cpu")
    p = prepare(run.config["data"])
    t0 = time.perf_counter()
    judge = get_judge(p, epochs=a.classifier_epochs, seed=a.seed)
    t_judge = time.perf_counter() - t0
    n = a.n or len(p.test)
    labels = torch.arange(n) % p.train.num_classes

    rows = [("real test clips", "-", score(judge, p.test_x, p.test.labels), 0.0, len(p.test))]
    t0 = time.perf_counter()
    _, resynth = reanalyse(p, p.test_x, a.gl_iters)
    rows.append((f"Griffin-Lim floor ({a.gl_iters} it)", "-", score(judge, resynth, p.test.labels),
                 (time.perf_counter() - t0) / len(p.test), len(p.test)))

    def ours(sampler: str, steps: int, count: int) -> None:
        g = torch.Generator(device=run.device).manual_seed(a.seed)
        lab = labels[:count] if count <= n else torch.arange(count) % p.train.num_classes
        t = time.perf_counter()
        out = run.sample(count, sampler=sampler, steps=steps, generator=g, labels=lab,
                         guidance_scale=a.guidance_scale, gl_iters=a.gl_iters)
        sec = (time.perf_counter() - t) / count
        rows.append((f"ours {sampler} {steps} steps", str(nfe(sampler, steps)), score(judge, out["reanalysed"], lab), sec,
                     count))

    if a.long_steps > 0:
        ours(a.long_sampler, a.long_steps, a.long_n or n)
    ours(a.sampler, steps_for_nfe(a.sampler, a.nfe), n)

    print(f"\nSC09-like spoken digits: {len(p.train)} train / {len(p.test)} test clips (test voices unheard), "
          f"judge accuracy on real test clips {judge.test_accuracy:.3f}; FID/NDB vs training features; run {a.run}")
    head = f"{'set':34s} {'NFE':>5s} {'n':>5s} " + " ".join(f"{c:>10s}" for c in COLUMNS) + f" {'s/clip':>8s}"
    print(head)
    print("-" * len(head))
    for name, k, m, sec, count in rows:
        print(f"{name:34s} {k:>5s} {count:5d} " + " ".join(f"{m.get(c, float('nan')):10.4g}" for c in COLUMNS) + f" {sec:8.3f}")
    floor, short = rows[1][2], rows[-1][2]
    print(f"\ngoal at {rows[-1][1]} NFE: accuracy within 10 points of the floor: "
          f"{'yes' if short['accuracy'] >= floor['accuracy'] - 0.10 else 'no'} "
          f"({short['accuracy']:.3f} vs {floor['accuracy']:.3f}); FID <= 2x floor: "
          f"{'yes' if short['fid'] <= 2 * floor['fid'] else 'no'} ({short['fid']:.4g} vs {floor['fid']:.4g})"
          + ("" if n == len(p.test) else f"; FID of {n} clips against the floor's {len(p.test)}: fewer clips bias FID "
                                           "upward, so judge the goal at the default n"))
    print(f"timings: training {t_train if t_train is None else round(t_train)} s, judge {t_judge:.0f} s; "
          f"device {run.device}")
    if a.out:
        a.out.write_text(json.dumps({"rows": [{"set": r[0], "nfe": r[1], **r[2], "seconds_per_clip": r[3], "n": r[4]} for r in rows],
                                     "judge_test_accuracy": judge.test_accuracy, "run": str(a.run)}, indent=2))


if __name__ == "__main__":
    main()
