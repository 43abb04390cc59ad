"""Ensemble metrics (COV/MAT recall and precision) on exact cases, their aggregation, the K and threshold defaults,
and grouping an SDF of several conformers per molecule."""
from __future__ import annotations

import math

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from polydiff.domains.molecules.chem import parse_smiles
from polydiff.domains.molecules.ensembles import (aggregate, default_threshold, ensemble_benchmark, ensemble_scores,
                                                  format_ensemble_table, num_to_generate, rmsd_matrix,
                                                  scores_from_matrix)
from polydiff.domains.molecules.io import read_sdf_groups, with_conformers, write_sdf
from polydiff.domains.molecules.metrics import etkdg_method


def conformers(smiles: str, k: int, seed: int = 3) -> Chem.Mol:
    """K MMFF-relaxed ETKDG conformers."""
    mol = parse_smiles(smiles)
    AllChem.EmbedMultipleConfs(mol, k, randomSeed=seed)
    AllChem.MMFFOptimizeMoleculeConfs(mol, numThreads=1)
    return mol


def positions(mol: Chem.Mol) -> np.ndarray:
    """All conformers' coordinates [K, N, 3]."""
    return np.stack([c.GetPositions() for c in mol.GetConformers()])


def kabsch_rmsd(a: np.ndarray, b: np.ndarray) -> float:
    """RMSD after optimal superposition, written out: centre, SVD of the covariance, proper rotation."""
    a, b = a - a.mean(0), b - b.mean(0)
    u, _, vt = np.linalg.svd(b.T @ a)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotated = b @ (u @ d @ vt)
    return float(np.sqrt(((rotated - a) ** 2).sum(1).mean()))


def test_identical_ensembles_cover_everything_at_zero_distance():
    mol = conformers("CCCC(=O)OCC", 4)
    s = ensemble_scores(mol, Chem.Mol(mol))
    assert (s.n_generated, s.n_reference, s.threshold) == (4, 4, 0.5)
    assert s.cov_r == s.cov_p == 1.0 and s.mat_r == pytest.approx(0, abs=1e-6) and s.mat_p == pytest.approx(0, abs=1e-6)


def test_rigid_motion_is_aligned_away():
    mol = conformers("OCC(F)C#N", 3)
    pos = positions(mol)
    q = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    q *= np.sign(np.linalg.det(q))
    moved = pos @ q.T + np.array([4.0, -1.0, 2.5])
    s = ensemble_scores(moved, mol, mol=mol)  # arrays in the molecule's atom order
    assert s.mat_r == pytest.approx(0, abs=1e-6) and s.mat_p == pytest.approx(0, abs=1e-6) and s.cov_r == 1.0
    assert np.allclose(rmsd_matrix(moved, mol, mol=mol), rmsd_matrix(mol, mol), atol=1e-6)


def test_a_copy_whose_aromatic_flags_mmff_rewrote_still_aligns_to_the_original():
    """MMFF's setup rewrites aromaticity flags in place (this fused pyrazolo-pyrimidinone of the MOSES test set loses
    them); the same coordinates must still score as identical to the untouched copy."""
    mol = parse_smiles("O=c1cc(-c2ccccc2)[nH]c2cc(-c3ccco3)nn12")
    AllChem.EmbedMultipleConfs(mol, 2, randomSeed=1)
    touched = Chem.Mol(mol)
    AllChem.MMFFGetMoleculeForceField(touched, AllChem.MMFFGetMoleculeProperties(touched))
    assert Chem.MolToSmiles(Chem.RemoveHs(touched, sanitize=False)) != Chem.MolToSmiles(Chem.RemoveHs(mol))
    assert np.allclose(np.diag(rmsd_matrix(touched, mol)), 0, atol=1e-6)


def test_one_displaced_atom_gives_the_hand_computed_rmsd():
    # collinear heavy atoms (H-C#C-C#N), N moved along the axis by d: no rotation helps, RMSD = d sqrt(n-1) / n
    linear = conformers("C#CC#N", 1)
    pos = linear.GetConformer().GetPositions()
    heavy = [a.GetIdx() for a in linear.GetAtoms() if a.GetAtomicNum() > 1]
    n_idx = [a.GetIdx() for a in linear.GetAtoms() if a.GetSymbol() == "N"][0]
    axis = (pos[n_idx] - pos[heavy[0]]) / np.linalg.norm(pos[n_idx] - pos[heavy[0]])
    d = 0.8
    moved = pos.copy()
    moved[n_idx] += d * axis
    got = rmsd_matrix(moved[None], linear, mol=linear)[0, 0]
    assert got == pytest.approx(d * math.sqrt(3) / 4, abs=1e-4)
    # any direction on a molecule without heavy-atom symmetry: the Kabsch RMSD written out in this test
    chiral = conformers("C[C@H](O)C#N", 1)
    pos = chiral.GetConformer().GetPositions()
    heavy = [a.GetIdx() for a in chiral.GetAtoms() if a.GetAtomicNum() > 1]
    moved = pos.copy()
    moved[heavy[2]] += np.array([0.3, -0.5, 0.4])
    expected = kabsch_rmsd(pos[heavy], moved[heavy])
    assert rmsd_matrix(moved[None], chiral, mol=chiral)[0, 0] == pytest.approx(expected, abs=1e-5) and expected > 0.1


