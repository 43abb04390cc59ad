"""Chemistry with RDKit: parse and check molecules, rebuild QM9 molecules in XYZ atom order, featurize graphs.

A QM9 row gives a SMILES (no stereo) and DFT coordinates in an unrelated atom order. ``mol_from_xyz`` builds the
SMILES molecule with explicit hydrogens, perceives the connectivity of the XYZ geometry (covalent radii), checks that
both graphs have the same number of bonds, maps one onto the other by graph isomorphism (elements only, bond orders
ignored) and renumbers the SMILES molecule into XYZ order with the DFT conformer attached. Stereo tags (tetrahedral
centres and double bonds) are then assigned from the 3D geometry, so training data carry the stereo they show.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem import rdDetermineBonds

from .vocab import QM9, Vocabulary

RDLogger.DisableLog("rdApp.*")

_HYBRID = {Chem.HybridizationType.S: 1, Chem.HybridizationType.SP: 2, Chem.HybridizationType.SP2: 3,
           Chem.HybridizationType.SP3: 4}
_BOND = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3, Chem.BondType.AROMATIC: 4}
ATOM_FEATURE_SIZES: tuple[int, ...] = QM9.sizes()
"""Sizes of the categorical atom-feature columns of a QM9 run (``atom_features``; other runs: ``Vocabulary.sizes``)."""
NUM_BOND_TYPES = 5  # 0 = not bonded, 1 single, 2 double, 3 triple, 4 aromatic


class MoleculeError(ValueError):
    """A molecule that cannot be used, with a one-line reason."""


@dataclass
class MolGraph:
    """The conditioning graph of one molecule (numpy arrays, atoms in the molecule's order).

    ``atoms`` [N, F] categorical features; ``bonds`` [B, 2]; ``bond_types`` [B] (1..4); ``chiral`` [C, 4]
    (centre, three neighbours) with ``chiral_sign`` [C] = the sign the volume of the neighbour vectors must have;
    ``double`` [D, 4] (a, i, j, b for a stereo bond i=j) with ``double_sign`` [D] = the sign cos(dihedral a-i-j-b)
    must have (+1 cis, -1 trans).
    """

    atoms: np.ndarray
    bonds: np.ndarray
    bond_types: np.ndarray
    chiral: np.ndarray
    chiral_sign: np.ndarray
    double: np.ndarray
    double_sign: np.ndarray

    @property
    def num_atoms(self) -> int:
        """Number of atoms (hydrogens included)."""
        return int(self.atoms.shape[0])


def parse_smiles(smiles: str) -> Chem.Mol:
    """Parse a SMILES into a sanitized molecule with explicit hydrogens (stereo from the SMILES kept)."""
    mol = Chem.MolFromSmiles(smiles.strip()) if smiles and smiles.strip() else None
    if mol is None:
        raise MoleculeError(f"invalid SMILES {smiles!r}: RDKit cannot parse it; check brackets, ring closures, valences")
    return Chem.AddHs(mol)


def check_supported(mol: Chem.Mol, vocab: Vocabulary | None = QM9) -> None:
    """Raise ``MoleculeError`` unless the molecule is closed-shell, has heavy atoms and (``vocab`` given) only elements
    of the vocabulary; ``vocab=None`` leaves elements to the run's out-of-distribution guard (``facts``)."""
    bad = vocab.unknown_elements(mol) if vocab is not None else []
    if bad:
        raise MoleculeError(f"element(s) {', '.join(bad)} not supported: the model was trained on "
                            f"{' '.join(vocab.symbols)}")
    if not any(a.GetAtomicNum() > 1 for a in mol.GetAtoms()):
        raise MoleculeError("molecule has no heavy atoms: nothing to generate a conformation for")
    if any(a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
        raise MoleculeError("radicals are not supported: give a closed-shell molecule")


def _skeleton(mol: Chem.Mol) -> Chem.Mol:
    """The bare graph of ``mol``: elements and single bonds only, for isomorphism with a connectivity-only graph."""
    rw = Chem.RWMol()
    for a in mol.GetAtoms():
        rw.AddAtom(Chem.Atom(a.GetAtomicNum()))
    for b in mol.GetBonds():
        rw.AddBond(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), Chem.BondType.SINGLE)
    out = rw.GetMol()
    out.UpdatePropertyCache(strict=False)
    return out


def mol_from_xyz(smiles: str, elements: list[str], xyz: np.ndarray) -> Chem.Mol:
    """The SMILES molecule (with Hs) renumbered into the XYZ atom order, carrying the XYZ geometry and its stereo.

    Raises ``MoleculeError`` if the SMILES does not parse, the element lists differ or the XYZ connectivity (covalent
    radii x 1.3) is not isomorphic to the SMILES graph (a molecule that changed during DFT relaxation).
    """
    ref = parse_smiles(smiles)
    if sorted(a.GetSymbol() for a in ref.GetAtoms()) != sorted(elements):
        raise MoleculeError("element lists of SMILES and XYZ differ")
    geo = Chem.RWMol()
    for symbol in elements:
        geo.AddAtom(Chem.Atom(symbol))
    conf = Chem.Conformer(len(elements))
    for i, p in enumerate(np.asarray(xyz, dtype=float)):
        conf.SetAtomPosition(i, p.tolist())
    geo.AddConformer(conf, assignId=True)
    try:
        rdDetermineBonds.DetermineConnectivity(geo)
    except Exception as exc:  # RDKit raises several types here
        raise MoleculeError(f"connectivity perception failed: {exc}") from None
    if geo.GetNumBonds() != ref.GetNumBonds():
        raise MoleculeError("XYZ connectivity differs from the SMILES graph")
    match = geo.GetSubstructMatch(_skeleton(ref))
    if len(match) != ref.GetNumAtoms():
        raise MoleculeError("XYZ connectivity is not isomorphic to the SMILES graph")
    order = [0] * len(match)
    for ref_idx, geo_idx in enumerate(match):
        order[geo_idx] = ref_idx
    mol = Chem.RenumberAtoms(ref, order)
    mol.RemoveAllConformers()
    mol.AddConformer(Chem.Conformer(geo.GetConformer()), assignId=True)
    Chem.AssignStereochemistryFrom3D(mol)
    mol.SetProp("_perm", ",".join(map(str, order)))  # SMILES-with-Hs atom index of each XYZ atom
    return mol


def atom_features(mol: Chem.Mol, vocab: Vocabulary = QM9) -> np.ndarray:
    """Categorical atom features [N, 10]: element and charge (rows of ``vocab``), aromatic, hybridization, degree,
    H count, ring 3/4/5/6. ``MoleculeError`` for an element outside the vocabulary."""
    unknown = vocab.unknown_elements(mol)
    if unknown:
        raise MoleculeError(f"element(s) {', '.join(unknown)} not in the vocabulary ({' '.join(vocab.symbols)})")
    ring = mol.GetRingInfo()
    rows = []
    for a in mol.GetAtoms():
        idx = a.GetIdx()
        rows.append((
            vocab.element_index(a.GetAtomicNum()),
            vocab.charge_index(a.GetFormalCharge()),
            int(a.GetIsAromatic()),
            _HYBRID.get(a.GetHybridization(), 0),
            min(a.GetDegree(), 5),
            min(a.GetTotalNumHs(), 4),
            *(int(ring.IsAtomInRingOfSize(idx, k)) for k in (3, 4, 5, 6)),
        ))
    return np.asarray(rows, dtype=np.int8).reshape(-1, len(ATOM_FEATURE_SIZES))


def _chiral_constraints(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray]:
    """Tetrahedral centres as (centre, n1, n2, n3) and the sign of det[v1, v2, v3] (v_k = x_nk - x_centre).

    RDKit's CCW tag: seen from the first neighbour (bond order), the others run counter-clockwise; that makes the
    triple product of the first three neighbour vectors positive (the tests check this on DFT geometries).
    """
    rows, signs = [], []
    for a in mol.GetAtoms():
        tag = a.GetChiralTag()
        if tag not in (Chem.ChiralType.CHI_TETRAHEDRAL_CW, Chem.ChiralType.CHI_TETRAHEDRAL_CCW):
            continue
        nbrs = [b.GetOtherAtomIdx(a.GetIdx()) for b in a.GetBonds()]
        if len(nbrs) < 3:
            continue
        sign = 1 if tag == Chem.ChiralType.CHI_TETRAHEDRAL_CCW else -1
        rows.append((a.GetIdx(), *nbrs[:3]))
        signs.append(sign)
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4), np.asarray(signs, dtype=np.int8)


