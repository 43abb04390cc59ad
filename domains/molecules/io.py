"""Molecule input and output: SMILES strings, ``.smi`` files ("SMILES name" lines), SDF input (coordinates ignored),
SDF references for evaluation (3D coordinates required), SDF files of several conformers per molecule (grouped) and
``DIR/<name>.sdf`` with K conformers.

Every input molecule becomes a ``MolInput``; an unusable one carries a one-line ``error`` and the others go on. Files
are read as bytes and decoded per line (``.smi``) or per record (SDF), so one undecodable line or unreadable record
is skipped and named by file and line / record index, like an invalid SMILES. Elements are not checked here: a run
refuses those it was not trained on (``facts``). RDKit is imported inside the functions (``MolInput`` is imported at
CLI start-up).
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rdkit import Chem


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
    from .chem import MoleculeError, check_supported, parse_smiles

    label = _safe_name(name or "", "") or _safe_name(smiles, "mol")
    try:
        mol = parse_smiles(smiles)
        check_supported(mol, None)
    except MoleculeError as exc:
        return MolInput(label, None, str(exc))
    mol.SetProp("_Name", label)
    return MolInput(label, mol)


def _first_line(exc: BaseException) -> str:
    """``Type: message`` of an exception on one line, for an item's error."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _decode_line(raw: bytes) -> tuple[str | None, str | None]:
    """(text, None) for a UTF-8 line, else (None, why): which byte at which column could not be decoded."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, (f"line is not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                      "save the file as UTF-8")


def _smi_line(path: Path, lineno: int, raw: bytes) -> MolInput | None:
    """The ``MolInput`` of one raw ``.smi`` line (None for blank and # lines); never raises."""
    where, fallback = f"{path.name}:{lineno}", f"{path.stem}_{lineno}"
    line, why = _decode_line(raw)
    if line is None:
        return MolInput(fallback, None, f"{where}: {why}")
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    parts = line.split(None, 1)
    name = parts[1].strip() if len(parts) > 1 else fallback
    try:
        item = from_smiles(parts[0], name)
    except Exception as exc:  # RDKit can raise on odd input; this line fails, the batch goes on
        return MolInput(_safe_name(name, fallback), None, f"{where}: {_first_line(exc)}")
    if item.error:
        item.error = f"{where}: {item.error}"
    return item


def read_smi(path: Path | str) -> list[MolInput]:
    """Molecules of a ``.smi`` file: one "SMILES [name]" per line; blank lines and lines starting with # skipped.

    Each line is decoded on its own (UTF-8, a leading byte-order mark ignored): an undecodable line becomes an item
    named ``<stem>_<line>`` whose error gives file, line and byte, and the other lines go on.
    """
    path = Path(path)
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    items = (_smi_line(path, lineno, raw) for lineno, raw in enumerate(data.splitlines(), 1))
    return [item for item in items if item is not None]


def _split_records(data: bytes) -> list[bytes]:
    """The raw records of SDF bytes, each ending with its ``$$$$`` line (the last may lack it); blank tail dropped."""
    records, current = [], []
    for line in data.splitlines(keepends=True):
        current.append(line)
        if line.strip() == b"$$$$":
            records.append(b"".join(current))
            current = []
    if b"".join(current).strip():
        records.append(b"".join(current))
    return records


def _parse_record(text: str) -> tuple[Chem.Mol | None, str | None]:
    """(molecule with its SDF properties, None) for one SDF record, else (None, why RDKit rejects it)."""
    from rdkit import Chem

    supplier = Chem.SDMolSupplier()
    supplier.SetData(text, sanitize=True, removeHs=False)
    mol = supplier[0] if len(supplier) else None
    if mol is not None:
        return mol, None
    raw = Chem.MolFromMolBlock(text, sanitize=False, removeHs=False)
    if raw is None:
        return None, "unreadable SDF record: not a valid MDL mol block"
    try:
        Chem.SanitizeMol(raw)
    except Exception as exc:  # RDKit's sanitization errors name the atom and the valence
        return None, f"unreadable SDF record: {_first_line(exc)}"
    return None, "unreadable SDF record: RDKit could not parse it"


def count_records(path: Path | str) -> int:
    """The number of records of an SDF file (split on ``$$$$`` lines, nothing parsed)."""
    return len(_split_records(Path(path).read_bytes()))


def iter_sdf(path: Path | str) -> Iterator[tuple[int, Chem.Mol | None, str | None]]:
    """(record number from 1, molecule or None, why not) for each record of an SDF file; one bad record never stops
    the others (each is decoded as UTF-8 and parsed on its own)."""
    from . import chem  # noqa: F401  (importing it silences RDKit's own log: errors are reported per record)

    for i, raw in enumerate(_split_records(Path(path).read_bytes()), 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield i, None, f"unreadable SDF record: not UTF-8 text (byte 0x{raw[exc.start]:02x})"
            continue
        try:
            mol, why = _parse_record(text)
        except Exception as exc:  # a crash inside RDKit's reader fails this record only
            mol, why = None, f"unreadable SDF record: {_first_line(exc)}"
        yield i, mol, why


def _record_name(mol: Chem.Mol | None) -> str:
    """The ``_Name`` (first line) of a record, or "" when missing."""
    return mol.GetProp("_Name") if mol is not None and mol.HasProp("_Name") else ""


def _mol_from_record(mol: Chem.Mol, name: str) -> MolInput:
    """A usable input (hydrogens added with coordinates; closed shell, heavy atoms) or the reason it is not (elements
    are the run's business: see ``facts``)."""
    from rdkit import Chem

    from .chem import MoleculeError, check_supported

    mol = Chem.AddHs(mol, addCoords=True)
    try:
        check_supported(mol, None)
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
    requires real 3D coordinates in each record. An unreadable record is an item named ``<stem>_<record>``."""
    path = Path(path)
    out = []
    for i, mol, why in iter_sdf(path):
        name = _safe_name(_record_name(mol), f"{path.stem}_{i}")
        item = MolInput(name, None, why) if mol is None else _mol_from_record(mol, name)
        if item.mol is not None:
            if need_3d and not has_3d(mol):
                item = MolInput(name, None, "SDF record has no 3D coordinates: a reference needs a 3D geometry")
            elif not need_3d:
                item.mol.RemoveAllConformers()
        if item.error:
            item.error = f"{path.name} record {i}: {item.error}"
        out.append(item)
    return out


CONF_SUFFIX = re.compile(r"_conf\d+$")


def _group_key(mol: Chem.Mol, strip_suffix: bool) -> str:
    """A record's group: its ``_Name`` (less a ``_confN`` suffix, as ``write_sdf`` adds) or its canonical SMILES."""
    from rdkit import Chem

    name = _record_name(mol).strip()
    if name and strip_suffix:
        name = CONF_SUFFIX.sub("", name) or name
    return name or Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False))


