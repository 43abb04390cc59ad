"""The prepared GPU check: every domain trained for a few hundred steps (bf16 on CUDA), sampled, one distillation
round where distillation exists, and torchrun DDP on the GPUs present, with the same on the CPU next to it.

On a machine with a GPU (one command, under 8 minutes on one H100/H200):

    python benchmarks/gpu_check.py --device cuda --out gpu-check

Tested on CPU with tiny settings (what CI can afford):

    python benchmarks/gpu_check.py --device cpu --tiny --out /tmp/gpu-check

Prints one table (train steps/s, seconds per sample, on the device and on the CPU) and writes it as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

TINY: dict[str, dict[str, Any]] = {
    "toy": {"network": {"width": 32}, "data": {"n_train": 2000, "n_test": 500}},
    "points": {"data": {"n_points": 48, "n_per_class": 5}, "network": {"dim": 16, "depth": 1, "latents": 4, "heads": 2,
                                                                     "fourier": 4}},
    "audio": {"data": {"n_voices": 5, "valid_fraction": 0.0, "test_fraction": 0.2},
              "network": {"base": 4, "mults": [1, 2, 2], "num_res": 1, "attn_levels": []}, "sample": {"gl_iters": 2}},
    "molecules": {"data": {"max_rows": 300, "subsample": 1}, "network": {"scalars": 8, "vectors": 2, "layers": 1,
                                                                         "lmax": 1, "num_rbf": 4}},
    "text3d": {"data": {"n_per_class": 1, "views_per_shape": 2, "size": 16, "voxel_resolution": 24, "n_samples": 24},
               "network": {"base": 8, "mults": [1, 2], "num_res": 1, "attn_levels": [1]}},
}
SAMPLES = {"toy": 1000, "points": 4, "audio": 8, "molecules": 2, "text3d": 4}
"""Samples drawn per domain (text3d: prior images; molecules: conformers of its demo molecules)."""


def overrides(name: str, steps: int, tiny: bool, cuda: bool) -> dict[str, Any]:
    """The quick preset shortened to ``steps`` (bf16 autocast in training on CUDA), tiny sizes with ``tiny``."""
    from polydiff.plugins.config import merge

    train = {"steps": steps, "log_every": max(1, steps // 5), "ckpt_every": steps, "progress": False, "bf16": cuda}
    base = {"train": train}
    return merge(base, TINY.get(name, {})) if tiny else base


def time_domain(name: str, device: str, steps: int, tiny: bool, work: Path) -> dict[str, float]:
    """Train ``name`` for ``steps`` and draw its samples on ``device``: steps/s (start-up included) and seconds per
    sample (after one untimed warm-up draw)."""
    import torch

    from polydiff.plugins.manager import get_manager
    from polydiff.plugins.runs import resolve_config, train

    domain = get_manager().domain(name)
    cfg = resolve_config(domain, "quick", overrides(name, steps, tiny, device.startswith("cuda")))
    domain.build_dataset(cfg["data"], "train")  # built (and cached) before the clock starts
    t0 = time.perf_counter()
    run = train(domain, cfg, work / f"{name}-{device.replace(':', '')}", device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    train_s = time.perf_counter() - t0
    n = 2 if tiny else SAMPLES[name]
    kwargs = {"steps": 4 if tiny else None, "precision": "bf16" if device.startswith("cuda") else "fp32"}
    kwargs.update({"images": True} if name == "text3d" else {})
    run.sample(n, seed=1, **kwargs)  # warm-up: CUDA context, kernels and caches are not counted
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    timing = {"train_steps_per_s": steps / train_s, "seconds_per_sample": _draw_seconds(run, n, device, kwargs) / n}
    if device.startswith("cuda"):  # a GPU pays off on batches: the same draw, 16 times as many samples at once
        timing["seconds_per_sample_x16"] = _draw_seconds(run, 16 * n, device, kwargs) / (16 * n)
    return timing


def _draw_seconds(run: Any, n: int, device: str, kwargs: dict[str, Any]) -> float:
    """Wall seconds of one draw of ``n`` samples, the device synchronised."""
    import torch

    t0 = time.perf_counter()
    run.sample(n, seed=0, **kwargs)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def distill_round(device: str, tiny: bool, work: Path) -> dict[str, float] | None:
    """One progressive-distillation round of the toy domain, when distillation has landed (None otherwise)."""
    try:
        from polydiff.plugins.distill import distill_run
    except ImportError:
        return None
    from polydiff.plugins.manager import get_manager
    from polydiff.plugins.runs import resolve_config, train

    domain = get_manager().domain("toy")
    teacher = train(domain, resolve_config(domain, "quick", overrides("toy", 50 if tiny else 300, tiny, False)),
                    work / f"teacher-{device.replace(':', '')}", device=device)
    t0 = time.perf_counter()
    distill_run(teacher, work / f"student-{device.replace(':', '')}", steps=teacher.config["sample"]["steps"] // 2,
                train={"steps": 20 if tiny else 300, "progress": False}, device=device)
    return {"distill_round_s": time.perf_counter() - t0}


def ddp(device: str, tiny: bool, work: Path) -> dict[str, float]:
    """Toy training under torchrun on every GPU present (two CPU processes on the CPU): steps/s."""
    import torch

    procs = torch.cuda.device_count() if device.startswith("cuda") else 2
    steps = 50 if tiny else 500
    cfg = work / "ddp.toml"
    cfg.write_text(f"[train]\nsteps = {steps}\nlog_every = 10\nckpt_every = {steps}\nprogress = false\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                           str(procs), "-m", "polydiff.cli", "toy", "train", "--out", str(work / "ddp"), "--config",
                           str(cfg), "--device", "cuda" if device.startswith("cuda") else "cpu"],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"torchrun failed: {done.stderr[-1500:]}")
    return {"ddp_processes": float(procs), "ddp_steps_per_s": steps / (time.perf_counter() - t0)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--domains", default="toy,points,audio,molecules,text3d")
    p.add_argument("--steps", type=int, default=300, help="training steps per domain on the device")
    p.add_argument("--cpu-steps", type=int, default=20, help="training steps per domain for the CPU columns")
    p.add_argument("--tiny", action="store_true", help="tiny networks and data (a CPU test of this script)")
    p.add_argument("--out", type=Path, default=Path("gpu-check"))
    a = p.parse_args()
    import torch

    from polydiff.plugins.runtime import set_threads

    set_threads(os.cpu_count() if not a.tiny else 1)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("error: --device cuda but no CUDA device is available; use --device cpu --tiny to test the script")
    a.out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, Any] = {"device": a.device, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                            "torch": torch.__version__, "domains": {}}
    with tempfile.TemporaryDirectory(dir=a.out) as tmp:
        work = Path(tmp)
        for name in a.domains.split(","):
            try:
                row = {f"device_{k}": v for k, v in time_domain(name, a.device, a.steps, a.tiny, work).items()}
                if a.device != "cpu":
                    row.update({f"cpu_{k}": v for k, v in time_domain(name, "cpu", a.cpu_steps, a.tiny, work).items()})
            except Exception as e:  # one domain's failure is named; the others are still measured
                traceback.print_exc()
                row = {"error": f"{type(e).__name__}: {e}"}
            rows["domains"][name] = row
            print(f"[{name}] {row}", flush=True)
        rows["distill"] = distill_round(a.device, a.tiny, work)
        rows["ddp"] = ddp(a.device, a.tiny, work)
    (a.out / "gpu_check.json").write_text(json.dumps(rows, indent=2))
    print(f"\n{rows['gpu'] or 'no GPU'} (torch {rows['torch']}), device {a.device}"
          + (", tiny settings" if a.tiny else ""))
    print("| domain | train steps/s | s/sample | s/sample, 16x batch | CPU train steps/s | CPU s/sample |")
    print("|---|---|---|---|---|---|")
    for name, r in rows["domains"].items():
        if "error" in r:
            print(f"| {name} | failed: {r['error'][:200]} | | | | |")
            continue
        cpu = (f"{r['cpu_train_steps_per_s']:.2f} | {r['cpu_seconds_per_sample']:.3f}" if "cpu_train_steps_per_s" in r
               else "- | -")
        x16 = f"{r['device_seconds_per_sample_x16']:.4f}" if "device_seconds_per_sample_x16" in r else "-"
        print(f"| {name} | {r['device_train_steps_per_s']:.2f} | {r['device_seconds_per_sample']:.3f} | {x16} | {cpu} |")
    if rows["distill"]:
        print(f"distillation, one toy round: {rows['distill']['distill_round_s']:.1f} s")
    print(f"DDP toy training on {rows['ddp']['ddp_processes']:.0f} processes: {rows['ddp']['ddp_steps_per_s']:.1f} steps/s")
    print(f"written: {a.out / 'gpu_check.json'}")
    if any("error" in r for r in rows["domains"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
