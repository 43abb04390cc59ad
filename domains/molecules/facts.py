"""What a run was trained on, and the out-of-distribution guard that compares an input molecule with it.

A run's ``fitted`` facts (``config.json``) record its vocabulary (elements, formal charges), the range of heavy-atom
counts and the ring sizes (smallest set of smallest rings) of its training molecules. QM9 runs, including the shipped
one whose config predates fitted facts, have ``QM9_FACTS``: H C N O F, charges -1 0 1, 1-9 heavy atoms, rings of 3-9.

The guard's rule, per input molecule:

- *refused* (one line naming the molecule and the reason; the other molecules go on): an element or a formal charge
  outside the vocabulary. The network has no embedding for it, so nothing it produced would mean anything.
- *sampled, then validated*: everything else. A molecule with more (or fewer) heavy atoms than any training molecule,
  or with a ring size never seen in training, is embedded by the network but lies outside what it learnt; it is
  sampled, named with its reasons on stderr and in ``samples.json`` (``out_of_distribution``), and its conformers
  go through the geometry checks that every sampled conformer goes through (``screening``).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .io import MolInput
from .vocab import QM9, Vocabulary, fit_vocabulary

if TYPE_CHECKING:
    from rdkit import Chem


def ring_sizes(mol: Chem.Mol) -> set[int]:
    """Sizes of the molecule's rings (RDKit's symmetrized smallest set of smallest rings)."""
    from rdkit import Chem

    return {len(r) for r in Chem.GetSymmSSSR(mol)}


@dataclass(frozen=True)
class TrainingFacts:
    """What a run's training molecules were made of: vocabulary, heavy-atom count range, ring sizes."""

    vocabulary: Vocabulary
    heavy_atoms: tuple[int, int]
    rings: tuple[int, ...]

    def refusal(self, mol: Chem.Mol) -> str | None:
        """Why the run cannot sample the molecule at all (element or charge outside its vocabulary), else None."""
        elements, charges = self.vocabulary.unknown_elements(mol), self.vocabulary.unknown_charges(mol)
        if elements:
            return (f"element(s) {', '.join(elements)} not supported: this run was trained on "
                    f"{' '.join(self.vocabulary.symbols)}")
        if charges:
            return (f"formal charge(s) {', '.join(f'{c:+d}' for c in charges)} not supported: this run was trained "
                    f"on charges {', '.join(f'{c:+d}' if c else '0' for c in self.vocabulary.charges)}")
        return None

    def outside(self, mol: Chem.Mol) -> list[str]:
        """How the molecule lies outside the training molecules (heavy-atom count, unseen ring sizes); [] if it
        does not."""
        out = []
        heavy, (lo, hi) = mol.GetNumHeavyAtoms(), self.heavy_atoms
        if not lo <= heavy <= hi:
            out.append(f"{heavy} heavy atoms (trained on {lo}-{hi})")
        unseen = sorted(ring_sizes(mol) - set(self.rings))
        if unseen:
            seen = ", ".join(map(str, self.rings)) or "none"
            out.append(f"ring size {', '.join(map(str, unseen))} (trained on {seen})")
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored in the run's ``fitted`` section."""
        return {**self.vocabulary.as_dict(), "heavy_atoms": list(self.heavy_atoms), "ring_sizes": list(self.rings)}

    @classmethod
    def from_dict(cls, facts: dict[str, Any]) -> "TrainingFacts":
        """The facts stored by ``as_dict`` (a run's ``fitted`` section)."""
        lo, hi = facts["heavy_atoms"]
        return cls(Vocabulary.from_dict(facts), (int(lo), int(hi)), tuple(int(r) for r in facts["ring_sizes"]))


QM9_FACTS = TrainingFacts(QM9, (1, 9), (3, 4, 5, 6, 7, 8, 9))


def fit_facts(mols: Iterable[Chem.Mol]) -> TrainingFacts:
    """The facts of a set of training molecules."""
    mols = list(mols)
    if not mols:
        raise ValueError("no training molecules to fit facts on")
    heavy = [m.GetNumHeavyAtoms() for m in mols]
    rings = set().union(*(ring_sizes(m) for m in mols))
    return TrainingFacts(fit_vocabulary(mols), (min(heavy), max(heavy)), tuple(sorted(rings)))


def run_facts(fitted: dict[str, Any]) -> TrainingFacts:
    """A run's facts from its ``fitted`` section (QM9's when the section holds none, as in runs from before)."""
    return TrainingFacts.from_dict(fitted) if fitted.get("elements") else QM9_FACTS


@dataclass
class Guarded:
    """Input molecules sorted by the guard: those to sample, those refused (name -> reason) and, among those sampled,
    the ones outside the training molecules (name -> reasons)."""

    usable: list[MolInput]
    refused: dict[str, str]
    outside: dict[str, list[str]]


def guard(items: Sequence[MolInput], facts: TrainingFacts) -> Guarded:
    """Apply the guard's rule (module docstring) to usable inputs (items with an ``error`` are left out)."""
    usable, refused, outside = [], {}, {}
    for item in items:
        if item.mol is None:
            continue
        why = facts.refusal(item.mol)
        if why is not None:
            refused[item.name] = why
            continue
        usable.append(item)
        reasons = facts.outside(item.mol)
        if reasons:
            outside[item.name] = reasons
    return Guarded(usable, refused, outside)