def _in_order_of(mol: Chem.Mol, first: Chem.Mol) -> Chem.Mol | None:
    """``mol`` renumbered into the atom order of ``first`` (same graph), or None if the graphs differ."""
    from rdkit import Chem

    if mol.GetNumAtoms() != first.GetNumAtoms():
        return None
    same = all(a.GetAtomicNum() == b.GetAtomicNum() for a, b in zip(mol.GetAtoms(), first.GetAtoms())) and all(
        mol.GetBondBetweenAtoms(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) is not None for b in first.GetBonds())
    if same and mol.GetNumBonds() == first.GetNumBonds():
        return mol
    match = mol.GetSubstructMatch(first)
    return Chem.RenumberAtoms(mol, list(match)) if len(match) == mol.GetNumAtoms() else None


def read_sdf_groups(path: Path | str, strip_suffix: bool = True) -> list[MolInput]:
    """Conformer ensembles of an SDF file with several conformers per molecule: one item per molecule, holding every
    conformer of it in record order, molecules in order of first appearance.

    Records are grouped by ``_Name`` (a ``_confN`` suffix stripped, so ``write_sdf`` output groups back) or, where the
    name is empty, by canonical SMILES. Records keep their hydrogens and elements are not checked (any molecule can be
    scored). Unreadable records, records without 3D coordinates and records whose graph differs from their group's first
    are items with an error naming file and record; the rest goes on.
    """
    from rdkit import Chem

    path = Path(path)
    groups: dict[str, Chem.Mol] = {}
    errors: list[tuple[int, MolInput]] = []
    first_record: dict[str, int] = {}
    for i, mol, why in iter_sdf(path):
        where = f"{path.name} record {i}"
        if mol is None:
            errors.append((i, MolInput(f"{path.stem}_{i}", None, f"{where}: {why}")))
            continue
        key = _group_key(mol, strip_suffix)
        if not has_3d(mol):
            errors.append((i, MolInput(_safe_name(key, f"{path.stem}_{i}"), None,
                                       f"{where}: SDF record has no 3D coordinates")))
            continue
        if key not in groups:
            groups[key], first_record[key] = Chem.Mol(mol), i
            continue
        ordered = _in_order_of(mol, groups[key])
        if ordered is None:
            errors.append((i, MolInput(_safe_name(key, f"{path.stem}_{i}"), None,
                                       f"{where}: atoms differ from record {first_record[key]} of the same molecule")))
            continue
        groups[key].AddConformer(Chem.Conformer(ordered.GetConformer()), assignId=True)
    items = [(first_record[key], _named_group(key, mol, path, first_record[key])) for key, mol in groups.items()]
    return [item for _, item in sorted(items + errors, key=lambda pair: pair[0])]


