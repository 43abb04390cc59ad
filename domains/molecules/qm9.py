"""QM9 from the ``qm9pack`` wheel: parse the CSV files once, cache compact arrays, split by QM9 ``Index``.

``qm9pack.get_data()`` is broken (it imports ``pkg_resources``), so the CSVs under ``qm9pack/data/`` are read directly
without importing the package. Each row is rebuilt as an RDKit molecule in XYZ atom order (``chem.mol_from_xyz``);
rows that are malformed or whose geometry does not match their SMILES are skipped and counted by reason.
Split: ``Index % 20 == 0`` test, ``== 1`` validation, the rest train.
"""
from __future__ import annotations

import ast
import csv
import importlib.util
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from rdkit import Chem

from .chem import MoleculeError, MolGraph, featurize, mol_from_xyz, parse_smiles

CACHE_VERSION = 1
SPLITS = ("train", "val", "test")
_OFFSETS = {"z": "atom", "pos": "atom", "perm": "atom", "atoms": "atom", "bonds": "bond", "bond_types": "bond",
            "chiral": "chiral", "chiral_sign": "chiral", "double": "double", "double_sign": "double"}
_ARRAY_KEYS = ("index", "smiles", "z", "pos", "perm", "atoms", "atom_offsets", "bonds", "bond_types", "bond_offsets",
               "chiral", "chiral_sign", "chiral_offsets", "double", "double_sign", "double_offsets")


def cache_dir() -> Path:
    """``$POLYDIFF_CACHE/molecules`` (default ``~/.cache/polydiff/molecules``)."""
    return Path(os.environ.get("POLYDIFF_CACHE", Path.home() / ".cache" / "polydiff")) / "molecules"


