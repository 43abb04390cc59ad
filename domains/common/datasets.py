"""A labelled tensor data set and its collate, shared by the domains whose examples are fixed-size tensors."""
from __future__ import annotations

import torch

from polydiff.plugins.domain import Batch

Tensor = torch.Tensor


class LabelledTensors(torch.utils.data.Dataset):
    """Examples ``x`` [N, ...] with integer labels [N] (-1 = none) and whether the model is class-conditional."""

    def __init__(self, x: Tensor, labels: Tensor, conditional: bool) -> None:
        if len(x) != len(labels):
            raise ValueError(f"{len(x)} examples but {len(labels)} labels")
        self.x, self.labels, self.conditional = x, labels.long(), conditional

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, bool]:
        return self.x[i], self.labels[i], self.conditional


class SubsetRows(LabelledTensors):
    """Labelled examples [N, R, ...] of which each access returns ``k`` of the R rows, a fresh random subset each time.

    For sets of points (or atoms, frames): every epoch sees new samples of the same shapes, and a training step costs
    k / R of the full one. Draws use torch's global generator, which training checkpoints, so resumes stay exact.
    """

    def __init__(self, x: Tensor, labels: Tensor, conditional: bool, k: int) -> None:
        super().__init__(x, labels, conditional)
        if not 0 < k <= x.shape[1]:
            raise ValueError(f"cannot draw {k} of the {x.shape[1]} rows of each example; use 1..{x.shape[1]}")
        self.k = k

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, bool]:
        rows = torch.randperm(self.x.shape[1])[:self.k]
        return self.x[i][rows], self.labels[i], self.conditional


def collate_labelled(items: list[tuple[Tensor, Tensor, bool]]) -> Batch:
    """Stack examples into x0 [B, ...]; the condition is ``{"label": [B]}`` for a conditional model, else None."""
    x0 = torch.stack([x for x, _, _ in items])
    if not items[0][2]:
        return Batch(x0)
    return Batch(x0, {"label": torch.stack([lab for _, lab, _ in items])})


def subset_rows(batch: Batch, k: int, generator: torch.Generator | None = None) -> Batch:
    """``k`` random rows of each example of ``batch`` (x0 [B, R, ...]), a separate draw per example, as ``SubsetRows``
    gives them in training; the condition is kept. All R rows when k >= R."""
    x0 = batch.x0
    if k >= x0.shape[1]:
        return batch
    keys = torch.rand(x0.shape[:2], generator=generator, device=x0.device)
    rows = keys.argsort(dim=1)[:, :k]
    return Batch(x0[torch.arange(len(x0), device=x0.device)[:, None], rows], batch.cond, batch.group)
