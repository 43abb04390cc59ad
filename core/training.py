"""One training loop for every domain: AdamW, EMA, gradient clipping, gradient accumulation, bf16 autocast on CUDA,
a progress bar, metrics as JSONL with a loss plot, atomic safetensors checkpoints with exact resume, and DDP under
``torchrun`` (one GPU per process, chosen by ``LOCAL_RANK``).

The loop knows nothing of the domain: it draws batches of dataset indices in a fixed order (a function of the seed,
the epoch and the rank), collates them, and asks ``loss_fn(model, batch, generator)`` for a scalar. Everything that
decides the future (weights, EMA, optimizer moments, every rank's RNG states, the step) is in the checkpoint, so a
run killed at any point and resumed from its last checkpoint ends with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import copy
import itertools
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
_GROUPS_STARTED = itertools.count()  # process groups this process started: each gets its own store prefix


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
    accumulate: int = 1  # micro-batches of ``batch_size`` averaged per optimizer step

    def __post_init__(self) -> None:
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"unknown lr_decay {self.lr_decay!r}; choose one of {', '.join(LR_DECAYS)}")
        if isinstance(self.accumulate, bool) or not isinstance(self.accumulate, int) or self.accumulate < 1:
            raise ValueError(f"train.accumulate must be an integer >= 1 (micro-batches per optimizer step), "
                             f"got {self.accumulate!r}")

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


def under_torchrun() -> bool:
    """True when ``torchrun`` started this process (it sets ``LOCAL_RANK`` and ``WORLD_SIZE``)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def distributed_device(requested: str | torch.device = "auto") -> torch.device:
    """The device this process works on: under ``torchrun``, ``auto``/``cuda`` mean ``cuda:{LOCAL_RANK}`` (one GPU per
    process, made the current device) instead of every rank piling onto GPU 0; ``cpu`` and explicit indices stay."""
    name = str(requested)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type != "cuda" or not under_torchrun():
        return device
    if device.index is None:
        local, count = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
        if local >= count:
            raise RuntimeError(f"LOCAL_RANK is {local} but only {count} CUDA device(s) are visible: start torchrun "
                               f"with --nproc-per-node {count} or fewer on this node")
        device = torch.device("cuda", local)
    torch.cuda.set_device(device)
    return device


def init_distributed(device: torch.device) -> bool:
    """Start the process group under ``torchrun`` with more than one process (nccl for CUDA, gloo for CPU) unless one
    is running; True when this call started it (so its owner also ends it).

    Each group gets its own key prefix in torchrun's store: torch names every default group "0", so a group started
    after an earlier one was destroyed (a second ``fit`` in one process) could read the old group's stale addresses.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    store, rank, world = next(dist.rendezvous("env://"))
    store = dist.PrefixStore(f"polydiff_pg{next(_GROUPS_STARTED)}", store)
    if device.type == "cuda":
        dist.init_process_group("nccl", store=store, rank=rank, world_size=world, device_id=device)
    else:
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    return True


def distributed_context() -> tuple[int, int]:
    """(rank, world size): the process group's, else torchrun's ``RANK``/``WORLD_SIZE``, else (0, 1); starts nothing,
    so commands that only split work over ranks (sampling) can ask without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


