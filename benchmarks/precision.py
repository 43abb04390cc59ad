"""bf16 autocast against float32 for sampling, per domain, in one run: seconds per sample and the domain's own
primary metric for each precision, so a domain's default can be chosen on both (issue: points 1-NNA within 1 point).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/precision.py --domains toy,points,audio -n 50 --threads 1

Each domain uses its shipped checkpoint and its own evaluate (toy: energy distance; points: 1-NNA-CD; audio: FID);
both precisions see the same seed.
"""
from __future__ import annotations

import argparse
import time

EVALUATE = {"points": {"metrics": "cd"}, "audio": {"floor": False, "classifier_epochs": 20},
            "molecules": {"no_etkdg": True}, "text3d": {"prior": True}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domains", default="toy,points,audio")
    p.add_argument("-n", type=int, default=50, help="samples per evaluation")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: each run's)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()

    import polydiff
    from polydiff.plugins.runtime import set_threads

    set_threads(a.threads)
    rows = []
    for name in a.domains.split(","):
        run = polydiff.load(name)
        metric = run.domain.primary_metric
        run.evaluate(2, steps=1, seed=0, **EVALUATE.get(name, {}))  # warm-up: judges and caches are built outside the clock
        for precision in ("fp32", "bf16"):
            t0 = time.perf_counter()
            result = run.evaluate(a.n, steps=a.steps, seed=0, precision=precision, **EVALUATE.get(name, {}))
            rows.append((name, precision, metric, result[metric], (time.perf_counter() - t0) / a.n))
            print(rows[-1], flush=True)
    print(f"\nCPU, {a.threads} thread(s), n = {a.n} per row, shipped checkpoints, seconds per sample include scoring")
    print("| domain | precision | metric | value | s/sample |")
    print("|---|---|---|---|---|")
    for name, precision, metric, value, sec in rows:
        print(f"| {name} | {precision} | {metric} | {value:.4g} | {sec:.3f} |")


if __name__ == "__main__":
    main()
