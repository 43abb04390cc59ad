"""A small 1D residual network F(x_in, c_noise, cond) for traces: dilated convolutions over patches of samples.

The trace is cut into patches of ``patch`` samples (channels of a shorter sequence, as a 1D ViT does), which makes
every layer ``patch`` times cheaper. Residual blocks with dilations 1, 2, 4, ... see the whole trace and are
modulated by the noise level and class embedding (FiLM); one self-attention block with patch positions in their
middle relates every beat to every other, which keeps RR intervals regular. The class embedding has a null class for
classifier-free guidance.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from polydiff.domains.common.embeddings import NULL_LABEL, LabelEmbedding, NoiseEmbedding


def norm(channels: int) -> nn.GroupNorm:
    """Group normalisation with up to 8 groups."""
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    """Norm, SiLU, dilated conv; FiLM by the embedding; norm, SiLU, conv; added to the input."""

    def __init__(self, channels: int, emb_dim: int, dilation: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = norm(channels), norm(channels)
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * channels)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(emb)[:, :, None].chunk(2, dim=1)
        y = self.conv1(nn.functional.silu(self.norm1(h)))
        y = self.norm2(y) * (1 + scale) + shift
        return h + self.conv2(nn.functional.silu(y))


def positions(channels: int, length: int) -> torch.Tensor:
    """Sinusoidal position features [channels, length] (Vaswani et al. 2017)."""
    freqs = torch.exp(-math.log(1000.0) * torch.arange(channels // 2) / max(1, channels // 2))
    angles = torch.arange(length)[None, :] * freqs[:, None]
    return torch.cat([angles.sin(), angles.cos()], 0)


class AttentionBlock(nn.Module):
    """Self-attention over the patches with their positions, added to the input: every beat sees every other one
    and how far away it is, which is what a regular rhythm is made of."""

    def __init__(self, channels: int, heads: int = 4) -> None:
        super().__init__()
        self.norm = norm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        pos = positions(h.shape[1], h.shape[2]).to(h)
        y = (self.norm(h) + pos).transpose(1, 2)
        return h + self.attn(y, y, y, need_weights=False)[0].transpose(1, 2)


class ECGNet(nn.Module):
    """``F(x_in [B, L], c_noise [B], cond)``: ``cond`` is None or class labels [B] (``NULL_LABEL``: no class)."""

    def __init__(self, channels: int = 96, blocks: int = 6, emb_dim: int = 128, num_classes: int = 0,
                 patch: int = 8, attention: bool = True) -> None:
        super().__init__()
        self.patch = patch
        self.noise_emb = NoiseEmbedding(emb_dim)
        self.label_emb = LabelEmbedding(num_classes, emb_dim) if num_classes else None
        self.stem = nn.Conv1d(patch, channels, 3, padding=1)
        self.blocks = nn.ModuleList(ResBlock(channels, emb_dim, 2 ** (i % 5)) for i in range(blocks))
        if attention:
            self.blocks.insert(blocks // 2, AttentionBlock(channels))
        self.head = nn.Sequential(norm(channels), nn.SiLU(), nn.Conv1d(channels, patch, 3, padding=1))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        b, length = x.shape
        emb = self.noise_emb(c_noise)
        if self.label_emb is not None:
            labels = cond if cond is not None else torch.full((b,), NULL_LABEL, device=x.device)
            emb = emb + self.label_emb(labels.long())
        emb = nn.functional.silu(emb)
        h = self.stem(x.reshape(b, length // self.patch, self.patch).transpose(1, 2))
        for block in self.blocks:
            h = block(h, emb)
        return self.head(h).transpose(1, 2).reshape(b, length)