class StepBatches(torch.utils.data.Sampler):
    """Index batches in a fixed order: epoch e is a permutation seeded by (seed, e); rank r takes every world-th index.

    Optimizer step s draws the ``accumulate`` consecutive micro-batches s * accumulate ... (s + 1) * accumulate - 1,
    so ``accumulate`` a with batch B sees exactly the examples of ``accumulate`` 1 with batch a * B (both drop the
    same remainder of each epoch). Starting at ``start_step`` reproduces exactly the batches an uninterrupted run
    would see from that step on.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int, steps: int, rank: int = 0, world: int = 1,
                 accumulate: int = 1):
        if n == 0:
            raise ValueError("the training set is empty")
        self.n, self.bs, self.seed = n, min(batch_size, n), seed
        self.start, self.steps, self.rank, self.world = start_step * accumulate, steps * accumulate, rank, world
        whole_steps = n // (self.bs * accumulate)  # an epoch ends on a step boundary when at least one step fits
        self.per_epoch = whole_steps * accumulate if whole_steps else n // self.bs

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def __iter__(self):
        perm, perm_epoch = None, -1
        for micro in range(self.start, self.steps):
            epoch, pos = divmod(micro, self.per_epoch)
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
    ``on_step_end(step, loss)`` and ``on_run_end(summary)`` observe the run on rank 0 (plugin hooks are passed in
    here); the loss they see is the mean over all ranks.
    Under ``torchrun`` the device comes from ``LOCAL_RANK`` (see ``distributed_device``), the process group is
    started if nobody started it (and ended at the end of ``fit``), and the model is wrapped in DDP.
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
        self.device = distributed_device(self.device)
        self.owns_group = init_distributed(self.device)
        self.rank, self.world = distributed_context()
        if self.world > 1 and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())  # DDP and barriers need the index
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

    # ---- ranks -------------------------------------------------------------------------------------------
    def _barrier(self) -> None:
        """Wait for every rank (a no-op in a single process)."""
        if self.world > 1 and self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        elif self.world > 1:
            dist.barrier()

    def _mean_over_ranks(self, value: Tensor) -> Tensor:
        """The mean of ``value`` over all ranks (every rank gets it), so the log describes the whole batch."""
        if self.world == 1:
            return value
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value / self.world

    def _gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order (collective: every rank must call it)."""
        if self.world == 1:
            return [obj]
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, obj)
        return gathered

    def _check_same_step(self) -> None:
        """Fail clearly when ranks start at different steps (a node that cannot see the run's checkpoint)."""
        steps = self._gather(self.step)
        if len(set(steps)) > 1:
            raise RuntimeError(f"ranks would start at different steps {steps}: every rank must see the same "
                               f"checkpoint in {self.ckpt_dir} (use a folder shared by all machines)")

    def _end_distributed(self) -> None:
        """End the process group if this Trainer started it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self.owns_group = False

    # ---- state -------------------------------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoint"

    def _rng_state(self) -> dict[str, Tensor]:
        """This process's RNG states: the global CPU one, the loss generator's and (with CUDA) this device's."""
        rng = {"cpu": torch.get_rng_state(), "loss": self.gen.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state(self.device if self.device.type == "cuda" else "cuda")
        return rng

    def save(self, plot_from: Path | None = None) -> None:
        """Write the checkpoint with every rank's RNG states: rank 0 writes it atomically (and the loss plot from
        ``plot_from``) while the other ranks wait at a barrier, so none reads a half-written checkpoint or leaves
        early. Collective under DDP: every rank calls it."""
        rngs = self._gather(self._rng_state())
        if self.rank == 0:
            self._write_checkpoint(rngs)
            if plot_from is not None:
                plot_losses(plot_from, self.out / "loss.png")
        self._barrier()

    def _write_checkpoint(self, rngs: list[dict[str, Tensor]]) -> None:
        """Write weights, EMA, optimizer moments, the RNG states of each rank and the step into ``ckpt_dir``."""
        opt_tensors, opt_meta = _optimizer_tensors(self.opt)
        rng = {_rng_key(r, k): v for r, states in enumerate(rngs) for k, v in states.items()}
        tensors = {
            "model": {**{f"ema.{k}": v for k, v in self.ema.shadow.state_dict().items()}, **self.model.state_dict()},
            "trainer": {**{f"opt.{k}": v for k, v in opt_tensors.items()}, **{f"rng.{k}": v for k, v in rng.items()}},
        }
        state = {"step": self.step, "optimizer": opt_meta, "train": asdict(self.config), "run": self.run_config,
                 "world": self.world}
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
        self._set_rng_state({k[4:]: v for k, v in tr.items() if k.startswith("rng.")})
        self.step = int(state["step"])
        return True

    def _set_rng_state(self, saved: dict[str, Tensor]) -> None:
        """Restore this rank's RNG states (a rank the checkpoint has no states for keeps its fresh seeds)."""
        mine = {k: saved[_rng_key(self.rank, k)] for k in ("cpu", "loss", "cuda") if _rng_key(self.rank, k) in saved}
        if "cpu" in mine:
            torch.set_rng_state(mine["cpu"])
        if "loss" in mine:
            self.gen.set_state(mine["loss"])
        if "cuda" in mine and torch.cuda.is_available():
            torch.cuda.set_rng_state(mine["cuda"], self.device if self.device.type == "cuda" else "cuda")

    # ---- data --------------------------------------------------------------------------------------------
    def _batches(self):
        c = self.config
        sampler = StepBatches(len(self.dataset), c.batch_size, c.seed, self.step, c.steps, self.rank, self.world,
                              c.accumulate)
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

    def _grad_sync(self, last: bool) -> contextlib.AbstractContextManager:
        """DDP's ``no_sync`` on all but the last micro-batch of a step: gradients are all-reduced once per step."""
        if last or self.ddp_model is self.model:
            return contextlib.nullcontext()
        return self.ddp_model.no_sync()

    def _micro_step(self, batch: Any, last: bool, use_bf16: bool) -> Tensor:
        """Forward and backward of one micro-batch (its loss scaled by 1 / accumulate); returns the detached loss."""
        acc = self.config.accumulate
        with self._grad_sync(last):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = self.loss_fn(self.ddp_model, batch, self.gen)
            (loss / acc if acc > 1 else loss).backward()
        return loss.detach().float()

    def _optimizer_step(self) -> None:
        """Clip, step AdamW, update the EMA and count the step."""
        c = self.config
        if c.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.opt.step()
        self.ema.update(self.model, self.step)
        self.step += 1

    def fit(self, resume: bool = False) -> nn.Module:
        """Train to ``config.steps`` optimizer steps (continuing from the checkpoint with ``resume``); returns the EMA
        model. Each step averages ``config.accumulate`` micro-batches of ``config.batch_size`` (split over ranks)."""
        c = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        metrics_path = self.out / "metrics.jsonl"
        if resume and self.resume():
            self._truncate_metrics(metrics_path)
        elif self.rank == 0:
            metrics_path.write_text("")
        if self.rank == 0:
            write_json(self.out / "config.json", {**self.run_config, "train": asdict(c)})
        self._check_same_step()
        use_bf16 = c.bf16 and self.device.type == "cuda"
        bar = tqdm(total=c.steps, initial=self.step, desc="training", disable=not c.progress or self.rank != 0,
                   dynamic_ncols=True)
        running, count, t0, done_here = torch.zeros((), device=self.device), 0, time.perf_counter(), 0
        self.model.train()
        for micro, batch in enumerate(self._batches()):
            j = micro % c.accumulate
            if j == 0:
                for group in self.opt.param_groups:
                    group["lr"] = self._lr(self.step)
                self.opt.zero_grad(set_to_none=True)
            loss = self._micro_step(self._to_device(batch), j == c.accumulate - 1, use_bf16)
            running += loss / c.accumulate if c.accumulate > 1 else loss
            if j < c.accumulate - 1:
                continue
            self._optimizer_step()
            done_here += 1
            count += 1
            bar.update(1)
            if self.step % c.log_every == 0 or self.step == c.steps:
                self._log(metrics_path, running, count, t0, bar)
                running, count, t0 = torch.zeros((), device=self.device), 0, time.perf_counter()
            if self.step % c.ckpt_every == 0 or self.step == c.steps:
                self.save(plot_from=metrics_path)
            if self.stop_after is not None and done_here >= self.stop_after:
                break
        bar.close()
        if self.rank == 0 and self.step == c.steps and self.on_run_end is not None:
            self.on_run_end({"step": self.step, "out": str(self.out)})
        self._end_distributed()
        return self.ema.shadow

    def _log(self, metrics_path: Path, running: Tensor, count: int, t0: float, bar: tqdm) -> None:
        """Average the loss since the last log over steps and ranks; rank 0 writes it and tells the observer."""
        mean_loss = float(self._mean_over_ranks(running)) / count
        if not math.isfinite(mean_loss):
            raise FloatingPointError(f"training loss became {mean_loss} at step {self.step}: lower the learning rate")
        rate = count / (time.perf_counter() - t0)
        bar.set_postfix(loss=f"{mean_loss:.4g}", steps_per_s=f"{rate:.1f}")
        if self.rank != 0:
            return
        with metrics_path.open("a") as f:
            f.write(json.dumps({"step": self.step, "loss": mean_loss, "lr": self._lr(self.step - 1),
                                "steps_per_s": rate}) + "\n")
        if self.on_step_end is not None:
            self.on_step_end(self.step, mean_loss)

    def _truncate_metrics(self, path: Path) -> None:
        """Drop metric rows logged after the checkpoint we resumed from (they will be logged again)."""
        if self.rank != 0 or not path.exists():
            return
        keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= self.step]
        path.write_text("".join(line + "\n" for line in keep))


def _rng_key(rank: int, name: str) -> str:
    """Checkpoint key of a rank's RNG state (rank 0 keeps the names single-process checkpoints always had)."""
    return name if rank == 0 else f"{rank}.{name}"


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


__all__: Sequence[str] = ["TrainConfig", "Trainer", "StepBatches", "EMA", "load_weights", "export_weights", "plot_losses",
                          "distributed_device", "distributed_context", "init_distributed", "under_torchrun"]
