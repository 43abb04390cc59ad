"""Geometry validation of conformers on exact cases: good ETKDG+MMFF conformers pass; a stretched bond, an inverted
centre, a swapped double bond and a clash fail and are named; repair relaxes a stretched bond back; screen drops
what cannot be repaired and falls back to ETKDG when nothing is left; real QM9 DFT geometries pass."""
from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from polydiff.domains.molecules.chem import parse_smiles
from polydiff.domains.molecules.io import with_conformers
from polydiff.domains.molecules.validation import (aligned_rmsd, check_conformers, reference, repair, screen,
                                                   validate)

GOOD = {"ethanol": "CCO", "benzene": "c1ccccc1", "lactonitrile": "C[C@H](O)C#N"}


def mmff_conformers(smiles: str, k: int = 1, seed: int = 7) -> Chem.Mol:
    """K ETKDG conformers relaxed with MMFF94."""
    mol = parse_smiles(smiles)
    AllChem.EmbedMultipleConfs(mol, k, randomSeed=seed)
    AllChem.MMFFOptimizeMoleculeConfs(mol, numThreads=1)
    return mol


def stretched(mol: Chem.Mol, i: int, j: int, d: float) -> Chem.Mol:
    """A copy whose acyclic bond i-j is longer by d: the whole side of j moves along the bond, nothing else changes."""
    pos = mol.GetConformer().GetPositions()
    side, todo = {j}, [j]
    while todo:
        for n in mol.GetAtomWithIdx(todo.pop()).GetNeighbors():
            if n.GetIdx() != i and n.GetIdx() not in side:
                side.add(n.GetIdx())
                todo.append(n.GetIdx())
    u = (pos[j] - pos[i]) / np.linalg.norm(pos[j] - pos[i])
    pos[sorted(side)] += d * u
    return with_conformers(mol, pos[None])


@pytest.mark.parametrize("smiles", GOOD.values(), ids=GOOD.keys())
def test_mmff_conformers_pass(smiles):
    mol = mmff_conformers(smiles, k=3)
    for source in ("geometry", "parameters"):
        reports = check_conformers(mol, ref=reference(mol, source=source))
        assert [r.ok for r in reports] == [True] * 3, [str(p) for r in reports for p in r.problems]


@pytest.mark.parametrize("smiles,bond", [("CCO", (1, 2)), ("C[C@H](O)C#N", (1, 3))], ids=["C-O", "C-CN"])
def test_stretched_bond_fails_naming_it_and_repair_fixes_it(smiles, bond):
    mol = mmff_conformers(smiles)
    ref = reference(mol)
    r0 = np.linalg.norm(np.subtract(*mol.GetConformer().GetPositions()[list(bond)]))
    bad = stretched(mol, *bond, 0.6)
    report = validate(bad, ref=ref)
    assert not report.ok and [(p.kind, p.atoms) for p in report.problems] == [("bond", bond)]
    assert report.problems[0].value == pytest.approx(r0 + 0.6)
    assert f"bond {bond[0]}-{bond[1]}" in str(report.problems[0])
    fixed = repair(bad, 0, max_iters=200, ref=ref)
    assert fixed.ok and fixed.relaxed and fixed.force_field == "mmff"
    assert 0.05 < fixed.rmsd_moved < 0.6
    after = bad.GetConformer().GetPositions()
    assert abs(np.linalg.norm(np.subtract(*after[list(bond)])) - r0) < 0.05  # repaired in place
    assert fixed.props()["polydiff_relaxed"] == "1" and fixed.props()["polydiff_valid"] == "1"


def test_repair_moves_only_hydrogens_when_that_suffices():
    mol = mmff_conformers("CCO")
    pos = mol.GetConformer().GetPositions()
    u = (pos[2] - pos[1]) / np.linalg.norm(pos[2] - pos[1])
    pos[8] = pos[2] + 0.97 * u  # the hydroxyl H on the C-O axis: C-O-H at 180 degrees
    bent = with_conformers(mol, pos[None])
    report = validate(bent)
    assert [(p.kind, p.atoms) for p in report.problems] == [("angle", (1, 2, 8))] and report.problems[0].value > 179
    fixed = repair(bent, 0)
    assert fixed.ok and fixed.relaxed and fixed.rmsd_moved == 0.0
    assert np.array_equal(bent.GetConformer().GetPositions()[:3], pos[:3])