def test_scores_from_a_matrix():
    rmsd = np.array([[0.3, 0.9], [0.8, 0.6], [0.2, 1.0]])  # 3 generated x 2 references
    s = scores_from_matrix(rmsd, 0.5, "m")
    assert (s.cov_r, s.mat_r) == (0.5, pytest.approx(0.4))  # reference 0 covered (0.2), reference 1 not (0.6)
    assert (s.cov_p, s.mat_p) == (pytest.approx(2 / 3), pytest.approx(1.1 / 3))
    assert scores_from_matrix(rmsd, 0.65).cov_r == 1.0
    none = scores_from_matrix(np.empty((0, 2)), 0.5, "failed")
    assert (none.cov_r, none.mat_r, none.n_reference) == (0.0, math.inf, 2) and math.isnan(none.cov_p)
    with pytest.raises(ValueError, match="no reference"):
        scores_from_matrix(np.empty((3, 0)), 0.5)


def test_one_of_two_references_covered():
    refs = conformers("CCCCCCO", 12, seed=5)
    rmsd = rmsd_matrix(refs, refs)
    i, j = np.unravel_index(np.argmax(rmsd), rmsd.shape)
    assert rmsd[i, j] > 1.0
    two = with_conformers(refs, positions(refs)[[i, j]])
    s = ensemble_scores(with_conformers(refs, positions(refs)[[i]]), two)
    assert (s.cov_r, s.cov_p) == (0.5, 1.0) and s.mat_p == pytest.approx(0, abs=1e-6)
    assert s.mat_r == pytest.approx(rmsd[i, j] / 2, abs=1e-5)


def test_defaults_threshold_and_k():
    assert default_threshold(9) == 0.5 and default_threshold(10) == 0.75
    assert num_to_generate(7) == 14 and num_to_generate(3, factor=1) == 3
    with pytest.raises(ValueError):
        num_to_generate(0)
    big = conformers("CCCCCCCCCCO", 2)  # 11 heavy atoms
    assert ensemble_scores(big, big).threshold == 0.75 and ensemble_scores(big, big, threshold=0.2).threshold == 0.2


def test_aggregate_mean_median_and_failures():
    scores = [scores_from_matrix(np.array([[0.1]]), 0.5), scores_from_matrix(np.array([[0.3, 0.7]]), 0.5),
              scores_from_matrix(np.array([[0.2, 0.2]]), 0.5), scores_from_matrix(np.empty((0, 2)), 0.5)]
    agg = aggregate(scores)
    assert agg["n"] == 4 and agg["failed"] == 1
    assert agg["cov_r_mean"] == pytest.approx((1 + 0.5 + 1 + 0) / 4) and agg["cov_r_median"] == 0.75
    assert agg["mat_r_mean"] == pytest.approx((0.1 + 0.5 + 0.2) / 3)  # the failed molecule's +inf left out
    assert agg["mat_r_median"] == pytest.approx(0.35)  # ... but counted in the median
    assert agg["mat_p_mean"] == pytest.approx(0.2) and agg["cov_p_median"] == 1.0  # precision: molecules that have it


def test_benchmark_generates_twice_the_references(tmp_path):
    refs = [conformers("CCO", 2, seed=1), conformers("OCC(F)C#N", 3, seed=2)]
    asked = []

    def method(mols, k):
        asked.append((len(mols), k))
        return etkdg_method(0)(mols, k)

    results = ensemble_benchmark(refs, {"etkdg": method})
    assert sorted(asked) == [(1, 4), (1, 6)]
    r = results["etkdg"]
    assert r["n"] == 2 and r["failed"] == 0 and 0 < r["cov_r_mean"] <= 1 and r["sec_per_conformer"] > 0
    assert "etkdg" in format_ensemble_table(results) and "COV-R" in format_ensemble_table(results)


def test_group_sdf_by_name_then_smiles(tmp_path):
    eth, nit = conformers("CCO", 2), conformers("OCC(F)C#N", 3)
    path = tmp_path / "ens.sdf"
    order = list(np.random.default_rng(0).permutation(nit.GetNumAtoms()))
    renumbered = Chem.RenumberAtoms(Chem.Mol(nit, confId=2), [int(i) for i in order])
    with Chem.SDWriter(str(path)) as w:
        for mol, cid, name in [(nit, 0, "nitrile"), (eth, 0, ""), (nit, 1, "nitrile"), (eth, 1, "")]:
            m = Chem.Mol(mol)
            m.SetProp("_Name", name)
            w.write(m, confId=cid)
        renumbered.SetProp("_Name", "nitrile")
        w.write(renumbered)
    with path.open("a") as f:
        f.write("broken\n\n\n  1  0  0  0  0  0  0  0  0  0999 V2000\nxx\nM  END\n$$$$\n")
    items = read_sdf_groups(path)
    assert [i.name for i in items] == ["nitrile", "CCO", "ens_6"]
    assert [i.mol.GetNumConformers() for i in items[:2]] == [3, 2] and "record 6" in items[2].error
    assert np.allclose(positions(items[0].mol), positions(nit), atol=1e-4)  # the third renumbered back
    assert ensemble_scores(items[0].mol, nit).mat_r == pytest.approx(0, abs=1e-4)
    written = write_sdf(eth, tmp_path / "eth.sdf", "ethanol")  # records ethanol_conf0, ethanol_conf1
    (back,) = read_sdf_groups(written)
    assert back.name == "ethanol" and back.mol.GetNumConformers() == 2
    assert len(read_sdf_groups(written, strip_suffix=False)) == 2
