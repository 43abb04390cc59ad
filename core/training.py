"""One training loop for every domain: AdamW, EMA, gradient clipping, bf16 autocast on CUDA, a progress bar,
metrics as JSONL with a loss plot, atomic safetensors checkpoints with exact resume, and DDP under ``torchrun``.

The loop knows nothing of the domain: it draws batches of dataset indices in a fixed order (a function of the seed,
the epoch and the rank), collates them, and asks ``loss_fn(model, batch, generator)`` for a scalar. Everything that
decides the future (weights, EMA, optimizer moments, RNG states, the step) is in the checkpoint, so a run killed at
any point and resumed from its last checkpoint ends with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import find_checkpoint, load_checkpoint, save_checkpoint, write_json

Tensor = torch.Tensor
LossFn = Callable[[nn.Module, Any, torch.Generator], Tensor]


LR_DECAYS = ("none", "cosine", "linear")


@dataclass
class TrainConfig:
    """Hyper-parameters of the loop (the domain's preset fills them)."""

    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: int = 0
    lr_decay: str = "none"
    decay_from: int = 0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 25
    ckpt_every: int = 500
    num_workers: int = 0
    bf16: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"unknown lr_decay {self.lr_decay!r}; choose one of {', '.join(LR_DECAYS)}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        values = dict(data)
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        return cls(**values)


def learning_rate(c: TrainConfig, step: int) -> float:
    """The LR at ``step``: linear warm-up, constant up to ``decay_from``, then ``lr_decay`` down to 0 at ``steps``.

    A run resumed with a longer ``steps`` and ``decay_from`` at its old end anneals exactly as a fresh run would.
    """
    lr = c.lr * min(1.0, (step + 1) / c.warmup) if c.warmup > 0 else c.lr
    start = max(c.decay_from, c.warmup)
    if c.lr_decay == "none" or step < start or c.steps <= start:
        return lr
    t = min(1.0, (step - start) / (c.steps - start))
    return lr * (0.5 * (1.0 + math.cos(math.pi * t)) if c.lr_decay == "cosine" else 1.0 - t)


def distributed_context() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by ``torchrun`` with more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


class StepBatches(torch.utils.data.Sampler):
    """Index batches in a fixed order: epoch e is a permutation seeded by (seed, e); rank r takes every world-th index.

    Starting at ``start_step`` reproduces exactly the batches an uninterrupted run would see from that step on.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int, steps: int, rank: int = 0, world: int = 1):
        if n == 0:
            raise ValueError("the training set is empty")
        self.n, self.bs, self.seed = n, min(batch_size, n), seed
        self.start, self.steps, self.rank, self.world = start_step, steps, rank, world
        self.per_epoch = max(1, n // self.bs)

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def __iter__(self):
        perm, perm_epoch = None, -1
        for step in range(self.start, self.steps):
            epoch, pos = divmod(step, self.per_epoch)
            if epoch != perm_epoch:
                perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
                perm_epoch = epoch
            batch = perm[pos * self.bs:(pos + 1) * self.bs]
            yield batch[self.rank::self.world].tolist()


class EMA:
    """Exponential moving average of the weights, with the usual warm-up min(decay, (1 + n) / (10 + n))."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(list(self.shadow.parameters()), [p.detach() for p in model.parameters()], 1 - d)
        for e, b in zip(self.shadow.buffers(), model.buffers()):
            e.copy_(b)


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_state(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    for key, v in meta["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def plot_losses(metrics_path: Path, png_path: Path) -> None:
    """Draw the loss curve of a run's metrics.jsonl to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "loss" in r]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log" if min(r["loss"] for r in rows) > 0 else "linear")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = png_path.with_name(png_path.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, png_path)


@dataclass
class Trainer:
    """Train ``model`` (a denoiser module) on ``dataset`` with ``loss_fn``, writing the run into ``out``.

    ``dataset`` is a Tensor (rows are examples; ``collate``, if given, receives the indexed rows) or a map-style
    Dataset whose items ``collate`` turns into a batch;
    ``to_device(batch, device)`` moves a batch (default: tensors, and tensors inside dicts/lists/tuples).
    ``on_step_end(step, loss)`` and ``on_run_end(summary)`` observe the run (plugin hooks are passed in here).
    """

    model: nn.Module
    loss_fn: LossFn
    dataset: Any
    out: Path
    config: TrainConfig = field(default_factory=TrainConfig)
    collate: Callable[[list[Any]], Any] | None = None
    device: torch.device | str = "cpu"
    run_config: dict[str, Any] = field(default_factory=dict)
    on_step_end: Callable[[int, float], None] | None = None
    on_run_end: Callable[[dict[str, Any]], None] | None = None
    stop_after: int | None = None  # for tests and time-boxed runs: return after this many steps of this process

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.device = torch.device(self.device)
        self.rank, self.world = distributed_context()
        self.model.to(self.device)
        c = self.config
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=c.lr, betas=c.betas, weight_decay=c.weight_decay)
        self.ema = EMA(self.model, c.ema_decay)
        self.gen = torch.Generator(device=self.device).manual_seed(c.seed * 7919 + self.rank)
        self.step = 0
        self.ddp_model = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    # ---- state -------------------------------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoint"

    def save(self) -> None:
        """Write the checkpoint (rank 0 only) atomically."""
        if self.rank != 0:
            return
        opt_tensors, opt_meta = _optimizer_tensors(self.opt)
        rng = {"cpu": torch.get_rng_state(), "loss": self.gen.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state()
        tensors = {
            "model": {**{f"ema.{k}": v for k, v in self.ema.shadow.state_dict().items()}, **self.model.state_dict()},
            "trainer": {**{f"opt.{k}": v for k, v in opt_tensors.items()}, **{f"rng.{k}": v for k, v in rng.items()}},
        }
        state = {"step": self.step, "optimizer": opt_meta, "train": asdict(self.config), "run": self.run_config}
        save_checkpoint(self.ckpt_dir, tensors, state)

    def resume(self) -> bool:
        """Load the run's last checkpoint if there is one; True when something was loaded."""
        if find_checkpoint(self.ckpt_dir) is None:
            return False
        tensors, state = load_checkpoint(self.ckpt_dir, ("model", "trainer"))
        weights = tensors["model"]
        self.model.load_state_dict({k: v for k, v in weights.items() if not k.startswith("ema.")})
        self.ema.shadow.load_state_dict({k[4:]: v for k, v in weights.items() if k.startswith("ema.")})
        tr = tensors["trainer"]
        opt = {k[4:]: v.to(self.device) for k, v in tr.items() if k.startswith("opt.")}
        opt = {k: (v.cpu() if k.endswith(".step") else v) for k, v in opt.items()}
        self.opt.load_state_dict(_optimizer_state(opt, state["optimizer"]))
        torch.set_rng_state(tr["rng.cpu"])
        self.gen.set_state(tr["rng.loss"])
        if "rng.cuda" in tr and torch.cuda.is_available():
            torch.cuda.set_rng_state(tr["rng.cuda"])
        self.step = int(state["step"])
        return True

    # ---- data --------------------------------------------------------------------------------------------
    def _batches(self):
        c = self.config
        sampler = StepBatches(len(self.dataset), c.batch_size, c.seed, self.step, c.steps, self.rank, self.world)
        if torch.is_tensor(self.dataset):
            for idx in sampler:
                rows = self.dataset[idx]
                yield self.collate(rows) if self.collate is not None else rows
            return
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=sampler, collate_fn=self.collate, num_workers=c.num_workers,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
        )
        yield from loader

    def _to_device(self, batch: Any) -> Any:
        if torch.is_tensor(batch):
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, dict):
            return {k: self._to_device(v) for k, v in batch.items()}
        if isinstance(batch, (list, tuple)) and not hasattr(batch, "_fields"):
            return type(batch)(self._to_device(v) for v in batch)
        if hasattr(batch, "to") and callable(batch.to):
            return batch.to(self.device)
        return batch

    # ---- loop --------------------------------------------------------------------------------------------
    def _lr(self, step: int) -> float:
        return learning_rate(self.config, step)

    def fit(self, resume: bool = False) -> nn.Module:
        """Train to ``config.steps`` (continuing from the checkpoint with ``resume``); returns the EMA model."""
        c = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        metrics_path = self.out / "metrics.jsonl"
        if resume and self.resume():
            self._truncate_metrics(metrics_path)
        elif self.rank == 0:
            metrics_path.write_text("")
        if self.rank == 0:
            write_json(self.out / "config.json", {**self.run_config, "train": asdict(c)})
        use_bf16 = c.bf16 and self.device.type == "cuda"
        bar = tqdm(total=c.steps, initial=self.step, desc="training", disable=not c.progress or self.rank != 0,
                   dynamic_ncols=True)
        running, count, t0, done_here = torch.zeros((), device=self.device), 0, time.perf_counter(), 0
        self.model.train()
        for batch in self._batches():
            batch = self._to_device(batch)
            for group in self.opt.param_groups:
                group["lr"] = self._lr(self.step)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = self.loss_fn(self.ddp_model, batch, self.gen)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if c.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
            self.opt.step()
            self.ema.update(self.model, self.step)
            self.step += 1
            done_here += 1
            running += loss.detach().float()
            count += 1
            bar.update(1)
            if self.step % c.log_every == 0 or self.step == c.steps:
                mean_loss = float(running) / count
                if not math.isfinite(mean_loss):
                    raise FloatingPointError(f"training loss became {mean_loss} at step {self.step}: lower the learning rate")
                rate = count / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{mean_loss:.4g}", steps_per_s=f"{rate:.1f}")
                if self.rank == 0:
                    with metrics_path.open("a") as f:
                        f.write(json.dumps({"step": self.step, "loss": mean_loss, "lr": self._lr(self.step - 1),
                                            "steps_per_s": rate}) + "\n")
                if self.on_step_end is not None:
                    self.on_step_end(self.step, mean_loss)
                running, count, t0 = torch.zeros((), device=self.device), 0, time.perf_counter()
            if self.step % c.ckpt_every == 0 or self.step == c.steps:
                self.save()
                if self.rank == 0:
                    plot_losses(metrics_path, self.out / "loss.png")
            if self.stop_after is not None and done_here >= self.stop_after:
                break
        bar.close()
        if self.rank == 0 and self.step == c.steps and self.on_run_end is not None:
            self.on_run_end({"step": self.step, "out": str(self.out)})
        return self.ema.shadow

    def _truncate_metrics(self, path: Path) -> None:
        """Drop metric rows logged after the checkpoint we resumed from (they will be logged again)."""
        if self.rank != 0 or not path.exists():
            return
        keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= self.step]
        path.write_text("".join(line + "\n" for line in keep))


def load_weights(run_or_ckpt: Path, model: nn.Module, ema: bool = True) -> dict[str, Any]:
    """Load the (EMA) weights of a run folder or checkpoint folder into ``model``; returns the checkpoint's state."""
    path = Path(run_or_ckpt)
    if (path / "checkpoint").is_dir() or (path / "checkpoint.old").is_dir():
        path = path / "checkpoint"
    tensors, state = load_checkpoint(path, ("model",))
    weights = tensors["model"]
    prefix = "ema." if ema and any(k.startswith("ema.") for k in weights) else ""
    picked = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix) and (prefix or not k.startswith("ema."))}
    model.load_state_dict(picked)
    return state


def export_weights(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write only the (EMA) weights of a model as one safetensors file (what the project ships)."""
    from safetensors.torch import save_file

    tmp = Path(str(path) + ".tmp")
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


__all__: Sequence[str] = ["TrainConfig", "Trainer", "StepBatches", "EMA", "load_weights", "export_weights", "plot_losses"]
