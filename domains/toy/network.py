"""A residual MLP denoiser network for 2D points, conditioned on the noise level and an optional class label."""
from __future__ import annotations

import torch
from torch import nn

from polydiff.domains.common.embeddings import LabelEmbedding, NoiseEmbedding


class ToyMLP(nn.Module):
    """``F(x_in [B, 2], c_noise [B], cond)``; ``cond`` is None or a LongTensor of labels (null class = num_classes)."""

    def __init__(self, dim: int = 2, width: int = 256, depth: int = 4, num_classes: int = 0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.noise_emb = NoiseEmbedding(width)
        self.label_emb = LabelEmbedding(num_classes, width) if num_classes else None
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, width)) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.noise_emb(c_noise)
        if self.label_emb is not None:
            labels = cond if cond is not None else torch.full((x.shape[0],), self.num_classes, device=x.device)
            emb = emb + self.label_emb(labels.long())
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h + emb)
        return self.out(h)
