"""The atom vocabulary of a run: the elements and formal charges its network embeds, fitted on the training data.

QM9 runs use ``QM9`` (H C N O F, charges -1 0 1), the vocabulary the shipped checkpoint was trained with, so its
embedding tables keep their shapes. A run trained on the user's conformers stores its own in the run's ``fitted``
facts (``facts.TrainingFacts``). Elements are looked up exactly (an unknown one is a ``MoleculeError``); a charge
takes the index of the nearest charge in the vocabulary, which for ``QM9`` is the clip to -1..1 that QM9 runs have
always used (out-of-vocabulary charges are refused before featurization by the out-of-distribution guard).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rdkit import Chem

OTHER_FEATURE_SIZES: tuple[int, ...] = (2, 5, 6, 5, 2, 2, 2, 2)
"""Sizes of the atom-feature columns after element and charge: aromatic, hybridization, degree, H count, rings."""


def symbol(z: int) -> str:
    """The element symbol of atomic number ``z``."""
    from rdkit import Chem

    return Chem.GetPeriodicTable().GetElementSymbol(int(z))


def atomic_number(name: str | int) -> int:
    """The atomic number of an element symbol (or of a number given as such); ValueError for an unknown symbol."""
    if isinstance(name, int):
        return name
    from rdkit import Chem

    try:
        return int(Chem.GetPeriodicTable().GetAtomicNumber(str(name)))
    except RuntimeError:
        raise ValueError(f"unknown element symbol {name!r}") from None


@dataclass(frozen=True)
class Vocabulary:
    """Elements (atomic numbers, in embedding order) and formal charges (ascending) a network embeds."""

    elements: tuple[int, ...]
    charges: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.elements or not self.charges:
            raise ValueError("a vocabulary needs at least one element and one charge")
        if len(set(self.elements)) != len(self.elements) or list(self.charges) != sorted(set(self.charges)):
            raise ValueError("vocabulary elements must be unique and charges unique and ascending")

    @property
    def symbols(self) -> list[str]:
        """Element symbols in embedding order."""
        return [symbol(z) for z in self.elements]

    def sizes(self) -> tuple[int, ...]:
        """Sizes of every categorical atom-feature column (``chem.atom_features``), for the network's embeddings."""
        return (len(self.elements), len(self.charges), *OTHER_FEATURE_SIZES)

    def element_index(self, z: int) -> int:
        """Embedding row of atomic number ``z``; KeyError when the vocabulary lacks it."""
        try:
            return self.elements.index(int(z))
        except ValueError:
            raise KeyError(symbol(z)) from None

    def charge_index(self, charge: int) -> int:
        """Embedding row of a formal charge: the nearest charge of the vocabulary (ties to the lower one)."""
        return min(range(len(self.charges)), key=lambda i: (abs(self.charges[i] - int(charge)), i))

    def unknown_elements(self, mol: Chem.Mol) -> list[str]:
        """Symbols of the molecule's elements outside the vocabulary, sorted."""
        return sorted({a.GetSymbol() for a in mol.GetAtoms() if a.GetAtomicNum() not in self.elements})

    def unknown_charges(self, mol: Chem.Mol) -> list[int]:
        """The molecule's formal charges outside the vocabulary, sorted."""
        return sorted({a.GetFormalCharge() for a in mol.GetAtoms() if a.GetFormalCharge() not in self.charges})

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the run's fitted facts: element symbols and charges."""
        return {"elements": self.symbols, "charges": list(self.charges)}

    @classmethod
    def from_dict(cls, facts: dict[str, Any]) -> "Vocabulary":
        """The vocabulary stored by ``as_dict`` (or in a run's fitted facts)."""
        return cls(tuple(atomic_number(e) for e in facts["elements"]), tuple(int(c) for c in facts["charges"]))


QM9 = Vocabulary((1, 6, 7, 8, 9), (-1, 0, 1))


def fit_vocabulary(mols: Iterable[Chem.Mol]) -> Vocabulary:
    """The vocabulary of a set of molecules: its elements by atomic number and its charges, both ascending (charge 0
    always included)."""
    elements: set[int] = set()
    charges: set[int] = {0}
    for mol in mols:
        for a in mol.GetAtoms():
            elements.add(a.GetAtomicNum())
            charges.add(a.GetFormalCharge())
    if not elements:
        raise ValueError("no atoms to fit a vocabulary on")
    return Vocabulary(tuple(sorted(elements)), tuple(sorted(charges)))
