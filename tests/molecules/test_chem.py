"""Chemistry: parsing errors, XYZ/SMILES atom matching on real QM9 rows, stereo conventions, QM9 cache."""
from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from polydiff.domains.molecules.chem import (MoleculeError, check_supported, featurize, mol_from_xyz, parse_smiles,
                                             stereo_values)
from polydiff.domains.molecules.qm9 import build_qm9, iter_rows, load_qm9, parse_row, split_of


def _embed(smiles: str, seed: int = 7) -> Chem.Mol:
    mol = parse_smiles(smiles)
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    return mol


@pytest.mark.parametrize("smiles, message", [("C1CC", "invalid SMILES"), ("CCS", r"element\(s\) S not supported"),
                                             ("[H][H]", "no heavy atoms"), ("C[CH2]", "radicals")])
def test_bad_molecules_give_one_line(smiles, message):
    with pytest.raises(MoleculeError, match=message) as info:
        mol = parse_smiles(smiles)
        check_supported(mol)
    assert "\n" not in str(info.value)


def test_xyz_matching_on_real_qm9_rows():
    rows = list(iter_rows(max_rows=60))
    done = 0
    for row in rows:
        index, smiles, elements, xyz = parse_row(row)
        try:
            mol = mol_from_xyz(smiles, elements, xyz)
        except MoleculeError:
            continue
        done += 1
        assert [a.GetSymbol() for a in mol.GetAtoms()] == elements  # XYZ atom order
        assert np.allclose(mol.GetConformer().GetPositions(), xyz)
        same = Chem.MolToSmiles(Chem.RemoveHs(mol), isomericSmiles=False)
        assert same == Chem.MolToSmiles(Chem.MolFromSmiles(smiles), isomericSmiles=False)
        # every bond of the SMILES graph is a short distance in the DFT geometry
        for b in mol.GetBonds():
            d = np.linalg.norm(xyz[b.GetBeginAtomIdx()] - xyz[b.GetEndAtomIdx()])
            assert 0.9 < d < 1.8
    assert done >= 55


def test_xyz_matching_with_shuffled_atoms():
    ref = _embed("OCC(=O)NC#N")
    pos = ref.GetConformer().GetPositions()
    perm = np.random.default_rng(0).permutation(ref.GetNumAtoms())
    elements = [ref.GetAtomWithIdx(int(i)).GetSymbol() for i in perm]
    mol = mol_from_xyz("OCC(=O)NC#N", elements, pos[perm])
    assert [a.GetSymbol() for a in mol.GetAtoms()] == elements
    for b in mol.GetBonds():  # bonded atoms are bonded in the original numbering too
        i, j = int(perm[b.GetBeginAtomIdx()]), int(perm[b.GetEndAtomIdx()])
        assert ref.GetBondBetweenAtoms(i, j).GetBondType() == b.GetBondType()


def test_xyz_matching_rejects_broken_geometry():
    ref = _embed("CCO")
    pos = ref.GetConformer().GetPositions()
    pos[2] += 5.0  # pull the oxygen away: the C-O bond is gone
    with pytest.raises(MoleculeError, match="differs"):
        mol_from_xyz("CCO", [a.GetSymbol() for a in ref.GetAtoms()], pos)


@pytest.mark.parametrize("smiles, mirror", [("C[C@H](O)C(F)N", "C[C@@H](O)C(F)N"),
                                            ("F[C@@H]1C[C@H]1O", "F[C@H]1C[C@@H]1O"),
                                            ("C/C=C/C", "C/C=C\\C"), ("O/N=C/F", "O/N=C\\F")])
