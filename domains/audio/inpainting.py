"""Inpainting a time span of a clip: the (known, mask) pair over mel frames for ``polydiff.core.guidance.inpaint``."""
from __future__ import annotations

import math

import torch

from .features import MelConfig


def parse_span(text: str) -> tuple[float, float]:
    """Parse ``START:END`` in seconds (e.g. ``0.3:0.6``)."""
    try:
        start, end = (float(v) for v in text.split(":"))
    except ValueError:
        raise ValueError(f"--mask must be START:END in seconds, e.g. 0.3:0.6; got {text!r}") from None
    return start, end


def frame_span(start: float, end: float, config: MelConfig = MelConfig()) -> tuple[int, int]:
    """The mel frames [first, last) whose centres (frame i at i * hop / sr seconds) lie in [start, end)."""
    duration = config.clip_samples / config.sample_rate
    if not 0 <= start < end <= duration + 1e-9:
        raise ValueError(f"the time span must satisfy 0 <= start < end <= {duration:g} s; got {start:g}:{end:g}")
    per_second = config.sample_rate / config.hop
    first = math.ceil(start * per_second - 1e-9)
    last = min(config.frames, math.ceil(end * per_second - 1e-9))
    if last <= first:
        raise ValueError(f"the span {start:g}:{end:g} s covers no mel frame (a frame is {1 / per_second:.4f} s)")
    return first, last


def inpaint_mask(x_known: torch.Tensor, start: float, end: float, config: MelConfig = MelConfig()) -> tuple[torch.Tensor, torch.Tensor]:
    """(known, mask) for normalised log-mels [B, 1, n_mels, frames]: mask is 1 (keep) outside the span, 0 inside."""
    first, last = frame_span(start, end, config)
    mask = torch.ones_like(x_known)
    mask[..., first:last] = 0
    return x_known, mask
