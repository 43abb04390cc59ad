"""DDP under torchrun: one GPU per process from LOCAL_RANK, the logged loss averaged over ranks, gradient accumulation
with DDP's no_sync, per-rank RNG states in the checkpoint so a resumed DDP run is bit-identical."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from polydiff.core import training
from polydiff.core.training import distributed_context, distributed_device

SCRIPT = Path(__file__).with_name("train_script.py")


@pytest.fixture
def fake_cuda(monkeypatch):
    """Two visible CUDA devices on a machine without any; records what set_device was asked for."""
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: chosen.append(torch.device(d)))
    return chosen


def torchrun_env(monkeypatch, local_rank: int, world: int = 2) -> None:
    for key, value in {"LOCAL_RANK": local_rank, "RANK": local_rank, "WORLD_SIZE": world}.items():
        monkeypatch.setenv(key, str(value))


def test_device_follows_local_rank_under_torchrun(fake_cuda, monkeypatch):
    torchrun_env(monkeypatch, 1)
    assert distributed_device("cuda") == torch.device("cuda", 1)
    assert distributed_device("auto") == torch.device("cuda", 1)
    assert fake_cuda == [torch.device("cuda", 1)] * 2
    assert distributed_device("cpu") == torch.device("cpu") and len(fake_cuda) == 2
    assert distributed_context() == (1, 2)  # from the environment: no process group is started
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(RuntimeError, match="LOCAL_RANK is 2 but only 2 CUDA device"):
        distributed_device("cuda")


def test_device_outside_torchrun_is_left_alone(fake_cuda, monkeypatch):
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    assert distributed_device("cuda") == torch.device("cuda") and distributed_device("auto") == torch.device("cuda")
    assert fake_cuda == [] and distributed_context() == (0, 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed_device("auto") == torch.device("cpu")


def test_process_group_backend_follows_the_device(monkeypatch):
    started = []
    monkeypatch.setattr(training.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(training.dist, "rendezvous", lambda url: iter([(torch.distributed.HashStore(), 1, 2)]))
    monkeypatch.setattr(training.dist, "init_process_group",
                        lambda backend, store, **kw: started.append((backend, kw.pop("device_id", None), kw)))
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not training.init_distributed(torch.device("cpu")) and started == []
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert training.init_distributed(torch.device("cpu")) and training.init_distributed(torch.device("cuda", 1))
    assert started == [("gloo", None, {"rank": 1, "world_size": 2}),
                       ("nccl", torch.device("cuda", 1), {"rank": 1, "world_size": 2})]


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """Two gloo processes, accumulate 2, 14 steps: a straight run, then the same run stopped after 12 steps (its last
    checkpoint is at 10) and resumed."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(SCRIPT), str(out), "14", "--accumulate", "2", "--interrupt", "12"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, Path(str(out) + "_interrupted")


def test_ddp_logs_the_loss_averaged_over_ranks(ddp_runs):
    out, _ = ddp_runs
    per_rank = [json.loads((out / f"losses{r}.json").read_text()) for r in (0, 1)]
    assert len(per_rank[0]) == len(per_rank[1]) == 28  # 14 steps of 2 micro-batches on each rank
    assert per_rank[0] != per_rank[1]  # different shards of each batch
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10, 14]
    edges = [0, 5, 10, 14]
    for row, lo, hi in zip(rows, edges, edges[1:]):
        window = [v for losses in per_rank for v in losses[2 * lo:2 * hi]]
        assert row["loss"] == pytest.approx(sum(window) / len(window), rel=1e-5)
    r0, r1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)  # no_sync on the first micro-batch, all-reduce on the last


def test_ddp_resume_with_accumulation_is_bit_identical(ddp_runs):
    straight, resumed = ddp_runs
    ck = load_file(str(resumed / "checkpoint" / "trainer.safetensors"))
    assert {"rng.loss", "rng.1.loss", "rng.cpu", "rng.1.cpu"} <= ck.keys()  # every rank's RNG states
    assert json.loads((resumed / "checkpoint" / "state.json").read_text())["step"] == 14
    assert len(json.loads((resumed / "losses1.json").read_text())) == 8  # the resumed Trainer ran steps 11-14 only
    rows = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{**row, "steps_per_s": r["steps_per_s"]} for r, row in zip(rows, (
        json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()))] and len(rows) == 3
    wa = load_file(str(straight / "checkpoint" / "model.safetensors"))
    wb = load_file(str(resumed / "checkpoint" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    rank1 = load_file(str(resumed / "rank1.safetensors"))
    assert all(torch.equal(rank1[k], wa[k]) for k in rank1)


def test_only_rank_0_writes_checkpoints_and_every_rank_waits(tmp_path):
    from polydiff.core.training import TrainConfig, Trainer

    cfg = TrainConfig(steps=2, batch_size=4, ckpt_every=1, log_every=1, progress=False)
    loss = lambda m, rows, g: m(rows).square().mean()  # noqa: E731
    trainer = Trainer(torch.nn.Linear(2, 2), loss, torch.randn(8, 2), tmp_path, cfg)
    waits = []
    trainer.rank, trainer.world = 1, 2  # rank 1 of 2, with the collectives replaced by fakes
    trainer._gather = lambda obj: [obj, obj]
    trainer._barrier = lambda: waits.append(trainer.step)
    trainer.save()
    assert waits == [0] and not (tmp_path / "checkpoint").exists()
    trainer._gather = lambda obj: [obj, obj + 10]  # rank 0 resumed a checkpoint this rank cannot see
    with pytest.raises(RuntimeError, match="ranks would start at different steps"):
        trainer.fit()
