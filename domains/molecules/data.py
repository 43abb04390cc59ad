"""Training data: conformers of QM9 (DFT geometries) or of the user's SDF files (``data.source``), each item one
conformer as a PyG ``MolData`` (graph + coordinates centred at the origin) collated into a ``Batch``; and the facts
fitted on the training molecules (``fit_data``, stored in the run's ``fitted`` section).

QM9 keeps its fixed split (``Index % 20``: 0 test, 1 validation) and vocabulary (H C N O F), so QM9 runs, the
shipped one included, are unchanged. A conformer set is split by molecule (``data.split``: random by hash of the
canonical SMILES, or scaffold; ``data.fractions``), its vocabulary and facts are those of its training molecules, and
validation or test molecules with an element outside that vocabulary are left out and counted on stderr.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from polydiff.plugins.domain import Batch

from .facts import QM9_FACTS, TrainingFacts, fit_facts
from .qm9 import QM9, load_qm9
from .sections import QM9_SOURCE

if TYPE_CHECKING:
    from rdkit import Chem

    from .pyg import MolData
    from .userdata import Ensemble



def qm9_subset(cfg: dict[str, Any]) -> QM9:
    """QM9 as the data config asks: ``max_rows`` (first rows of the CSVs) or ``subsample`` s (keep molecules with
    (Index // 20) % s == 0: every split residue kept, so the splits stay proportional)."""
    return load_qm9(max_rows=cfg.get("max_rows"), subsample=int(cfg.get("subsample", 1)))


def spread(n: int, limit: int | None) -> np.ndarray:
    """Positions of at most ``limit`` of ``n`` items, evenly spread and deterministic (all when no limit)."""
    if not limit or limit >= n:
        return np.arange(n)
    return np.linspace(0, n - 1, limit).round().astype(np.int64)


class ConformerDataset(torch.utils.data.Dataset):
    """One split of QM9: item m is the ``MolData`` of molecule m with its DFT coordinates centred at the origin."""

    def __init__(self, qm9: QM9, split: str, min_heavy: int = 0, limit: int | None = None) -> None:
        mols = qm9.split(split)
        if min_heavy:
            mols = mols[qm9.heavy_atom_counts()[mols] >= min_heavy]
        mols = mols[spread(len(mols), limit)]  # QM9 is ordered by size: spread over the split
        self.qm9, self.mols = qm9, mols
        if len(self.mols) == 0:
            raise ValueError(f"the {split} split of this QM9 subset is empty: use more rows (data.max_rows/subsample)")

    def __len__(self) -> int:
        return len(self.mols)

    def __getitem__(self, i: int) -> MolData:
        from .pyg import to_data

        m = int(self.mols[i])
        pos = self.qm9.positions(m).astype(np.float32)
        return to_data(self.qm9.graph(m), pos - pos.mean(0, keepdims=True))

    def references(self) -> list[Chem.Mol]:
        """The split's molecules with their DFT conformer, named ``qm9_<Index>``."""
        return [self.qm9.mol(int(m)) for m in self.mols]


class EnsembleDataset(torch.utils.data.Dataset):
    """One split of a conformer set: item i is one conformer of one molecule as ``MolData`` (coordinates centred),
    every conformer of every molecule once; atoms encoded with the training split's vocabulary."""

    def __init__(self, ensembles: list[Ensemble], facts: TrainingFacts, split: str) -> None:
        from .chem import featurize

        usable = [e for e in ensembles if not facts.vocabulary.unknown_elements(e.mol)]
        if len(usable) < len(ensembles):
            print(f"{split} split: left out {len(ensembles) - len(usable)} molecule(s) with elements outside the "
                  f"training vocabulary ({' '.join(facts.vocabulary.symbols)})", file=sys.stderr)
        if not usable:
            raise ValueError(f"the {split} split of this conformer set is empty: give more molecules or change "
                             "data.fractions")
        self.ensembles = usable
        self.graphs = [featurize(e.mol, facts.vocabulary) for e in usable]
        self.positions = [e.positions().astype(np.float32) for e in usable]
        self.index = [(m, c) for m, p in enumerate(self.positions) for c in range(len(p))]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> MolData:
        from .pyg import to_data

        m, c = self.index[i]
        pos = self.positions[m][c]
        return to_data(self.graphs[m], pos - pos.mean(0, keepdims=True))

    def references(self) -> list[Chem.Mol]:
        """The split's molecules, each with all its conformers (its ensemble)."""
        from rdkit import Chem

        return [Chem.Mol(e.mol) for e in self.ensembles]


def is_qm9(cfg: dict[str, Any]) -> bool:
    """Whether the data section names QM9 (else a path to SDF conformers)."""
    return cfg.get("source", QM9_SOURCE) == QM9_SOURCE


def split_set(cfg: dict[str, Any]) -> dict[str, list[Ensemble]]:
    """The molecules of the data section's conformer set by split."""
    from .splits import SPLITS, split_molecules
    from .userdata import read_set

    ensembles = read_set(cfg["source"]).ensembles
    names = split_molecules([e.key for e in ensembles], cfg.get("split", "random"),
                            cfg.get("fractions", (0.8, 0.1, 0.1)))
    return {s: [e for e, name in zip(ensembles, names) if name == s] for s in SPLITS}


def _selected(ensembles: list[Ensemble], cfg: dict[str, Any]) -> list[Ensemble]:
    """``min_heavy`` and ``limit`` of the data section applied to a split's molecules."""
    kept = [e for e in ensembles if e.mol.GetNumHeavyAtoms() >= int(cfg.get("min_heavy") or 0)]
    return [kept[i] for i in spread(len(kept), cfg.get("limit"))]


def set_facts(cfg: dict[str, Any]) -> TrainingFacts:
    """The facts of a conformer set's training molecules."""
    train = _selected(split_set(cfg)["train"], {**cfg, "limit": None})
    if not train:
        raise ValueError(f"no training molecules in {cfg['source']}: give more molecules or change data.fractions")
    return fit_facts(e.mol for e in train)


def qm9_facts(cfg: dict[str, Any]) -> TrainingFacts:
    """QM9's facts, the heavy-atom range raised to ``min_heavy``."""
    lo, hi = QM9_FACTS.heavy_atoms
    return TrainingFacts(QM9_FACTS.vocabulary, (max(lo, int(cfg.get("min_heavy") or 0)), hi), QM9_FACTS.rings)


def fit_data(cfg: dict[str, Any]) -> dict[str, Any]:
    """The run's ``fitted`` facts (JSON-ready): vocabulary, heavy-atom range and ring sizes of the training molecules,
    and for a conformer set what was read (molecules per split, conformers, records skipped)."""
    if is_qm9(cfg):
        return qm9_facts(cfg).as_dict()
    from .userdata import read_set

    splits = split_set(cfg)
    return {**set_facts(cfg).as_dict(), "data": {**read_set(cfg["source"]).summary(),
                                                  "split_molecules": {k: len(v) for k, v in splits.items()}}}


def build_dataset(cfg: dict[str, Any], split: str) -> ConformerDataset | EnsembleDataset:
    """The ``split`` (train, val or test) of the data section's source."""
    if is_qm9(cfg):
        return ConformerDataset(qm9_subset(cfg), split, int(cfg.get("min_heavy") or 0), cfg.get("limit"))
    return EnsembleDataset(_selected(split_set(cfg)[split], cfg), set_facts(cfg), split)


def collate_batch(items: list[MolData]) -> Batch:
    """``MolData`` items (with ``pos``) -> ``Batch(x0 [N, 3], cond=PyG batch, group=atom -> molecule)``."""
    from .graph import collate

    cond = collate(items)
    return Batch(cond.pos, cond, cond.batch)


def sigma_data(qm9: QM9) -> float:
    """Per-axis standard deviation of centred coordinates over a QM9 set (the EDM sigma_data)."""
    pos = qm9.arrays["pos"].astype(np.float64)
    off = qm9.arrays["atom_offsets"]
    counts = np.diff(off)
    means = np.add.reduceat(pos, off[:-1], axis=0) / counts[:, None]
    centred = pos - np.repeat(means, counts, axis=0)
    return float(np.sqrt((centred**2).mean()))
