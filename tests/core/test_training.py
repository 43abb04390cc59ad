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


def regression_fit(out, batch_size, accumulate, steps=4, stop_after=None, resume=False, noisy=False):
    """A linear model fitted by MSE (no batch-dependent layers; with ``noisy`` the inputs get noise from the loss
    generator); returns its Trainer."""
    from polydiff.core.training import TrainConfig, Trainer

    torch.manual_seed(0)
    data = torch.randn(96, 5, generator=torch.Generator().manual_seed(1))

    def loss(model, rows, generator):
        x = rows[:, :3] + (0.3 * torch.randn(rows[:, :3].shape, generator=generator) if noisy else 0.0)
        return torch.nn.functional.mse_loss(model(x), rows[:, 3:])

    cfg = TrainConfig(steps=steps, batch_size=batch_size, accumulate=accumulate, lr=1e-2, log_every=2, ckpt_every=2,
                      progress=False, bf16=False)
    trainer = Trainer(torch.nn.Linear(3, 2), loss, data, out, cfg, stop_after=stop_after)
    trainer.fit(resume=resume)
    return trainer


def test_accumulating_two_micro_batches_matches_one_batch_twice_as_big(tmp_path):
    # 4 steps of 2 x 16 rows against 4 steps of 32 rows: the same examples (into a second epoch) and the same gradients
    small, big = regression_fit(tmp_path / "a", 16, 2), regression_fit(tmp_path / "b", 32, 1)
    assert small.step == big.step == 4  # the step counts optimizer steps
    for (name, p), q in zip(small.model.named_parameters(), big.model.parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-6), name
    assert not torch.allclose(small.model.weight, regression_fit(tmp_path / "c", 16, 1).model.weight)
    rows = [json.loads(l) for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    big_rows = [json.loads(l) for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in big_rows], rel=1e-5)


def test_resume_with_accumulation_is_bit_identical(tmp_path):
    regression_fit(tmp_path / "a", 16, 2, steps=6, noisy=True)
    regression_fit(tmp_path / "b", 16, 2, steps=6, stop_after=3, noisy=True)  # checkpoint at step 2; step 3 is lost
    resumed = regression_fit(tmp_path / "b", 16, 2, steps=6, resume=True, noisy=True)
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert resumed.step == 6 and wa.keys() == wb.keys() and any(k.startswith("ema.") for k in wa)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())["train"]["accumulate"] == 2
    rows = [{**json.loads(l), "steps_per_s": 0} for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    again = [{**json.loads(l), "steps_per_s": 0} for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6] and again == rows


def test_step_batches_hand_out_accumulate_micro_batches_per_step():
    from polydiff.core.training import StepBatches

    whole = list(StepBatches(20, 8, seed=3, start_step=0, steps=3))
    micro = list(StepBatches(20, 4, seed=3, start_step=0, steps=3, accumulate=2))
    assert [a + b for a, b in zip(micro[::2], micro[1::2])] == whole  # epochs end on the same step boundaries
    assert list(StepBatches(20, 4, seed=3, start_step=1, steps=3, accumulate=2)) == micro[2:]
    ranks = [list(StepBatches(20, 4, seed=3, start_step=0, steps=3, rank=r, world=2, accumulate=2)) for r in (0, 1)]
    assert [sorted(a + b) for a, b in zip(*ranks)] == [sorted(m) for m in micro]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_accumulate_must_be_a_positive_integer(bad):
    from polydiff.core.training import TrainConfig

    with pytest.raises(ValueError, match="train.accumulate must be an integer >= 1"):
        TrainConfig(accumulate=bad)
