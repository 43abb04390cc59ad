"""Latent diffusion of the audio domain (AudioLDM-style, issue 20): a KL autoencoder of the normalised log-mel and
the mel U-Net over its latent.

- The autoencoder (``Domain.autoencoder``) is the core's generic 2D ``ConvAutoencoder`` over the log-mel seen as a
  one-channel picture [1, n_mels, frames], with the audio sizes declared here (``AUTOENCODER``, overridable in the
  autoencoder config's ``args``; the latent channels are the section's ``latent_channels``): two stride-2 levels
  shrink both axes 4x, so 64 bands x 64 frames become 4 channels x 16 x 16, a latent 4x smaller than the mel.
- The latent network (``Domain.latent_network``) is the audio ``MelUNet`` in its ``1d`` layout, sized by the run's
  ``network`` section like the mel model: the latent's channels x bands (4 x 16 = 64) are the U-Net's channels over
  its 16 latent frames, class-conditional on the digit with the same classifier-free-guidance dropout. So the latent
  model is the mel model's network on a sequence 4x shorter.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from polydiff.core.autoencoders import ConvAutoencoder

from .model import unet_config
from .network import MelUNet, NetConfig

AUTOENCODER: dict[str, Any] = {"base": 16, "mults": [1, 2, 4]}
"""The audio autoencoder's sizes: base channels at the mel's resolution and their multipliers per level (2 ** (levels
- 1) = 4x smaller per axis)."""


def build_autoencoder(cfg: dict[str, Any]) -> ConvAutoencoder:
    """The mel autoencoder of an autoencoder run config: ``ConvAutoencoder`` over [1, n_mels, frames] with
    ``autoencoder.latent_channels`` latent channels and ``AUTOENCODER`` sizes under ``autoencoder.args``."""
    a = cfg["autoencoder"]
    unknown = sorted(set(a.get("args", {})) - set(AUTOENCODER))
    if unknown:
        raise ValueError(f"[autoencoder] args of the audio autoencoder are {', '.join(AUTOENCODER)}, not {unknown[0]}")
    args = {**AUTOENCODER, **a.get("args", {})}
    return ConvAutoencoder(1, int(a["latent_channels"]), int(args["base"]), tuple(args["mults"]), dims=2)


class LatentMelUNet(nn.Module):
    """``F(z_in [B, C, H, W], c_noise, cond)``: a ``1d`` ``MelUNet`` whose channels are the latent's C x H bands over
    its W frames (``cond`` as the mel model's: None or ``{"label": LongTensor[B]}``)."""

    def __init__(self, shape: tuple[int, int, int], config: NetConfig) -> None:
        super().__init__()
        if len(shape) != 3:
            raise ValueError(f"the audio latent network needs latents [C, H, W]; got {list(shape)}")
        self.shape = tuple(int(s) for s in shape)
        channels, bands, _ = self.shape
        self.unet = MelUNet(dataclasses.replace(config, layout="1d", n_mels=channels * bands))

    def forward(self, z: torch.Tensor, c_noise: torch.Tensor, cond: dict | None = None) -> torch.Tensor:
        if tuple(z.shape[1:]) != self.shape:
            raise ValueError(f"this latent network takes latents {list(self.shape)}; got {list(z.shape[1:])}")
        b, c, h, w = z.shape
        return self.unet(z.reshape(b, 1, c * h, w), c_noise, cond).reshape(b, c, h, w)


def build_latent_network(cfg: dict[str, Any]) -> LatentMelUNet:
    """The denoiser network of a latent run config: its ``network`` section's U-Net over ``latent.shape``."""
    return LatentMelUNet(tuple(cfg["latent"]["shape"]), unet_config(cfg))