def _double_constraints(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray]:
    """Stereo double bonds as (a, i, j, b) and the sign of cos(dihedral a-i-j-b): +1 cis, -1 trans.

    E/Z labels are CIP based: the highest-ranked substituents on each end are trans for E; CIS/TRANS labels refer to
    the bond's stereo atoms. The substituents used are the reference ones, so no further bookkeeping is needed.
    """
    rows, signs = [], []
    ranks = None
    for bond in mol.GetBonds():
        stereo = bond.GetStereo()
        if bond.GetBondType() != Chem.BondType.DOUBLE or stereo == Chem.BondStereo.STEREONONE:
            continue
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if stereo in (Chem.BondStereo.STEREOCIS, Chem.BondStereo.STEREOTRANS):
            a, b = bond.GetStereoAtoms()
            sign = 1 if stereo == Chem.BondStereo.STEREOCIS else -1
        elif stereo in (Chem.BondStereo.STEREOE, Chem.BondStereo.STEREOZ):
            if ranks is None:
                ranks = list(Chem.CanonicalRankAtoms(mol, breakTies=False))
                ranks = [int(x.GetProp("_CIPRank")) if x.HasProp("_CIPRank") else ranks[x.GetIdx()]
                         for x in mol.GetAtoms()]
            sub_i = [n.GetIdx() for n in mol.GetAtomWithIdx(i).GetNeighbors() if n.GetIdx() != j]
            sub_j = [n.GetIdx() for n in mol.GetAtomWithIdx(j).GetNeighbors() if n.GetIdx() != i]
            if not sub_i or not sub_j:
                continue
            a = max(sub_i, key=lambda k: ranks[k])
            b = max(sub_j, key=lambda k: ranks[k])
            sign = 1 if stereo == Chem.BondStereo.STEREOZ else -1
        else:
            continue
        rows.append((a, i, j, b))
        signs.append(sign)
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4), np.asarray(signs, dtype=np.int8)