def test_stereo_conventions_against_rdkit_embeddings(smiles, mirror):
    mol = _embed(smiles)
    graph = featurize(mol)
    chi, dbl = stereo_values(mol.GetConformer().GetPositions(), graph)
    assert len(chi) + len(dbl) > 0
    assert (chi > 0.3).all() and (dbl > 0.5).all()
    other = _embed(mirror)  # the stereoisomer violates the constraints of the first molecule's graph
    chi2, dbl2 = stereo_values(other.GetConformer().GetPositions(), featurize(parse_smiles(smiles)))
    assert (chi2 < 0).any() or (dbl2 < 0).any()


def test_qm9_stereo_from_dft_geometry(qm9_small):
    n_centres = 0
    for m in range(len(qm9_small)):
        g = qm9_small.graph(m)
        chi, dbl = stereo_values(qm9_small.positions(m).astype(float), g)
        n_centres += len(chi)
        assert (chi > 0).all() and (dbl > 0).all()
    assert n_centres > 10


def test_qm9_cache_split_and_graphs(qm9_small, qm9_cache):
    again = load_qm9(max_rows=300, directory=qm9_cache / "molecules")
    for key, value in qm9_small.arrays.items():
        assert np.array_equal(value, again.arrays[key])
    assert len(qm9_small) + sum(qm9_small.skipped.values()) == 300
    idx = qm9_small.arrays["index"]
    assert set(idx[qm9_small.split("test")] % 20) == {0} and set(idx[qm9_small.split("val")] % 20) == {1}
    assert len(qm9_small.split("train")) + len(qm9_small.split("val")) + len(qm9_small.split("test")) == len(qm9_small)
    assert split_of(40) == "test" and split_of(41) == "val" and split_of(42) == "train"
    for m in (10, 150, len(qm9_small) - 1):
        mol = qm9_small.mol(m)
        g, g2 = qm9_small.graph(m), featurize(mol)
        for name in ("atoms", "bonds", "bond_types", "chiral", "chiral_sign", "double", "double_sign"):
            assert np.array_equal(getattr(g, name), getattr(g2, name)), name
        assert np.allclose(mol.GetConformer().GetPositions(), qm9_small.positions(m), atol=1e-5)
    sub = qm9_small.select(np.array([5, 2]))
    assert np.array_equal(sub.positions(0), qm9_small.positions(5)) and sub.graph(1).num_atoms == qm9_small.graph(2).num_atoms


def test_malformed_rows_are_skipped_and_counted(tmp_path):
    good = next(iter_rows(max_rows=1))
    sci = dict(good, Index="3", XYZ_Ang=good["XYZ_Ang"].replace("-0.0126981359", "-1.26981359e-02"))
    header = "Index,SMILES,Elements,XYZ_Ang\n"
    lines = [good, sci,
             dict(good, Index="4", XYZ_Ang="[[0.0,0.0]"),                 # unparsable literal
             dict(good, Index="5", Elements="['C','H']"),                 # element list does not match coordinates
             dict(good, Index="x"),                                        # bad index
             dict(good, Index="6", SMILES="C1CC")]                         # invalid SMILES
    path = tmp_path / "qm9_part1.csv"
    with open(path, "w") as f:
        f.write(header)
        for r in lines:
            f.write(",".join(f'"{r[k]}"' for k in ("Index", "SMILES", "Elements", "XYZ_Ang")) + "\n")
    q = build_qm9(files=[path])
    assert len(q) == 2 and sum(q.skipped.values()) == 4
    assert np.allclose(q.positions(0), q.positions(1), atol=1e-6)


def test_subsample_keeps_split_residues(tmp_path, qm9_small):
    sub = load_qm9(max_rows=300, directory=tmp_path, subsample=3)  # parsed directly (no full cache there)
    idx = sub.arrays["index"]
    assert len(sub) > 0 and set((idx // 20) % 3) == {0}
    expected = qm9_small.select(np.nonzero((qm9_small.arrays["index"] // 20) % 3 == 0)[0])
    assert np.array_equal(sub.arrays["index"], expected.arrays["index"])
    assert np.array_equal(sub.arrays["pos"], expected.arrays["pos"])
