"""A tiny training run for the resume and DDP tests (run as a script: python train_script.py OUT STEPS [KILL_AT])."""
import os
import sys

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


def main() -> None:
    out, steps = sys.argv[1], int(sys.argv[2])
    kill_at = int(sys.argv[3]) if len(sys.argv) > 3 else None
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data, _ = eight_gaussians().sample(500, torch.Generator().manual_seed(0))
    model = Denoiser(Net())
    loss = lambda m, x0, g: denoising_loss(m, x0, schedule=EDM(), generator=g)  # noqa: E731

    def on_step_end(step, value):
        if kill_at is not None and step == kill_at:
            os._exit(3)  # a hard kill: no cleanup, no checkpoint

    cfg = TrainConfig(steps=steps, batch_size=64, lr=1e-2, log_every=5, ckpt_every=10, progress=False, seed=4)
    trainer = Trainer(model, loss, data, out, cfg, on_step_end=on_step_end)
    trainer.fit(resume=True)
    if trainer.world > 1:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  os.path.join(out, f"rank{trainer.rank}.safetensors"))


if __name__ == "__main__":
    main()
