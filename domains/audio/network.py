"""The audio domain's network and denoiser: the shared ``UNet`` over normalised log-mels [B, 1, n_mels, frames].

Two layouts: ``2d`` treats the spectrogram as a one-channel picture; ``1d`` treats the mel bins as channels of a
sequence over time (WaveGrad/DiffWave-style), several times cheaper for the same quality at 64 bins x 64 frames.

Convolutions and attention are blind to absolute position, but clips are centred (a word sits mid-clip, silence at
both ends): ``pos_channels`` sinusoidal channels of the frame index (and, in ``2d``, of the mel bin) are appended to
the input so the network can place the word where the data put it.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn

from polydiff.core.denoisers import Denoiser
from polydiff.domains.common.embeddings import NULL_LABEL
from polydiff.domains.common.unet import UNet


@dataclass(frozen=True)
class NetConfig:
    """U-Net sizes and layout (``2d`` or ``1d``); ``num_classes`` 0 gives an unconditional model (else a null class
    is added for CFG); ``n_mels`` is the channel count of the ``1d`` layout; ``pos_channels`` (even) position channels
    per positional axis are appended to the input (0: none, as in models trained before they existed)."""

    base: int = 32
    mults: tuple[int, ...] = (1, 2, 2)
    num_res: int = 1
    attn_levels: tuple[int, ...] = (2,)
    num_classes: int = 10
    dropout: float = 0.0
    sigma_data: float = 1.0
    layout: str = "2d"
    n_mels: int = 64
    pos_channels: int = 0

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NetConfig":
        """Inverse of ``to_dict`` (lists become tuples)."""
        d = dict(d)
        for key in ("mults", "attn_levels"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


def position_channels(length: int, channels: int, device: torch.device | None = None) -> torch.Tensor:
    """[channels, length] cos/sin of the index at wavelengths 2*length, length, length/2, ... (smooth, unique)."""
    t = torch.arange(length, device=device, dtype=torch.float32)
    freqs = torch.pi / length * 2.0 ** torch.arange(channels // 2, device=device, dtype=torch.float32)
    angles = freqs[:, None] * t[None]
    return torch.cat([angles.cos(), angles.sin()])


class MelUNet(nn.Module):
    """``F(x_in, c_noise, cond)`` on [B, 1, n_mels, frames]; ``cond`` is None or ``{"label": LongTensor[B]}``.

    Controllable (``polydiff.core.control``) through its U-Net: the residual features are the U-Net's, channels-first
    over frames (``1d``) or bins x frames (``2d``), so a control over time ([B, c, frames]) is a grid hint either way.
    """

    feature_axis = 1

    def __init__(self, config: NetConfig = NetConfig()) -> None:
        super().__init__()
        if config.layout not in ("1d", "2d"):
            raise ValueError(f"network.layout must be '1d' or '2d', not {config.layout!r}")
        self.config = config
        one_d = config.layout == "1d"
        channels = config.n_mels if one_d else 1
        if config.pos_channels < 0 or config.pos_channels % 2:
            raise ValueError(f"network.pos_channels must be an even number >= 0, not {config.pos_channels}")
        extra = config.pos_channels * (1 if one_d else 2)
        self.unet = UNet(channels + extra, channels, base=config.base, mults=config.mults, num_res=config.num_res,
                         attn_levels=config.attn_levels, num_classes=config.num_classes, dropout=config.dropout,
                         dims=1 if one_d else 2)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: dict | None = None,
                residuals: list[torch.Tensor] | None = None) -> torch.Tensor:
        out = self.unet(self._unet_input(x, cond), c_noise, cond, residuals=residuals)
        return out if self.config.layout == "2d" else out[:, None]

    def feature_channels(self) -> list[int]:
        """Channels of each residual feature (the control protocol)."""
        return self.unet.feature_channels()

    def features(self, x: torch.Tensor, c_noise: torch.Tensor, cond: dict | None = None,
                 hint: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The U-Net's residual features of ``x`` (the control protocol)."""
        return self.unet.features(self._unet_input(x, cond), c_noise, cond, hint=hint)

    def control_branch(self) -> "MelUNet":
        """A copy whose U-Net is its encoder half (the trainable branch of a ControlNet)."""
        branch = copy.deepcopy(self)
        branch.unet = self.unet.control_branch()
        return branch

    def _unet_input(self, x: torch.Tensor, cond: dict | None) -> torch.Tensor:
        """What the U-Net reads: ``x`` with the position channels, the bins as channels in the ``1d`` layout."""
        if cond is not None and cond.get("label") is not None and self.config.num_classes == 0:
            raise ValueError("this audio model is unconditional; sample without a class")
        if self.config.layout == "2d":
            return self._with_positions(x)
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] != self.config.n_mels:
            raise ValueError(f"this audio model needs [B, 1, {self.config.n_mels}, frames]; got {tuple(x.shape)}")
        return self._with_positions(x[:, 0])

    def _with_positions(self, x: torch.Tensor) -> torch.Tensor:
        """Append the position channels: over frames ([B, C, frames]), or frames and bins ([B, 1, bins, frames])."""
        k = self.config.pos_channels
        if k == 0:
            return x
        b, frames = x.shape[0], x.shape[-1]
        time = position_channels(frames, k, x.device).to(x.dtype)
        if x.ndim == 3:
            return torch.cat([x, time.expand(b, k, frames)], 1)
        bins = x.shape[-2]
        freq = position_channels(bins, k, x.device).to(x.dtype)
        return torch.cat([x, time[:, None, :].expand(b, k, bins, frames), freq[:, :, None].expand(b, k, bins, frames)], 1)


def build_denoiser(config: NetConfig = NetConfig()) -> Denoiser:
    """EDM-preconditioned denoiser around a fresh ``MelUNet``."""
    return Denoiser(MelUNet(config), parameterization="edm", sigma_data=config.sigma_data)


def label_cond(labels: torch.Tensor | list[int] | None, batch: int, num_classes: int) -> dict | None:
    """The ``cond`` dict for class ``labels`` (None -> the null label of a conditional model, or None if unconditional)."""
    if num_classes == 0:
        if labels is not None:
            raise ValueError("this audio model is unconditional; sample without a class")
        return None
    if labels is None:
        return {"label": torch.full((batch,), NULL_LABEL, dtype=torch.long)}
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if labels.numel() == 1:
        labels = labels.expand(batch)
    if labels.numel() != batch or (labels < NULL_LABEL).any() or (labels >= num_classes).any():
        raise ValueError(f"labels must be {batch} integers in 0..{num_classes - 1} (or {NULL_LABEL} for none); "
                         f"got {labels.tolist()}")
    return {"label": labels.clone()}
