"""A residual MLP denoiser network for 2D points, conditioned on the noise level and an optional class label."""
from __future__ import annotations

import torch
from torch import nn

from polydiff.core.control import add_hint
from polydiff.domains.common.embeddings import LabelEmbedding, NoiseEmbedding


class ToyMLP(nn.Module):
    """``F(x_in [B, 2], c_noise [B], cond)``; ``cond`` is None or a LongTensor of labels (null class = num_classes).

    Controllable (``polydiff.core.control``): its features are the hidden states [B, width] after the input layer and
    after each block; ``forward(..., residuals)`` adds residual i to hidden state i.
    """

    feature_axis = -1

    def __init__(self, dim: int = 2, width: int = 256, depth: int = 4, num_classes: int = 0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.noise_emb = NoiseEmbedding(width)
        self.label_emb = LabelEmbedding(num_classes, width) if num_classes else None
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, width)) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, dim))

    def _embedding(self, x: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        emb = self.noise_emb(c_noise)
        if self.label_emb is not None:
            labels = cond if cond is not None else torch.full((x.shape[0],), self.num_classes, device=x.device)
            emb = emb + self.label_emb(labels.long())
        return emb

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor | None = None,
                residuals: list[torch.Tensor] | None = None) -> torch.Tensor:
        emb = self._embedding(x, c_noise, cond)
        h = self.inp(x)
        if residuals is not None:
            h = h + residuals[0]
        for i, block in enumerate(self.blocks):
            h = h + block(h + emb)
            if residuals is not None:
                h = h + residuals[i + 1]
        return self.out(h)

    def feature_channels(self) -> list[int]:
        """Channels of each residual feature (the control protocol)."""
        return [self.inp.out_features] * (len(self.blocks) + 1)

    def features(self, x: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor | None = None,
                 hint: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The hidden states after the input layer (plus ``hint``) and after each block (the control protocol)."""
        emb = self._embedding(x, c_noise, cond)
        h = add_hint(self.inp(x), hint, self.feature_axis)
        out = [h]
        for block in self.blocks:
            h = h + block(h + emb)
            out.append(h)
        return out
