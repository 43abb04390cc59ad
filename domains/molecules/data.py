"""Training data: QM9 molecules as (conditioning graph, centred DFT coordinates) and the collate into a ``Batch``."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from polydiff.plugins.domain import Batch

from .chem import MolGraph
from .graph import collate
from .qm9 import QM9, load_qm9


def qm9_subset(cfg: dict[str, Any]) -> QM9:
    """QM9 as the data config asks: ``max_rows`` (first rows of the CSVs) or ``subsample`` s (keep molecules with
    (Index // 20) % s == 0: every split residue kept, so the splits stay proportional)."""
    return load_qm9(max_rows=cfg.get("max_rows"), subsample=int(cfg.get("subsample", 1)))


class ConformerDataset(torch.utils.data.Dataset):
    """One split of QM9: item m is (graph, coordinates [N, 3] centred at the origin, float32)."""

    def __init__(self, qm9: QM9, split: str, min_heavy: int = 0, limit: int | None = None) -> None:
        mols = qm9.split(split)
        if min_heavy:
            mols = mols[qm9.heavy_atom_counts()[mols] >= min_heavy]
        if limit and limit < len(mols):  # evenly spread over the split (QM9 is ordered by size), deterministic
            mols = mols[np.linspace(0, len(mols) - 1, limit).round().astype(np.int64)]
        self.qm9, self.mols = qm9, mols
        if len(self.mols) == 0:
            raise ValueError(f"the {split} split of this QM9 subset is empty: use more rows (data.max_rows/subsample)")

    def __len__(self) -> int:
        return len(self.mols)

    def __getitem__(self, i: int) -> tuple[MolGraph, np.ndarray]:
        m = int(self.mols[i])
        pos = self.qm9.positions(m).astype(np.float32)
        return self.qm9.graph(m), pos - pos.mean(0, keepdims=True)


def collate_batch(items: list[tuple[MolGraph, np.ndarray]]) -> Batch:
    """(graph, coordinates) items -> ``Batch(x0 [N, 3], cond=graph batch dict, group=atom -> molecule)``."""
    cond = collate([g for g, _ in items])
    x0 = torch.as_tensor(np.concatenate([p for _, p in items]), dtype=torch.float32)
    return Batch(x0, cond, cond["batch"])


def sigma_data(qm9: QM9) -> float:
    """Per-axis standard deviation of centred coordinates over a QM9 set (the EDM sigma_data)."""
    pos = qm9.arrays["pos"].astype(np.float64)
    off = qm9.arrays["atom_offsets"]
    counts = np.diff(off)
    means = np.add.reduceat(pos, off[:-1], axis=0) / counts[:, None]
    centred = pos - np.repeat(means, counts, axis=0)
    return float(np.sqrt((centred**2).mean()))
