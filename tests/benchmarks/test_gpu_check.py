"""The prepared GPU check runs end to end on the CPU with tiny settings (so it is ready when a GPU is lent)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_runs_on_cpu_with_tiny_settings(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "POLYDIFF_DISABLE_PLUGINS": "ecg"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--tiny",
                           "--domains", "toy,points", "--out", str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "gpu_check.json").read_text())
    for name in ("toy", "points"):
        r = rows["domains"][name]
        assert r["device_train_steps_per_s"] > 0 and r["device_seconds_per_sample"] > 0
    assert rows["ddp"]["ddp_processes"] == 2 and rows["ddp"]["ddp_steps_per_s"] > 0
    assert "| toy |" in done.stdout and "DDP toy training on 2 processes" in done.stdout
