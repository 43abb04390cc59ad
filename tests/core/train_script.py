"""A tiny training run for the resume and DDP tests.

Run as a script: ``python train_script.py OUT STEPS [KILL_AT] [--accumulate A] [--interrupt K]`` (or under torchrun).
KILL_AT hard-kills the process at that logged step. ``--interrupt K`` then trains the same run again into
``OUT_interrupted``: stopped after K steps and resumed by a fresh Trainer in the same process. Under DDP each rank
writes its final weights to ``OUT/rank{r}.safetensors`` and every micro-batch loss it computed to
``OUT/losses{r}.json``.
"""
import argparse
import json
import os

import torch
from torch import nn

from polydiff.core.denoisers import Denoiser
from polydiff.core.losses import denoising_loss
from polydiff.core.mixtures import eight_gaussians
from polydiff.core.schedules import EDM
from polydiff.core.training import TrainConfig, Trainer


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(3, 32), nn.SiLU(), nn.Dropout(0.1), nn.Linear(32, 2))

    def forward(self, x, c_noise, cond=None):
        return self.f(torch.cat([x, c_noise[:, None]], 1))


def parse() -> argparse.Namespace:
    """The command line: OUT STEPS [KILL_AT] [--accumulate A] [--interrupt K]."""
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("steps", type=int)
    p.add_argument("kill_at", type=int, nargs="?")
    p.add_argument("--accumulate", type=int, default=1)
    p.add_argument("--interrupt", type=int)
    return p.parse_args()


def train(out: str, steps: int, accumulate: int, kill_at: int | None = None, stop_after: int | None = None):
    """Train the tiny denoiser into ``out`` (resuming its checkpoint if any); returns the Trainer and its losses."""
    torch.manual_seed(0)
    data, _ = eight_gaussians().sample(500, torch.Generator().manual_seed(0))
    losses: list[float] = []

    def loss(m, x0, g):
        value = denoising_loss(m, x0, schedule=EDM(), generator=g)
        losses.append(float(value.detach()))
        return value

    def on_step_end(step, value):
        if kill_at is not None and step == kill_at:
            os._exit(3)  # a hard kill: no cleanup, no checkpoint

    cfg = TrainConfig(steps=steps, batch_size=64, lr=1e-2, log_every=5, ckpt_every=10, progress=False, seed=4,
                      accumulate=accumulate)
    trainer = Trainer(Denoiser(Net()), loss, data, out, cfg, on_step_end=on_step_end, stop_after=stop_after)
    trainer.fit(resume=True)
    return trainer, losses


def save_rank(trainer: Trainer, losses: list[float]) -> None:
    """Under DDP: this rank's final weights and micro-batch losses, for the tests to compare."""
    from safetensors.torch import save_file

    if trainer.world == 1:
        return
    save_file({k: v.contiguous() for k, v in trainer.model.state_dict().items()},
              os.path.join(trainer.out, f"rank{trainer.rank}.safetensors"))
    (trainer.out / f"losses{trainer.rank}.json").write_text(json.dumps(losses))


def main() -> None:
    args = parse()
    torch.set_num_threads(1)
    trainer, losses = train(args.out, args.steps, args.accumulate, kill_at=args.kill_at)
    save_rank(trainer, losses)
    if args.interrupt is not None:
        again = args.out.rstrip("/") + "_interrupted"
        train(again, args.steps, args.accumulate, stop_after=args.interrupt)
        save_rank(*train(again, args.steps, args.accumulate))


if __name__ == "__main__":
    main()
