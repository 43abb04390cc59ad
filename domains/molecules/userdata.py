"""The user's own 3D conformers (``train --data FILE.sdf|DIR``): read, grouped into ensembles, split by molecule.

An SDF file, or every ``*.sdf`` file of a folder (sorted by name), is read record by record (``io.read_sdf_groups``):
records sharing a name (a ``_confN`` suffix stripped) or, unnamed, a canonical SMILES are conformers of one molecule,
its ensemble. Each molecule gets explicit hydrogens (placed geometrically on every conformer when the file lacks
them) and stereo tags from its first conformer's 3D geometry. Bad records (unreadable, not 3D, atoms differing from
their molecule's first record) and unusable molecules (radicals, no heavy atoms) are skipped, counted and named by
file and record; one line per file goes to stderr. Molecules are split with ``splits.split_molecules`` on their
canonical SMILES without stereo, so stereoisomers share a split. A parsed set is kept for the process (keyed by the
files' paths, sizes and modification times), so fitting facts and building splits read the files once.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .io import MolInput

if TYPE_CHECKING:
    from rdkit import Chem

SDF_GLOB = "*.sdf"


@dataclass
class Ensemble:
    """One molecule of a conformer set: its name, split key (canonical SMILES without stereo), the molecule with
    explicit hydrogens and all its conformers, and where it came from (file and first record)."""

    name: str
    key: str
    mol: Chem.Mol
    source: str

    def positions(self) -> np.ndarray:
        """Coordinates [K, N, 3] of its conformers (Angstrom)."""
        return np.stack([c.GetPositions() for c in self.mol.GetConformers()])


@dataclass
class ConformerSet:
    """The usable molecules of the files, the records read, and one line per skipped record or molecule."""

    ensembles: list[Ensemble]
    records: int
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Counts for the run's fitted facts: molecules, conformers, records read and skipped (first few named)."""
        return {"molecules": len(self.ensembles), "conformers": sum(e.mol.GetNumConformers() for e in self.ensembles),
                "records": self.records, "skipped": len(self.skipped), "skipped_first": self.skipped[:5]}


def sdf_files(source: str | Path) -> list[Path]:
    """The SDF files of ``source`` (a file, or a folder's ``*.sdf`` sorted); ValueError saying what is accepted."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".sdf":
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.glob(SDF_GLOB) if p.is_file())
        if files:
            return files
        raise ValueError(f"folder {path} holds no .sdf files")
    raise ValueError(f"{source} is neither qm9, an .sdf file nor a folder of .sdf files")


def _prepared(item: MolInput) -> Ensemble | str:
    """The ensemble of one grouped item, or why it is unusable."""
    from rdkit import Chem

    from .chem import MoleculeError, check_supported

    mol = item.mol
    source = mol.GetProp("_source") if mol.HasProp("_source") else item.name
    try:
        mol = Chem.AddHs(mol, addCoords=True)
        check_supported(mol, None)
        Chem.AssignStereochemistryFrom3D(mol, confId=mol.GetConformers()[0].GetId())
        key = Chem.MolToSmiles(Chem.RemoveHs(mol), isomericSmiles=False)
    except MoleculeError as exc:
        return f"{source}: {exc}"
    except Exception as exc:  # an RDKit failure on one molecule skips it, not the set
        return f"{source}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    mol.SetProp("_Name", item.name)
    return Ensemble(item.name, key, mol, source)


def _read_file(path: Path) -> ConformerSet:
    """The usable ensembles and skipped lines of one SDF file."""
    from .io import count_records, read_sdf_groups

    ensembles, skipped = [], []
    for item in read_sdf_groups(path):
        result = item.error if item.mol is None else _prepared(item)
        if isinstance(result, Ensemble):
            ensembles.append(result)
        else:
            skipped.append(result)
    records = count_records(path)
    if skipped:
        print(f"{path.name}: skipped {len(skipped)} of {records} records or molecules; first: {skipped[0]}",
              file=sys.stderr)
    return ConformerSet(ensembles, records, skipped)


@lru_cache(maxsize=4)
def _read_cached(signature: tuple[tuple[str, int, int], ...]) -> ConformerSet:
    parts = [_read_file(Path(name)) for name, _, _ in signature]
    out = ConformerSet([e for p in parts for e in p.ensembles], sum(p.records for p in parts),
                       [s for p in parts for s in p.skipped])
    if not out.ensembles:
        raise ValueError(f"no usable molecule with 3D conformers in {', '.join(n for n, _, _ in signature)}")
    return out


def read_set(source: str | Path) -> ConformerSet:
    """The conformer set of an SDF file or folder (parsed once per process while the files are unchanged)."""
    files = sdf_files(source)
    return _read_cached(tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
