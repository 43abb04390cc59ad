"""How many torch threads a command should use: time ``polydiff <domain> sample`` with --threads 1 and 2, on the
machine as it is and with busy neighbours (processes spinning on every core, as a shared CI machine has), in one run.

    .venv/bin/python benchmarks/threads.py --domain audio --args "-n 8 --steps 10" --repeat 2

Prints seconds per command (best of --repeat) and the ratio 2 threads / 1 thread for each load.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path


SPIN = "while True: pass"
"""A neighbour that wants a whole core."""


def timed(domain: str, args: list[str], threads: int, out: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    cmd = [sys.executable, "-m", "polydiff.cli", domain, "sample", *args, "--threads", str(threads), "--device", "cpu",
           "--out", str(out), "--overwrite"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domain", default="audio")
    p.add_argument("--args", default="-n 8 --steps 10", help="extra sample arguments")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="spinning neighbours in the busy case")
    a = p.parse_args()
    args = shlex.split(a.args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for load in ("as is", f"{a.busy} busy neighbours"):
            neighbours = []
            if load != "as is":
                neighbours = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(a.busy)]
            try:
                times = {t: min(timed(a.domain, args, t, Path(tmp) / "s") for _ in range(a.repeat)) for t in (1, 2)}
            finally:
                for proc in neighbours:
                    proc.kill()
            rows.append((load, times[1], times[2]))
    print(f"\n{a.domain} sample {a.args} on {os.cpu_count()} cores, best of {a.repeat} (wall seconds, startup included)")
    print("| load | 1 thread | 2 threads | 2 / 1 |")
    print("|---|---|---|---|")
    for load, one, two in rows:
        print(f"| {load} | {one:.1f} | {two:.1f} | {two / one:.2f} |")


if __name__ == "__main__":
    main()
