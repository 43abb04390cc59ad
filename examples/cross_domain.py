"""Run the same sampler sweep (methods x NFE) over every registered domain through the Python API.

Each domain is evaluated with its own metric on its own held-out data (text3d: R-precision of its 2D prior's images,
which is what the sampler drives; distillation uses no sampler), from its shipped checkpoint (or a run folder
given with --run DOMAIN=DIR, or a quick training run with --train-missing). One table per domain is printed; a
distilled student (the shipped ``<checkpoint>-4step`` folder, or --student DOMAIN=DIR) gets a row beside the
teacher's samplers: DDIM with one network pass per step, so its NFE is its step count.

    python examples/cross_domain.py --methods euler,heun,dpmpp_2m --nfe 10,20 -n 200
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from polydiff.core.samplers import steps_for_nfe
from polydiff.plugins.distill import shipped_student
from polydiff.plugins.manager import get_manager
from polydiff.plugins.runs import load_run, resolve_config, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="euler,heun,dpmpp_2m,ddpm")
    p.add_argument("--nfe", default="10,20,50", help="denoiser evaluations per sample")
    p.add_argument("-n", type=int, default=200, help="samples per evaluation")
    p.add_argument("--domains", default=None, help="comma-separated subset (default: all registered)")
    p.add_argument("--run", action="append", default=[], help="DOMAIN=RUN_DIR (repeatable)")
    p.add_argument("--student", action="append", default=[], help="DOMAIN=STUDENT_DIR (repeatable; default: the "
                   "shipped <checkpoint>-4step folder where there is one)")
    p.add_argument("--train-missing", action="store_true", help="quick-train domains that ship no checkpoint")
    p.add_argument("--work", default="cross-domain-runs", help="where --train-missing writes runs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    manager = get_manager()
    runs = dict(item.split("=", 1) for item in args.run)
    students = dict(item.split("=", 1) for item in args.student)
    names = args.domains.split(",") if args.domains else sorted(manager.domains)
    methods, budgets = args.methods.split(","), [int(v) for v in args.nfe.split(",")]
    for name in names:
        domain = manager.domain(name)
        try:
            run = load_run(domain, Path(runs[name]) if name in runs else None, args.device)
        except FileNotFoundError as exc:
            if not args.train_missing:
                print(f"\n## {name}: skipped ({exc})")
                continue
            run = train(domain, resolve_config(domain, "quick"), Path(args.work) / name, device=args.device)
        arrow = "lower" if domain.lower_is_better else "higher"
        print(f"\n## {name}: {domain.primary_metric} ({arrow} is better), n={args.n}, run={run.path}")
        print("| sampler | " + " | ".join(f"NFE {b}" for b in budgets) + " |")
        print("|---|" + "---|" * len(budgets))
        rows = [(method, run, method) for method in methods]
        student = students.get(name) or shipped_student(domain)
        if student is not None:
            rows.append((f"student ({Path(student).name})", load_run(domain, Path(student), args.device), "ddim"))
        for label, model, method in rows:
            cells = []
            for budget in budgets:
                g = torch.Generator(device=model.device).manual_seed(args.seed)
                t0 = time.perf_counter()
                metrics = model.evaluate(args.n, sampler=method, steps=steps_for_nfe(method, budget), generator=g,
                                         **domain.sweep)
                cells.append(f"{metrics[domain.primary_metric]:.4g} ({time.perf_counter() - t0:.0f}s)")
            print(f"| {label} | " + " | ".join(cells) + " |")



if __name__ == "__main__":
    main()
