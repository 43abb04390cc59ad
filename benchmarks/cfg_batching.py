"""Classifier-free guidance in one batched network call against two calls, per domain, in one run: milliseconds per
guided denoiser call on the shipped networks at their sampling batch sizes (and the largest difference of the two
results, which must be float noise).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cfg_batching.py --repeat 5
"""
from __future__ import annotations

import argparse
import time

SHAPES = {"toy": (2000, 2), "points": (8, 256, 3), "audio": (32, 1, 64, 64), "text3d": (8, 3, 32, 32)}
"""Sampling batches: toy's default -n, points' anchored sets of 256, audio's chunk of 32 clips, text3d's views."""


def conditions(run, n: int):
    """A condition of ``n`` rows for the run's domain and its null version."""
    import torch

    if run.domain.name == "text3d":
        from polydiff.domains.text3d.cameras import random_cameras
        from polydiff.domains.text3d.prior import prompt_condition

        cond = prompt_condition("a red mug", random_cameras(n, torch.Generator().manual_seed(0)), run.device)
    else:
        labels = torch.arange(n) % max(1, len(run.class_names()))
        cond = labels if run.domain.name == "toy" else {"label": labels}
    return cond, run.domain.null_cond(cond)


def timed(fn, repeat: int) -> float:
    """Best wall time of ``repeat`` calls, in milliseconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domains", default="toy,points,audio,text3d")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    import torch

    import polydiff
    from polydiff.core.guidance import cfg
    from polydiff.plugins.runtime import set_threads

    set_threads(a.threads)
    rows = []
    for name in a.domains.split(","):
        run = polydiff.load(name)
        shape = SHAPES[name]
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        sigma = torch.full((shape[0],), 1.0)
        cond, null = conditions(run, shape[0])
        with torch.no_grad():
            one, two = cfg(run.denoiser, 2.0, null, batched=True), cfg(run.denoiser, 2.0, null, batched=False)
            diff = float((one(x, sigma, cond) - two(x, sigma, cond)).abs().max())
            t_one = timed(lambda: one(x, sigma, cond), a.repeat)
            t_two = timed(lambda: two(x, sigma, cond), a.repeat)
        rows.append((name, shape, t_one, t_two, diff))
        print(rows[-1], flush=True)
    print(f"\nCPU, {a.threads} thread(s), best of {a.repeat}: one guided denoiser call (ms)")
    print("| domain | batch | one batched call | two calls | batched / two | max difference |")
    print("|---|---|---|---|---|---|")
    for name, shape, t_one, t_two, diff in rows:
        print(f"| {name} | {'x'.join(map(str, shape))} | {t_one:.1f} | {t_two:.1f} | {t_one / t_two:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
