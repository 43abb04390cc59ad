"""Shape completion and upsampling as inpainting over points: known points stay fixed, the others are generated.

The network is permutation-equivariant, so where the known points sit in the cloud does not matter; they take the
first K slots. ``core.guidance.inpaint`` then replaces the denoiser's estimate on those slots by the known points.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from polydiff.core.guidance import inpaint
from polydiff.core.samplers import sample

Tensor = torch.Tensor


def known_and_mask(partial: Tensor, n_points: int) -> tuple[Tensor, Tensor]:
    """From partial clouds [B, K, 3] build (known [B, n_points, 3], mask [B, n_points, 1]) with the K known points first."""
    if partial.ndim == 2:
        partial = partial[None]
    if partial.ndim != 3 or partial.shape[-1] != 3:
        raise ValueError(f"partial clouds must have shape [B, K, 3] or [K, 3], got {tuple(partial.shape)}")
    b, k, _ = partial.shape
    if not 0 < k <= n_points:
        raise ValueError(f"a partial cloud of {k} points cannot be completed to {n_points} points (need 0 < K <= N)")
    known = torch.zeros(b, n_points, 3, dtype=partial.dtype, device=partial.device)
    known[:, :k] = partial
    mask = torch.zeros(b, n_points, 1, dtype=partial.dtype, device=partial.device)
    mask[:, :k] = 1
    return known, mask


def crop_half(cloud: np.ndarray, direction: np.ndarray | None = None, keep: float = 0.5) -> np.ndarray:
    """A partial view for completion tests: the fraction ``keep`` of the points furthest along ``direction``."""
    d = np.array([0.0, 0.0, 1.0]) if direction is None else np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    score = np.asarray(cloud) @ d
    k = max(1, int(round(keep * len(cloud))))
    return np.asarray(cloud)[np.argsort(-score)[:k]]


def complete(denoiser, partial: Tensor, n_points: int, sigmas: Tensor, method: str = "heun", *, cond: Any = None,
             generator: torch.Generator | None = None, **options) -> Tensor:
    """Complete partial clouds [B, K, 3] to [B, n_points, 3] (also upsampling: a sparse cloud is a partial one).

    The first K points of the result are the given points exactly; the others are sampled by ``method``.
    """
    known, mask = known_and_mask(partial, n_points)
    guided = inpaint(denoiser, known, mask)
    x = torch.randn(known.shape, generator=generator, dtype=known.dtype).to(known.device) * sigmas[0]
    return sample(guided, x, sigmas, method, cond=cond, generator=generator, **options)
