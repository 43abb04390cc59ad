"""``ClipSet``: fixed-length 16 kHz clips with integer labels, their class names and who spoke them."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ClipSet:
    """Clips [N, samples] at 16 kHz, labels [N] (-1 = unlabelled), class names and a speaker/source name per clip."""

    waves: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    speakers: list[str]

    def __post_init__(self) -> None:
        if self.waves.ndim != 2 or self.labels.shape != (self.waves.shape[0],) or len(self.speakers) != len(self.labels):
            raise ValueError(f"ClipSet needs waves [N, T], labels [N] and N speakers; got {tuple(self.waves.shape)}, "
                             f"{tuple(self.labels.shape)}, {len(self.speakers)}")

    def __len__(self) -> int:
        return self.waves.shape[0]

    @property
    def num_classes(self) -> int:
        """Number of named classes (0 for an unlabelled set)."""
        return len(self.class_names)

    def subset(self, index: torch.Tensor | list[int]) -> "ClipSet":
        """The clips at ``index`` (a LongTensor or list of positions)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        return ClipSet(self.waves[idx], self.labels[idx], list(self.class_names), [self.speakers[i] for i in idx.tolist()])
