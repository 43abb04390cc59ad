"""Embeddings of the noise level and of class labels, shared by the domains' networks."""
from __future__ import annotations

import math

import torch
from torch import nn


class NoiseEmbedding(nn.Module):
    """Random Fourier features of ``c_noise`` followed by a two-layer MLP (as in EDM / NCSN++)."""

    def __init__(self, dim: int, n_frequencies: int = 64, scale: float = 16.0, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", torch.randn(n_frequencies, generator=gen) * scale)
        self.mlp = nn.Sequential(nn.Linear(2 * n_frequencies, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        """Map ``c_noise`` of shape [B] to features [B, dim]."""
        angles = 2 * math.pi * c_noise.float()[:, None] * self.freqs[None, :]
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=-1))


class LabelEmbedding(nn.Module):
    """Class labels to vectors, with one extra "null" class (index ``num_classes``) for classifier-free guidance."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """Embed LongTensor labels [B]; the null class is ``num_classes``."""
        return self.table(labels)


def drop_labels(labels: torch.Tensor, p: float, num_classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label by the null class with probability ``p`` (label dropout for CFG training)."""
    if p <= 0:
        return labels
    keep = torch.rand(labels.shape, generator=generator, device="cpu").to(labels.device) >= p
    return torch.where(keep, labels, torch.full_like(labels, num_classes))