def test_mirror_image_fails_stereo_at_the_centre():
    mol = mmff_conformers("C[C@H](O)C#N")
    mirror = with_conformers(mol, -mol.GetConformer().GetPositions()[None])
    report = validate(mirror)
    assert [(p.kind, p.atoms) for p in report.problems] == [("stereo", (1,))]
    assert report.problems[0].value < -0.5 and "inverted" in str(report.problems[0])
    unspecified = Chem.Mol(mol)
    Chem.RemoveStereochemistry(unspecified)
    assert validate(with_conformers(unspecified, -mol.GetConformer().GetPositions()[None])).ok  # none asked


def test_swapped_double_bond_fails_stereo():
    trans, cis = mmff_conformers("C/C=C/C"), mmff_conformers("C/C=C\\C")
    report = validate(with_conformers(trans, cis.GetConformer().GetPositions()[None]), ref=reference(trans))
    assert ("stereo", (1, 2)) in [(p.kind, p.atoms) for p in report.problems]
    assert "cis/trans swapped" in report.problems[-1].message


def test_two_atoms_half_an_angstrom_apart_clash():
    a = mmff_conformers("CCO")
    pa = a.GetConformer().GetPositions()
    out = (pa[0] - pa.mean(0)) / np.linalg.norm(pa[0] - pa.mean(0))
    pb = pa - pa[2] + pa[0] + 0.5 * out  # a second ethanol whose O sits 0.5 A from the first one's C0
    pair = with_conformers(Chem.CombineMols(a, a), np.concatenate([pa, pb])[None])
    report = validate(pair)
    assert report.kinds() == {"clash"}
    (hit,) = [p for p in report.problems if p.atoms == (0, a.GetNumAtoms() + 2)]
    assert hit.value == pytest.approx(0.5) and hit.expected == pytest.approx(0.65 * (1.7 + 1.55))


def test_aligned_rmsd_is_rigid_motion_invariant():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 3))
    q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    assert aligned_rmsd(a, a @ q.T + 3.0) < 1e-9
    b = a.copy()
    b[0, 0] += 1.0
    assert 0 < aligned_rmsd(a, b) <= 1 / np.sqrt(7) + 1e-12


def test_screen_repairs_drops_and_falls_back():
    mol = mmff_conformers("C[C@H](O)C#N", k=2)
    pos = np.stack([c.GetPositions() for c in mol.GetConformers()])
    long = stretched(mol, 1, 3, 0.6).GetConformer().GetPositions()
    confs = with_conformers(mol, np.stack([pos[0], long, -pos[1]]))
    confs.SetProp("_Name", "lacto")
    out = screen(confs)
    assert (out.n_relaxed, out.n_dropped, out.fallback, out.warning) == (1, 1, False, None)
    assert out.mol.GetNumConformers() == 2 and [r.relaxed for r in out.reports] == [False, True]
    assert [c.GetId() for c in out.mol.GetConformers()] == [r.conf_id for r in out.reports] == [0, 1]
    assert np.allclose(out.mol.GetConformer(0).GetPositions(), pos[0])
    assert confs.GetNumConformers() == 3 and np.allclose(confs.GetConformer(1).GetPositions(), long)  # untouched
    props = out.conf_props()
    assert props[1]["polydiff_relaxed"] == "1" and props[0]["polydiff_source"] == "model"
    mirrored = screen(with_conformers(confs, -pos))
    assert mirrored.fallback and mirrored.n_dropped == 2 and mirrored.mol.GetNumConformers() == 2
    assert "ETKDGv3" in mirrored.warning and all(r.kinds() <= {"angle"} for r in mirrored.reports)
    assert mirrored.conf_props()[0]["polydiff_source"] == "etkdg_fallback"
    kept = screen(with_conformers(confs, -pos), fallback=False)
    assert kept.mol.GetNumConformers() == 0 and kept.n_dropped == 2 and not kept.fallback


def test_qm9_dft_geometries_pass(qm9_small):
    heavy = qm9_small.heavy_atom_counts()
    mols = [qm9_small.mol(int(m)) for m in np.nonzero(heavy >= 5)[0][:25]]
    failed = {Chem.MolToSmiles(m): [str(p) for p in validate(m).problems] for m in mols if not validate(m).ok}
    assert not failed
