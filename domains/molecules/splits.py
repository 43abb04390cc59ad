"""Splitting molecules (never conformers) into train / val / test: by a hash of the canonical SMILES, or by Bemis-Murcko
scaffold (molecules sharing a scaffold stay in one split, the harder test of generalization)."""
from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence

SPLITS = ("train", "val", "test")
METHODS = ("random", "scaffold")


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """(train, val, test) fractions: three non-negative numbers summing to 1 with train > 0; ValueError otherwise."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6 or fractions[0] <= 0:
        raise ValueError(f"fractions must be three numbers >= 0 (train, val, test) summing to 1 with train > 0, "
                         f"got {list(fractions)}")
    return float(fractions[0]), float(fractions[1]), float(fractions[2])


SALT = "polydiff-split:"
"""Prefixed to the key before hashing, so a split is independent of a selection made by the plain SHA-1 of the SMILES
(as ``benchmarks/molecules_druglike.py`` picks its molecules: unsalted, they all fell into train)."""


def _unit(key: str) -> float:
    """A number in [0, 1) fixed by ``key`` (salted SHA-1), the same on every machine and Python version."""
    return int.from_bytes(hashlib.sha1((SALT + key).encode()).digest()[:8], "big") / 2**64


def hash_split(smiles: Sequence[str], fractions: Sequence[float]) -> list[str]:
    """The split of each molecule from a hash of its canonical SMILES: stable when molecules are added or removed."""
    train, val, _ = check_fractions(fractions)
    out = []
    for s in smiles:
        u = _unit(s)
        out.append("train" if u < train else "val" if u < train + val else "test")
    return out


def scaffold(smiles: str) -> str:
    """The Bemis-Murcko scaffold SMILES of a molecule ("" for an acyclic one)."""
    from rdkit.Chem.Scaffolds import MurckoScaffold

    return MurckoScaffold.MurckoScaffoldSmiles(smiles=smiles, includeChirality=False)


def scaffold_split(smiles: Sequence[str], fractions: Sequence[float]) -> list[str]:
    """The split of each molecule by scaffold, as DeepChem and chemprop do it: scaffold sets from largest to smallest
    (ties by scaffold SMILES) fill train up to its fraction, then val, then test."""
    train, val, _ = check_fractions(fractions)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(smiles):
        groups[scaffold(s)].append(i)
    n = len(smiles)
    out = ["train"] * n
    counts = {"train": 0, "val": 0}
    for key in sorted(groups, key=lambda k: (-len(groups[k]), k)):
        members = groups[key]
        if counts["train"] + len(members) <= train * n or counts["train"] == 0:
            name = "train"
        elif counts["val"] + len(members) <= val * n:
            name = "val"
        else:
            name = "test"
        if name in counts:
            counts[name] += len(members)
        for i in members:
            out[i] = name
    return out


def split_molecules(smiles: Sequence[str], method: str, fractions: Sequence[float]) -> list[str]:
    """The split (train, val or test) of each molecule by ``method`` (random or scaffold)."""
    if method == "random":
        return hash_split(smiles, fractions)
    if method == "scaffold":
        return scaffold_split(smiles, fractions)
    raise ValueError(f"unknown split {method!r}; use one of {', '.join(METHODS)}")
