"""A vocoder run's examples: random aligned segments of the clips' waveforms and their normalised log-mels.

Frame i of a clip's log-mel is centred on sample i * hop, so frames [f, f + k) go with samples [f * hop, (f + k) * hop)
and the alignment inside a segment is the same as in a whole clip. Segments are drawn with torch's global generator,
which training checkpoints, so a resumed run draws the same ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from polydiff.domains.common.datasets import collate_labelled
from polydiff.plugins.domain import Batch


@dataclass
class Segment:
    """One example: waveform [1, frames * hop] and normalised log-mel [n_mels, frames]."""

    wave: torch.Tensor
    mel: torch.Tensor


class Segments(torch.utils.data.Dataset):
    """Clips [N, samples] with their normalised log-mels [N, n_mels, frames]; item i is a random ``frames``-long
    segment of clip i (the whole clip, padded to frames * hop samples, when ``frames`` is 0 or covers it)."""

    def __init__(self, waves: torch.Tensor, mels: torch.Tensor, hop: int, frames: int) -> None:
        if len(waves) != len(mels):
            raise ValueError(f"{len(waves)} clips but {len(mels)} mels")
        self.hop = hop
        self.frames = mels.shape[-1] if frames <= 0 else min(frames, mels.shape[-1])
        total = mels.shape[-1] * hop
        self.waves = torch.nn.functional.pad(waves, (0, max(0, total - waves.shape[-1])))[:, :total]
        self.mels = mels

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, i: int) -> Segment:
        start = int(torch.randint(self.mels.shape[-1] - self.frames + 1, ()))
        wave = self.waves[i, start * self.hop:(start + self.frames) * self.hop]
        return Segment(wave[None], self.mels[i, :, start:start + self.frames])


def collate(items: list) -> Batch:
    """The audio domain's collate: vocoder segments -> x0 waveforms [B, 1, T] with ``{"mel": [B, n_mels, k]}``;
    anything else is a labelled mel (``collate_labelled``)."""
    if items and isinstance(items[0], Segment):
        return Batch(torch.stack([s.wave for s in items]), {"mel": torch.stack([s.mel for s in items])})
    return collate_labelled(items)
