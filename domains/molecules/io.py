"""Molecule input and output: SMILES strings, ``.smi`` files ("SMILES name" lines), SDF input (coordinates ignored),
SDF references for evaluation (3D coordinates required) and ``DIR/<name>.sdf`` with K conformers.

Every input molecule becomes a ``MolInput``; an unusable one carries a one-line ``error`` and the others go on.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rdkit import Chem

from .chem import MoleculeError, check_supported, parse_smiles


@dataclass
class MolInput:
    """One input molecule: its name, the RDKit molecule with explicit Hs (None if unusable) and the reason if so."""

    name: str
    mol: Chem.Mol | None
    error: str | None = None


def _safe_name(name: str, fallback: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip()).strip("._")
    return cleaned or fallback


def from_smiles(smiles: str, name: str | None = None) -> MolInput:
    """A ``MolInput`` from a SMILES string (stereo tags respected, hydrogens added)."""
    label = _safe_name(name or "", "") or _safe_name(smiles, "mol")
    try:
        mol = parse_smiles(smiles)
        check_supported(mol)
    except MoleculeError as exc:
        return MolInput(label, None, str(exc))
    mol.SetProp("_Name", label)
    return MolInput(label, mol)


def read_smi(path: Path | str) -> list[MolInput]:
    """Molecules of a ``.smi`` file: one "SMILES [name]" per line; blank lines and lines starting with # skipped."""
    path = Path(path)
    out = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(None, 1)
        name = parts[1].strip() if len(parts) > 1 else f"{path.stem}_{lineno}"
        item = from_smiles(parts[0], name)
        if item.error:
            item.error = f"{path.name}:{lineno}: {item.error}"
        out.append(item)
    return out


def _mol_from_block(mol: Chem.Mol | None, name: str) -> MolInput:
    if mol is None:
        return MolInput(name, None, "unreadable SDF record: RDKit could not parse it")
    mol = Chem.AddHs(mol, addCoords=True)
    try:
        check_supported(mol)
    except MoleculeError as exc:
        return MolInput(name, None, str(exc))
    mol.SetProp("_Name", name)
    return MolInput(name, mol)


def has_3d(mol: Chem.Mol) -> bool:
    """True if the molecule has a conformer with non-zero, non-planar coordinates."""
    if mol.GetNumConformers() == 0:
        return False
    conf = mol.GetConformer()
    pos = conf.GetPositions()
    return bool(np.abs(pos).max() > 1e-6 and (conf.Is3D() or np.ptp(pos[:, 2]) > 1e-6))


def read_sdf(path: Path | str, need_3d: bool = False) -> list[MolInput]:
    """Molecules of an SDF file; coordinates are dropped unless ``need_3d`` (evaluation references), which then
    requires real 3D coordinates in each record."""
    path = Path(path)
    out = []
    for i, mol in enumerate(Chem.SDMolSupplier(str(path), removeHs=False, sanitize=True)):
        raw = mol.GetProp("_Name") if mol is not None and mol.HasProp("_Name") else ""
        name = _safe_name(raw, f"{path.stem}_{i + 1}")
        item = _mol_from_block(mol, name)
        if item.mol is not None:
            if need_3d and not has_3d(mol):
                item = MolInput(name, None, "SDF record has no 3D coordinates: a reference needs a 3D geometry")
            elif not need_3d:
                item.mol.RemoveAllConformers()
        if item.error:
            item.error = f"{path.name} record {i + 1}: {item.error}"
        out.append(item)
    return out


SMI_SUFFIXES = (".smi", ".smiles", ".txt")
SDF_SUFFIXES = (".sdf", ".mol")


def read_file(path: Path | str) -> list[MolInput]:
    """Molecules from one ``.smi`` or ``.sdf`` file; a missing file or an unknown type is one error entry."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in SMI_SUFFIXES + SDF_SUFFIXES:
        return [MolInput(_safe_name(p.stem, "input"), None,
                         f"{path}: unknown file type; give a .smi file ('SMILES name' lines) or an .sdf file")]
    if not p.is_file():
        return [MolInput(_safe_name(p.stem, "input"), None, f"file {path} does not exist")]
    return read_smi(p) if suffix in SMI_SUFFIXES else read_sdf(p)


def read_inputs(sources: Sequence[str] = (), *, smiles: Sequence[str] = (),
                files: Sequence[str | Path] = ()) -> list[MolInput]:
    """Molecules from ``sources`` (each a SMILES string, a ``.smi`` or an ``.sdf`` file, told apart by suffix), then
    ``smiles`` (always SMILES) and ``files`` (always files), in order, with unique names."""
    out: list[MolInput] = []
    for src in sources:
        p = Path(src)
        is_file = p.suffix.lower() in SMI_SUFFIXES + SDF_SUFFIXES and (p.is_file() or p.suffix.lower() != ".txt")
        out.extend(read_file(p) if is_file else [from_smiles(src)])
    out.extend(from_smiles(s) for s in smiles)
    for f in files:
        out.extend(read_file(f))
    names: dict[str, int] = {}
    for item in out:  # unique names, so that files do not overwrite each other
        if item.name in names:
            names[item.name] += 1
            item.name = f"{item.name}_{names[item.name]}"
        else:
            names[item.name] = 1
    return out


def with_conformers(mol: Chem.Mol, positions: np.ndarray) -> Chem.Mol:
    """A copy of ``mol`` with conformers from ``positions`` [K, N, 3] (Angstrom) and stereo tags left as given."""
    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    for k, pos in enumerate(np.asarray(positions, dtype=float)):
        if pos.shape != (mol.GetNumAtoms(), 3):
            raise ValueError(f"conformer {k} has shape {pos.shape}, expected ({mol.GetNumAtoms()}, 3)")
        conf = Chem.Conformer(mol.GetNumAtoms())
        for i, p in enumerate(pos):
            conf.SetAtomPosition(i, p.tolist())
        conf.Set3D(True)
        out.AddConformer(conf, assignId=True)
    return out


def write_sdf(mol: Chem.Mol, path: Path | str, name: str | None = None) -> Path:
    """Write all conformers of ``mol`` (hydrogens included) to one SDF file, one record per conformer."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    label = name or (mol.GetProp("_Name") if mol.HasProp("_Name") else path.stem)
    with Chem.SDWriter(str(path)) as writer:
        for conf in mol.GetConformers():
            m = Chem.Mol(mol)
            m.SetProp("_Name", f"{label}_conf{conf.GetId()}")
            writer.write(m, confId=conf.GetId())
    return path
