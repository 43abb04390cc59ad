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


NULL_LABEL = -1
"""A label meaning "no class" (classifier-free guidance); ``LabelEmbedding`` maps it, like ``num_classes``, to null."""


class LabelEmbedding(nn.Module):
    """Class labels to vectors, with one extra "null" class for classifier-free guidance.

    The null class is index ``num_classes``; any negative label (``NULL_LABEL``) means the same.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """Embed LongTensor labels [B]; the null class is ``num_classes`` or a negative label."""
        return self.table(torch.where(labels < 0, self.num_classes, labels))


def drop_labels(labels: torch.Tensor, p: float, null: int = NULL_LABEL,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label by the ``null`` label with probability ``p`` (label dropout for CFG training)."""
    if p <= 0:
        return labels
    device = generator.device if generator is not None else labels.device
    keep = torch.rand(labels.shape, generator=generator, device=device).to(labels.device) >= p
    return torch.where(keep, labels, torch.full_like(labels, null))


def drop_label_tensor(labels: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Label dropout on a condition that is the label tensor itself (a Domain's ``drop_cond``)."""
    return drop_labels(labels, p, NULL_LABEL, generator)


def null_labels(labels: torch.Tensor) -> torch.Tensor:
    """The null version of a condition that is the label tensor itself (a Domain's ``null_cond``)."""
    return torch.full_like(labels, NULL_LABEL)


def drop_label_cond(cond: dict | None, p: float, generator: torch.Generator | None = None) -> dict | None:
    """Label dropout on a ``{"label": ...}`` condition (a Domain's ``drop_cond`` for class-conditional models)."""
    if cond is None:
        return None
    return {**cond, "label": drop_labels(cond["label"], p, NULL_LABEL, generator)}


def null_label_cond(cond: dict | None) -> dict | None:
    """The unconditional version of a ``{"label": ...}`` condition (a Domain's ``null_cond``)."""
    if cond is None:
        return None
    return {**cond, "label": torch.full_like(cond["label"], NULL_LABEL)}
