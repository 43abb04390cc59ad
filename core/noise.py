"""Noise for samplers and losses: ``noise(like, generator) -> Tensor`` shaped like ``like``.

A domain supplies its own when plain Gaussian noise is wrong for it (zero centre of mass for molecules, masks).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

Tensor = torch.Tensor
NoiseFn = Callable[[Tensor, "torch.Generator | None"], Tensor]


def gaussian(like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal noise shaped like ``like``, drawn from ``generator`` (on the generator's device)."""
    device = generator.device if generator is not None else like.device
    return torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def zero_mean(index: Tensor, n_groups: int | None = None) -> NoiseFn:
    """Gaussian noise with zero mean within each group of rows (``index[i]`` = group of row i), e.g. per molecule.

    The projection keeps the noise isotropic in the (n-1)-dimensional subspace of centred configurations.
    """

    def noise(like: Tensor, generator: torch.Generator | None = None) -> Tensor:
        z = gaussian(like, generator)
        groups = int(index.max()) + 1 if n_groups is None else n_groups
        flat = z.reshape(z.shape[0], -1)
        sums = torch.zeros(groups, flat.shape[1], dtype=z.dtype, device=z.device).index_add_(0, index, flat)
        counts = torch.bincount(index, minlength=groups).clamp(min=1).to(z.dtype)[:, None]
        return (flat - (sums / counts)[index]).reshape(z.shape)

    return noise