def qm9_csv_files() -> list[Path]:
    """The QM9 CSV files shipped inside ``qm9pack`` (found without importing its broken ``__init__``)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package qm9pack is not installed: pip install 'polydiff[molecules]'")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    files = sorted(data.glob("qm9_part*.csv"))
    if not files:
        raise FileNotFoundError(f"no qm9_part*.csv under {data}: the qm9pack installation is incomplete")
    return files


def split_of(index: int) -> str:
    """The split of a QM9 molecule by its ``Index``: test (mod 20 = 0), val (mod 20 = 1) or train."""
    r = int(index) % 20
    return "test" if r == 0 else "val" if r == 1 else "train"


def _keep(row: dict[str, str], subsample: int) -> bool:
    try:
        return subsample <= 1 or (int(row["Index"]) // 20) % subsample == 0
    except (KeyError, TypeError, ValueError):
        return True  # a malformed row goes on to be counted as skipped


def iter_rows(files: list[Path] | None = None, max_rows: int | None = None,
              subsample: int = 1) -> Iterator[dict[str, str]]:
    """CSV rows of QM9 as dicts (only the columns used), ``max_rows`` in total at most (counted before
    ``subsample`` s keeps the molecules with (Index // 20) % s == 0: all residues mod 20, so splits stay proportional)."""
    csv.field_size_limit(1 << 30)
    n = 0
    for path in files or qm9_csv_files():
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if max_rows is not None and n >= max_rows:
                    return
                n += 1
                if _keep(row, subsample):
                    yield {k: row.get(k) for k in ("Index", "SMILES", "Elements", "XYZ_Ang")}


def _literal(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return ast.literal_eval(text)  # Python-only spellings such as "1." or single-quoted strings


def parse_row(row: dict[str, str]) -> tuple[int, str, list[str], np.ndarray]:
    """(Index, SMILES, elements, coordinates [N, 3] in Angstrom) of one row; ``MoleculeError`` if malformed."""
    try:
        index = int(row["Index"])
        smiles = row["SMILES"].strip()
        elements = [str(e) for e in _literal(row["Elements"])]
        xyz = np.asarray(_literal(row["XYZ_Ang"]), dtype=np.float64)
    except (KeyError, TypeError, ValueError, SyntaxError, AttributeError) as exc:
        raise MoleculeError(f"malformed row: {type(exc).__name__}") from None
    if xyz.ndim != 2 or xyz.shape != (len(elements), 3) or not np.isfinite(xyz).all():
        raise MoleculeError("malformed row: coordinates do not match the element list")
    return index, smiles, elements, xyz


def _process(row: dict[str, str]) -> tuple[str, object]:
    """One row -> ("ok", record) or ("skip", reason); never raises for bad data."""
    try:
        index, smiles, elements, xyz = parse_row(row)
        mol = mol_from_xyz(smiles, elements, xyz)
        graph = featurize(mol)
        perm = np.asarray(mol.GetProp("_perm").split(","), dtype=np.int16) if mol.HasProp("_perm") else None
        z = np.asarray([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int8)
        return "ok", (index, smiles, z, xyz.astype(np.float32), perm, graph)
    except MoleculeError as exc:
        return "skip", str(exc).split(":")[0]
    except Exception as exc:  # an RDKit failure on a strange row must not stop the whole parse
        return "skip", f"rdkit error {type(exc).__name__}"


@dataclass
class QM9:
    """Compact QM9 arrays: atoms of all molecules concatenated, ``*_offsets`` delimit molecule m's slice."""

    arrays: dict[str, np.ndarray]
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.arrays["index"].shape[0])

    def _slice(self, key: str, m: int) -> np.ndarray:
        off = self.arrays[f"{_OFFSETS[key]}_offsets"]
        return self.arrays[key][off[m]:off[m + 1]]

    def positions(self, m: int) -> np.ndarray:
        """DFT coordinates [N, 3] (Angstrom, float32) of molecule m, atoms in XYZ order."""
        return self.arrays["pos"][self.arrays["atom_offsets"][m]:self.arrays["atom_offsets"][m + 1]]

    def graph(self, m: int) -> MolGraph:
        """The conditioning graph of molecule m (same atom order as ``positions``)."""
        return MolGraph(self._slice("atoms", m), self._slice("bonds", m).astype(np.int64), self._slice("bond_types", m),
                        self._slice("chiral", m).astype(np.int64), self._slice("chiral_sign", m),
                        self._slice("double", m).astype(np.int64), self._slice("double_sign", m))

    def mol(self, m: int) -> Chem.Mol:
        """RDKit molecule m with its DFT conformer and stereo from 3D (the reference for evaluation)."""
        ref = parse_smiles(str(self.arrays["smiles"][m]))
        mol = Chem.RenumberAtoms(ref, [int(i) for i in self._slice("perm", m)])
        conf = Chem.Conformer(mol.GetNumAtoms())
        for i, p in enumerate(self.positions(m).astype(float)):
            conf.SetAtomPosition(i, p.tolist())
        mol.AddConformer(conf, assignId=True)
        Chem.AssignStereochemistryFrom3D(mol)
        mol.SetProp("_Name", f"qm9_{int(self.arrays['index'][m])}")
        return mol

    def split(self, name: str) -> np.ndarray:
        """Positions (0..len-1) of the molecules in split ``name`` (train, val or test)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        r = self.arrays["index"] % 20
        mask = r == 0 if name == "test" else r == 1 if name == "val" else r >= 2
        return np.nonzero(mask)[0]

    def select(self, mols: np.ndarray) -> "QM9":
        """A new ``QM9`` with only the molecules at positions ``mols`` (in that order)."""
        mols = np.asarray(mols, dtype=np.int64)
        a = self.arrays
        out = {"index": a["index"][mols], "smiles": a["smiles"][mols]}
        for key, members in (("atom", ("z", "pos", "perm", "atoms")), ("bond", ("bonds", "bond_types")),
                             ("chiral", ("chiral", "chiral_sign")), ("double", ("double", "double_sign"))):
            off = a[f"{key}_offsets"]
            lengths = off[mols + 1] - off[mols]
            rows = np.concatenate([np.arange(off[m], off[m + 1]) for m in mols]) if len(mols) else np.zeros(0, int)
            for name in members:
                out[name] = a[name][rows.astype(np.int64)]
            out[f"{key}_offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return QM9(out, dict(self.skipped))

    def heavy_atom_counts(self) -> np.ndarray:
        """Number of heavy atoms of each molecule."""
        heavy = (self.arrays["z"] > 1).astype(np.int64)
        return np.add.reduceat(heavy, self.arrays["atom_offsets"][:-1])


def _pack(records: list[tuple]) -> dict[str, np.ndarray]:
    def cat(parts, dtype, width=None):
        shape = (0,) if width is None else (0, width)
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(shape, dtype)

    def offsets(parts):
        return np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)

    graphs = [r[5] for r in records]
    out = {
        "index": np.asarray([r[0] for r in records], dtype=np.int64),
        "smiles": np.asarray([r[1] for r in records], dtype=np.str_),
        "z": cat([r[2] for r in records], np.int8),
        "pos": cat([r[3] for r in records], np.float32, 3),
        "perm": cat([r[4] for r in records], np.int16),
        "atoms": cat([g.atoms for g in graphs], np.int8, 10),
        "atom_offsets": offsets([r[2] for r in records]),
        "bonds": cat([g.bonds for g in graphs], np.int16, 2),
        "bond_types": cat([g.bond_types for g in graphs], np.int8),
        "bond_offsets": offsets([g.bonds for g in graphs]),
        "chiral": cat([g.chiral for g in graphs], np.int16, 4),
        "chiral_sign": cat([g.chiral_sign for g in graphs], np.int8),
        "chiral_offsets": offsets([g.chiral for g in graphs]),
        "double": cat([g.double for g in graphs], np.int16, 4),
        "double_sign": cat([g.double_sign for g in graphs], np.int8),
        "double_offsets": offsets([g.double for g in graphs]),
    }
    out["atoms"] = out["atoms"].reshape(-1, 10)
    return out


def build_qm9(max_rows: int | None = None, workers: int = 1, files: list[Path] | None = None,
              subsample: int = 1) -> QM9:
    """Parse QM9 rows into a ``QM9`` (no cache); malformed or mismatching rows are skipped and counted by reason."""
    rows = iter_rows(files, max_rows, subsample)
    if workers > 1:
        with get_context("spawn").Pool(workers) as pool:
            results = list(pool.imap(_process, rows, chunksize=256))
    else:
        results = [_process(r) for r in rows]
    records = [v for k, v in results if k == "ok"]
    skipped = Counter(v for k, v in results if k == "skip")
    return QM9(_pack(records), dict(skipped))


def _subsampled(qm9: QM9, subsample: int) -> QM9:
    return qm9.select(np.nonzero((qm9.arrays["index"] // 20) % subsample == 0)[0]) if subsample > 1 else qm9


def load_qm9(max_rows: int | None = None, workers: int | None = None, directory: Path | None = None,
             subsample: int = 1) -> QM9:
    """QM9 from the cache, parsing and caching it (atomically) on first use; ``max_rows`` limits to the first rows,
    ``subsample`` keeps one molecule group in s (see ``iter_rows``), taken from the full cache when that exists."""
    directory = Path(directory) if directory is not None else cache_dir()
    rows = "all" if max_rows is None else max_rows
    path = directory / f"qm9_v{CACHE_VERSION}_{rows}{'' if subsample <= 1 else f'_sub{subsample}'}.npz"
    full = directory / f"qm9_v{CACHE_VERSION}_{rows}.npz"
    if subsample > 1 and not path.exists() and full.exists():
        return _subsampled(load_qm9(max_rows, workers, directory), subsample)
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in _ARRAY_KEYS}
            skipped = json.loads(str(data["skipped"]))
        return QM9(arrays, skipped)
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    qm9 = build_qm9(max_rows, workers if (max_rows is None or max_rows > 2000) else 1, subsample=subsample)
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, skipped=np.asarray(json.dumps(qm9.skipped)), **qm9.arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return qm9