def featurize(mol: Chem.Mol, vocab: Vocabulary = QM9) -> MolGraph:
    """The conditioning graph of a molecule with explicit hydrogens (stereo from its tags; none if untagged), atoms
    encoded with ``vocab`` (the run's; QM9 by default)."""
    Chem.AssignStereochemistry(mol, cleanIt=True, force=True)
    bonds = np.asarray([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()], dtype=np.int64)
    types = np.asarray([_BOND.get(b.GetBondType(), 1) for b in mol.GetBonds()], dtype=np.int8)
    chiral, chiral_sign = _chiral_constraints(mol)
    double, double_sign = _double_constraints(mol)
    return MolGraph(atom_features(mol, vocab), bonds.reshape(-1, 2), types, chiral, chiral_sign, double, double_sign)


def stereo_values(pos: np.ndarray, graph: MolGraph) -> tuple[np.ndarray, np.ndarray]:
    """Signed stereo measures of a geometry: sign * det of unit neighbour vectors, sign * cos(dihedral); > 0 = correct."""
    c = graph.chiral
    v = [pos[c[:, k]] - pos[c[:, 0]] for k in (1, 2, 3)]
    v = [x / np.linalg.norm(x, axis=-1, keepdims=True) for x in v]
    chi = graph.chiral_sign * np.einsum("ij,ij->i", v[0], np.cross(v[1], v[2])) if len(c) else np.zeros(0)
    d = graph.double
    if len(d):
        b1, b2, b3 = pos[d[:, 1]] - pos[d[:, 0]], pos[d[:, 2]] - pos[d[:, 1]], pos[d[:, 3]] - pos[d[:, 2]]
        n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
        cos = np.einsum("ij,ij->i", n1, n2) / (np.linalg.norm(n1, axis=-1) * np.linalg.norm(n2, axis=-1) + 1e-12)
        dbl = graph.double_sign * cos
    else:
        dbl = np.zeros(0)
    return chi, dbl
