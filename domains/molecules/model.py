"""The conformer denoiser (EDM preconditioning around ``ConformerNet``, in each molecule's centred frame) and its
checkpoints (safetensors weights + a JSON config; nothing is ever unpickled)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from polydiff.core.denoisers import Denoiser

from .graph import num_graphs, scatter_mean
from .network import ConformerNet

Tensor = torch.Tensor
SIGMA_DATA = 1.4  # std of centred QM9 coordinates per axis, Angstrom (1.401 over QM9, ``data.sigma_data``)


class ConformerDenoiser(nn.Module):
    """``D(x, sigma, cond)``: EDM denoiser applied in each molecule's centred frame, then moved back.

    Centring makes the x0 estimate exactly translation-equivariant (EDM's c_skip x alone would move it by c_skip t).
    """

    def __init__(self, net: ConformerNet, sigma_data: float = SIGMA_DATA) -> None:
        super().__init__()
        self.net = net
        self.sigma_data = float(sigma_data)
        self.inner = Denoiser(net, "edm", sigma_data=sigma_data)

    def forward(self, x: Tensor, sigma: Tensor | float, cond: Any) -> Tensor:
        """Estimate the clean conformers from ``x = x0 + sigma eps`` (sigma: scalar or one per atom)."""
        com = scatter_mean(x, cond["batch"], num_graphs(cond))[cond["batch"]]
        return com + self.inner(x - com, sigma, cond)


def save_checkpoint(denoiser: ConformerDenoiser, directory: Path | str, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (network config, sigma_data, ``extra``) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in denoiser.net.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))
    config = {"domain": "molecules", "net": denoiser.net.config, "sigma_data": denoiser.sigma_data, **(extra or {})}
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    return directory


def load_checkpoint(directory: Path | str, device: torch.device | str = "cpu") -> tuple[ConformerDenoiser, dict]:
    """Rebuild the denoiser saved by ``save_checkpoint``; a clear error if the folder is not such a checkpoint."""
    directory = Path(directory)
    cfg_path, weights = directory / "config.json", directory / "model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise FileNotFoundError(f"{directory} is not a molecules checkpoint (needs config.json and model.safetensors)")
    config = json.loads(cfg_path.read_text())
    if config.get("domain") != "molecules":
        raise ValueError(f"{directory} holds a {config.get('domain')!r} checkpoint, not a molecules one")
    net = ConformerNet(**config["net"])
    net.load_state_dict(load_file(str(weights)))
    return ConformerDenoiser(net, config["sigma_data"]).to(device).eval(), config
