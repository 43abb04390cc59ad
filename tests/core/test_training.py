"""The shared training loop: exact resume after a hard kill, atomic checkpoints, metrics and plot, DDP."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from polydiff.core.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint

SCRIPT = Path(__file__).with_name("train_script.py")


def run(out, steps, kill_at=None):
    args = [sys.executable, str(SCRIPT), str(out), str(steps)] + ([str(kill_at)] if kill_at else [])
    return subprocess.run(args, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def weights(run_dir):
    return load_file(str(Path(run_dir) / "checkpoint" / "model.safetensors"))


def test_resume_after_kill_is_exact(tmp_path):
    straight = run(tmp_path / "a", 30)
    assert straight.returncode == 0, straight.stderr
    killed = run(tmp_path / "b", 30, kill_at=25)
    assert killed.returncode == 3
    assert json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())["step"] == 20
    resumed = run(tmp_path / "b", 30)
    assert resumed.returncode == 0, resumed.stderr
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert wa.keys() == wb.keys() and any(k.startswith("ema.") for k in wa)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    rows = [json.loads(l) for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10, 15, 20, 25, 30]
    straight_rows = [json.loads(l) for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in straight_rows])
    assert (tmp_path / "b" / "loss.png").stat().st_size > 1000
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    assert cfg["train"]["steps"] == 30


def test_checkpoint_swap_is_atomic(tmp_path):
    folder = tmp_path / "checkpoint"
    save_checkpoint(folder, {"model": {"w": torch.ones(3)}}, {"step": 1})
    save_checkpoint(folder, {"model": {"w": torch.full((3,), 2.0)}}, {"step": 2})
    assert not (tmp_path / "checkpoint.tmp").exists() and not (tmp_path / "checkpoint.old").exists()
    # a crash between the two renames leaves only the previous checkpoint: it is found and loaded
    os.replace(folder, tmp_path / "checkpoint.old")
    assert find_checkpoint(folder) == tmp_path / "checkpoint.old"
    tensors, state = load_checkpoint(folder)
    assert state["step"] == 2 and torch.equal(tensors["model"]["w"], torch.full((3,), 2.0))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "elsewhere")


def test_ddp_two_processes_hold_identical_weights(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           str(SCRIPT), str(tmp_path), "12"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    r0, r1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["step"] == 12


def test_learning_rate_warms_up_holds_then_anneals_to_zero():
    from polydiff.core.training import TrainConfig, learning_rate

    flat = TrainConfig(steps=100, lr=1.0, warmup=10)
    assert [learning_rate(flat, s) for s in (0, 4, 9, 50, 99)] == pytest.approx([0.1, 0.5, 1.0, 1.0, 1.0])
    cos = TrainConfig(steps=100, lr=1.0, warmup=10, lr_decay="cosine", decay_from=60)
    assert learning_rate(cos, 59) == 1.0 and learning_rate(cos, 60) == 1.0
    assert learning_rate(cos, 80) == pytest.approx(0.5)  # halfway down the cosine
    assert learning_rate(cos, 99) == pytest.approx(0.5 * (1 + math.cos(math.pi * 39 / 40)))
    lin = TrainConfig(steps=100, lr=2.0, lr_decay="linear")  # decay_from 0: anneal over the whole run
    assert [learning_rate(lin, s) for s in (0, 25, 75)] == pytest.approx([2.0, 1.5, 0.5])
    # a run resumed with more steps and decay_from at its old end follows a fresh run of the same config exactly
    resumed = TrainConfig(**{**cos.__dict__, "steps": 200, "decay_from": 100})
    assert all(learning_rate(resumed, s) == learning_rate(flat, s) for s in range(100))
    with pytest.raises(ValueError, match="unknown lr_decay 'step'; choose one of none, cosine, linear"):
        TrainConfig(lr_decay="step")