def _named_group(key: str, mol: Chem.Mol, path: Path, record: int) -> MolInput:
    """The ``MolInput`` of one conformer group, named after its key; ``_source`` says file and first record."""
    name = _safe_name(key, f"{path.stem}_{record}")
    mol.SetProp("_Name", name)
    mol.SetProp("_source", f"{path.name} record {record}")
    return MolInput(name, mol)


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


def from_smiles_line(text: str) -> MolInput:
    """A ``MolInput`` from "SMILES" or "SMILES NAME" (as a line of a .smi file: SMILES hold no whitespace)."""
    parts = text.strip().split(None, 1)
    return from_smiles(parts[0] if parts else "", parts[1] if len(parts) > 1 else None)


def read_inputs(sources: Sequence[str] = (), *, smiles: Sequence[str] = (),
                files: Sequence[str | Path] = ()) -> list[MolInput]:
    """Molecules from ``sources`` (each a SMILES string, optionally followed by a name, or a ``.smi`` or an ``.sdf``
    file, told apart by suffix), then ``smiles`` (always "SMILES [NAME]") and ``files`` (always files), in order, with
    unique names."""
    out: list[MolInput] = []
    for src in sources:
        p = Path(src)
        is_file = p.suffix.lower() in SMI_SUFFIXES + SDF_SUFFIXES and (p.is_file() or p.suffix.lower() != ".txt")
        out.extend(read_file(p) if is_file else [from_smiles_line(src)])
    out.extend(from_smiles_line(s) for s in smiles)
    for f in files:
        out.extend(read_file(f))
    for item, name in zip(out, unique_names([item.name for item in out])):  # files must not overwrite each other
        item.name = name
    return out


def unique_names(names: Sequence[str]) -> list[str]:
    """``names`` with repeats suffixed ``_2``, ``_3``, ... in order of appearance."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def with_conformers(mol: Chem.Mol, positions: np.ndarray) -> Chem.Mol:
    """A copy of ``mol`` with conformers from ``positions`` [K, N, 3] (Angstrom) and stereo tags left as given."""
    from rdkit import Chem

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


def write_sdf(mol: Chem.Mol, path: Path | str, name: str | None = None,
              conf_props: Sequence[dict[str, str]] | None = None) -> Path:
    """Write all conformers of ``mol`` (hydrogens included) to one SDF file, one record per conformer.

    ``conf_props`` (one dict per conformer, in conformer order) become SDF data fields of the records, e.g. the
    validation outcome of each conformer.
    """
    from rdkit import Chem

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    label = name or (mol.GetProp("_Name") if mol.HasProp("_Name") else path.stem)
    confs = list(mol.GetConformers())
    if conf_props is not None and len(conf_props) != len(confs):
        raise ValueError(f"conf_props has {len(conf_props)} entries for {len(confs)} conformers")
    with Chem.SDWriter(str(path)) as writer:
        for k, conf in enumerate(confs):
            m = Chem.Mol(mol)
            m.SetProp("_Name", f"{label}_conf{conf.GetId()}")
            for key, value in (conf_props[k] if conf_props is not None else {}).items():
                m.SetProp(key, str(value))
            writer.write(m, confId=conf.GetId())
    return path
