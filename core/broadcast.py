"""One noise level per leading row of ``x``: the only shape rule of polydiff."""
from __future__ import annotations

import torch


def rows(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Broadcast ``sigma`` (a scalar, a 0-d tensor or shape [x.shape[0]]) against ``x`` of any rank.

    Rows are samples for batched data ([B, ...]) and atoms or points for ragged data ([N, ...]); this is
    what lets one sampler serve images, spectrograms, point clouds and molecules alike.
    """
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    return s.reshape(x.shape[0], *([1] * (x.ndim - 1)))


def per_row(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """``sigma`` as a vector of length x.shape[0] (the shape networks receive as c_noise)."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return s.expand(x.shape[0]) if s.ndim == 0 else s
