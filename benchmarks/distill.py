"""Few-step sampling per domain in one run: the domain's primary metric and seconds per sample at 1, 2, 4 and 8
network passes for (a) the distilled student, (b) the teacher with its best sampler at the same passes, (c) the
teacher as shipped; and the distillation's cost.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/distill.py --domain toy --student runs/toy-4step -n 2000

Without ``--student`` the teacher is distilled first (``--round-steps`` training steps per round) into
``--work/<domain>-student``. Passes count network evaluations: a classifier-free-guided teacher step costs two
(cond and uncond, even when batched into one call), a guided student step one.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

TEACHER_SAMPLERS = ("euler", "heun", "dpmpp_2m")


def passes_per_call(run) -> int:
    """Network passes per denoiser call: 2 under classifier-free guidance at a scale other than 1, else 1."""
    s = run.config["sample"]
    guided = run.domain.classes is not None and float(s["guidance_scale"]) != 1.0 and s["guidance"] != "distilled"
    return 2 if guided else 1


def baselines_off(run) -> dict:
    """The evaluate option that skips the domain's baseline method, where it declares one (molecules' ``no_etkdg``):
    the rows compare models, and a baseline inside ``evaluate`` would count in their seconds per sample."""
    declared = run.domain.options.get("evaluate")
    fields = {f.name for f in dataclasses.fields(declared)} if declared is not None else set()
    return {"no_etkdg": True} if "no_etkdg" in fields else {}


def score(run, n: int, sampler: str, steps: int, sweep: dict) -> tuple[float, float]:
    """(primary metric, seconds per sample) of ``run`` with ``sampler`` over ``steps`` intervals."""
    t0 = time.perf_counter()
    metrics = run.evaluate(n, sampler=sampler, steps=steps, seed=0, **sweep)
    value, sec = metrics[run.domain.primary_metric], (time.perf_counter() - t0) / n
    print(f"  {run.path} {sampler} {steps}: {value:.4g}, {sec:.4f} s/sample "
          + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)), flush=True)
    return value, sec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domain", default="toy")
    p.add_argument("--teacher", type=Path, default=None, help="teacher run (default: the shipped checkpoint)")
    p.add_argument("--student", type=Path, default=None, help="distilled student run (default: distil now)")
    p.add_argument("--round-steps", type=int, default=400, help="training steps per round when distilling now")
    p.add_argument("--work", type=Path, default=Path("runs"))
    p.add_argument("--passes", default="1,2,4,8")
    p.add_argument("-n", type=int, default=500)
    a = p.parse_args()

    import polydiff
    from polydiff.core.samplers import nfe, steps_for_nfe
    from polydiff.plugins.distill import distill_run
    from polydiff.plugins.runtime import set_threads

    set_threads(None)
    teacher = polydiff.load(a.domain, a.teacher)
    sweep = teacher.domain.sweep
    cost = None
    if a.student is None:
        t0 = time.perf_counter()
        distill_run(teacher, a.work / f"{a.domain}-student", steps=4, train={"steps": a.round_steps},
                    overwrite=True, device=str(teacher.device))
        cost = time.perf_counter() - t0
        a.student = a.work / f"{a.domain}-student"
    student = polydiff.load(a.domain, a.student)
    per_call = passes_per_call(teacher)
    rows = []
    s = teacher.config["sample"]
    print("rows as they are measured (model, sampler, passes, metric, s/sample):", flush=True)
    off = baselines_off(teacher)
    if off:  # a domain's baseline (ETKDG for molecules) is measured once, untimed, beside the shipped teacher
        print("the domain's baseline (in this call's metrics), once:", flush=True)
        score(teacher, a.n, s["sampler"], s["steps"], sweep)
        sweep = {**sweep, **off}
    value, sec = score(teacher, a.n, s["sampler"], s["steps"], sweep)
    rows.append(("teacher as shipped", f"{s['sampler']} {s['steps']}", nfe(s["sampler"], s["steps"]) * per_call,
                 value, sec))
    for budget in (int(b) for b in a.passes.split(",")):
        value, sec = score(student, a.n, "ddim", budget, sweep)
        rows.append(("student", f"ddim {budget}", budget, value, sec))
        best = None
        for sampler in TEACHER_SAMPLERS:
            steps = steps_for_nfe(sampler, max(1, budget // per_call))
            if steps < 1 or nfe(sampler, steps) * per_call > budget:
                continue
            value, sec = score(teacher, a.n, sampler, steps, sweep)
            better = best is None or (value < best[3] if teacher.domain.lower_is_better else value > best[3])
            if better:
                best = ("teacher, best sampler", f"{sampler} {steps}", nfe(sampler, steps) * per_call, value, sec)
        if best:
            rows.append(best)
    arrow = "lower" if teacher.domain.lower_is_better else "higher"
    print(f"\n{a.domain}: {teacher.domain.primary_metric} ({arrow} is better), n = {a.n}, teacher {teacher.path}, "
          f"student {student.path}" + (f", distilled in {cost / 60:.1f} CPU min" if cost else ""))
    print("| model | sampler | network passes | metric | s/sample |")
    print("|---|---|---|---|---|")
    for model, sampler, passes, value, sec in rows:
        print(f"| {model} | {sampler} | {passes} | {value:.4g} | {sec:.4f} |")


if __name__ == "__main__":
    main()
