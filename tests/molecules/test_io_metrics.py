"""File I/O (.smi, SDF in/out, PNG), RMSD metric and the ETKDG baseline on real QM9 molecules, sampling helpers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from polydiff.domains.molecules.chem import featurize, parse_smiles
from polydiff.domains.molecules.io import read_inputs, read_sdf, read_smi, with_conformers, write_sdf
from polydiff.domains.molecules.metrics import (benchmark, etkdg_conformers, etkdg_method, format_table, heavy_rmsd,
                                                min_rmsd, summarize)
from polydiff.domains.molecules.preview import conformers_png
from polydiff.core.schedules import karras_sigmas
from polydiff.domains.molecules.model import ConformerDenoiser
from polydiff.domains.molecules.network import ConformerNet
from polydiff.domains.molecules.sampling import etkdg_starts, fix_mirror, sample_conformers, stereo_ok


def test_smi_file_with_bad_lines(tmp_path):
    path = tmp_path / "in.smi"
    path.write_text("CCO ethanol\n# comment\n\nC1CC broken\nCCCl chloro\n[H][H] hydrogen\nC[C@H](N)C(=O)O ala\n")
    items = read_smi(path)
    assert [i.name for i in items] == ["ethanol", "broken", "chloro", "hydrogen", "ala"]
    assert [i.mol is not None for i in items] == [True, False, True, False, True]  # elements: the run's guard
    errors = [i.error for i in items if i.error]
    assert "in.smi:4: invalid SMILES" in errors[0] and "no heavy atoms" in errors[1]
    assert all("\n" not in e for e in errors)
    assert items[0].mol.GetNumAtoms() == 9  # hydrogens added


def test_sdf_input_ignores_coordinates_and_reference_needs_3d(tmp_path):
    mol = parse_smiles("CC(=O)N")
    AllChem.EmbedMolecule(mol, randomSeed=1)
    flat = Chem.Mol(mol)
    flat.RemoveAllConformers()  # written with all-zero coordinates
    path = tmp_path / "in.sdf"
    with Chem.SDWriter(str(path)) as w:
        mol.SetProp("_Name", "acetamide")
        w.write(mol)
        flat.SetProp("_Name", "nocoords")
        w.write(flat)
    items = read_sdf(path)
    assert [i.name for i in items] == ["acetamide", "nocoords"] and all(i.mol.GetNumConformers() == 0 for i in items)
    refs = read_sdf(path, need_3d=True)
    assert refs[0].mol is not None and refs[0].mol.GetNumConformers() == 1
    assert refs[1].mol is None and "no 3D coordinates" in refs[1].error
    mixed = read_inputs(["CCO", str(path), str(tmp_path / "missing.sdf"), "CCO"])
    assert [i.name for i in mixed][-1] == "CCO_2" and "does not exist" in mixed[3].error


def test_write_sdf_k_conformers_and_png(tmp_path):
    mol = parse_smiles("OCC(F)C#N")
    AllChem.EmbedMultipleConfs(mol, 3, randomSeed=3)
    pos = np.stack([c.GetPositions() for c in mol.GetConformers()])
    out = with_conformers(mol, pos)
    path = write_sdf(out, tmp_path / "m.sdf", "m")
    back = [m for m in Chem.SDMolSupplier(str(path), removeHs=False)]
    assert len(back) == 3 and all(m.GetNumAtoms() == mol.GetNumAtoms() for m in back)
    assert np.allclose(back[2].GetConformer().GetPositions(), pos[2], atol=1e-4)
    png = conformers_png(out, tmp_path / "m.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    with pytest.raises(ValueError, match="shape"):
        with_conformers(mol, pos[:, :3])


def test_rmsd_symmetry_and_closed_form():
    mol = parse_smiles("c1ccccc1C(=O)O")
    AllChem.EmbedMolecule(mol, randomSeed=5)
    pos = mol.GetConformer().GetPositions()
    R = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0].numpy()
    moved = with_conformers(mol, (pos @ R.T + np.array([1.0, -2.0, 3.0]))[None])
    assert heavy_rmsd(moved, mol) < 1e-4
    # renumbering the atoms (a symmetry-aware metric must not care)
    order = list(np.random.default_rng(0).permutation(mol.GetNumAtoms()))
    assert heavy_rmsd(Chem.RenumberAtoms(moved, [int(i) for i in order]), mol) < 1e-4
    # one heavy atom displaced by d: after optimal alignment 0 < RMSD <= d / sqrt(n_heavy)
    d, n_heavy = 0.9, mol.GetNumHeavyAtoms()
    shifted = pos.copy()
    shifted[0] += np.array([0.0, 0.0, d])
    r = heavy_rmsd(with_conformers(mol, shifted[None]), mol)
    assert 0.05 < r <= d / math.sqrt(n_heavy) + 1e-9


def test_summarize_exact():
    s = summarize([0.1, 0.4, 0.6, math.inf])
    assert s["n"] == 4 and s["median"] == 0.5 and s["coverage"] == 0.5 and s["failed"] == 1
    assert abs(s["mean"] - (1.1 / 3)) < 1e-12


def test_etkdg_baseline_on_real_qm9(qm9_small):
    heavy = qm9_small.heavy_atom_counts()
    refs = [qm9_small.mol(m) for m in np.nonzero(heavy >= 6)[0][:4]]
    assert len(refs) == 4
    results = benchmark(refs, {"etkdg": etkdg_method(0)}, k=3)
    r = results["etkdg"]
    assert r["n"] == 4 and r["failed"] == 0 and 0 <= r["median"] < 1.5 and r["sec_per_conformer"] > 0
    assert "etkdg" in format_table(results)
    confs = etkdg_conformers(refs[0], 3, seed=0)
    assert confs.GetNumConformers() == 3 and min_rmsd(confs, refs[0]) == pytest.approx(
        min(heavy_rmsd(confs, refs[0], c.GetId()) for c in confs.GetConformers()))


def test_mirror_fix_restores_handedness():
    mol = parse_smiles("C[C@H](O)[C@@H](F)N")
    AllChem.EmbedMolecule(mol, randomSeed=2)
    graph = featurize(mol)
    pos = mol.GetConformer().GetPositions()
    assert stereo_ok(pos, graph)
    inverted = -pos
    assert not stereo_ok(inverted, graph)
    fixed, flipped = fix_mirror(inverted, graph)
    assert flipped and stereo_ok(fixed, graph)
    check = with_conformers(mol, fixed[None])
    Chem.AssignStereochemistryFrom3D(check)
    assert Chem.MolToSmiles(Chem.RemoveHs(check)) == Chem.MolToSmiles(Chem.RemoveHs(mol))


def test_etkdg_start_at_a_tiny_noise_level_keeps_the_embeddings():
    """SDEdit from ETKDG: starting at sigma 1e-3 the denoiser (c_skip ~ 1, c_out ~ sigma) returns the starts."""
    torch.manual_seed(0)
    den = ConformerDenoiser(ConformerNet(scalars=8, vectors=2, layers=1, lmax=1, num_rbf=4)).eval()
    mols = [parse_smiles("C[C@H](O)C#N"), parse_smiles("c1ccccc1O")]
    starts = etkdg_starts(mols, 3, seed=1)
    assert [s.shape for s in starts] == [(3, m.GetNumAtoms(), 3) for m in mols]
    assert np.abs(starts[0][0] - starts[0][1]).max() > 0.1  # K different embeddings
    graphs = [featurize(m) for m in mols]
    g = torch.Generator().manual_seed(0)
    tiny = karras_sigmas(3, 1e-4, 1e-3)
    out = sample_conformers(den, graphs, 3, tiny, "heun", generator=g, init=starts, mirror_fix=False)
    for got, start in zip(out, starts):
        assert np.abs(got - start).max() < 0.02
    far = sample_conformers(den, graphs, 3, karras_sigmas(3, 1e-3, 5.0), "heun", generator=g, init=starts)
    assert np.abs(far[1] - starts[1]).max() > 0.5
    with pytest.raises(ValueError, match="one \\[k, n_atoms, 3\\] array"):
        sample_conformers(den, graphs, 2, tiny, init=starts)


def test_smi_undecodable_lines_are_named_and_the_rest_goes_on(tmp_path):
    path = tmp_path / "in.smi"
    path.write_bytes(b"\xef\xbb\xbfCCO ethanol\r\nC\xffC bad\r\nCCN amine\n\x00\nc1ccccc1\nCCO \xe9thanol\nOCC#N\n")
    items = read_smi(path)
    assert [i.name for i in items] == ["ethanol", "in_2", "amine", "in_4", "in_5", "in_6", "in_7"]
    assert [i.mol is not None for i in items] == [True, False, True, False, True, False, True]
    assert items[1].error == "in.smi:2: line is not UTF-8 text (byte 0xff at column 2); save the file as UTF-8"
    assert items[3].error.startswith("in.smi:4: invalid SMILES") and items[5].error.startswith("in.smi:6: line is not")
    assert [i.name for i in read_inputs([str(path), "CC"])][-1] == "CC"


def _bad_valence_block() -> str:
    mol = Chem.MolFromSmiles("CC(C)(C)(C)(C)C", sanitize=False)
    mol.UpdatePropertyCache(strict=False)
    return Chem.MolToMolBlock(mol, kekulize=False)


def test_unreadable_sdf_records_are_named_and_skipped(tmp_path):
    good = parse_smiles("CC(=O)N")
    AllChem.EmbedMolecule(good, randomSeed=1)
    good.SetProp("_Name", "acetamide")
    block = Chem.MolToMolBlock(good).encode() + b"$$$$\n"
    path = tmp_path / "in.sdf"
    path.write_bytes(block + b"acet\xe9mide" + block[len("acetamide"):] + _bad_valence_block().encode() + b"$$$$\n"
                     + b"junk\n\n\n  2  1  0  0\nxx\n$$$$\n" + block)
    items = read_sdf(path)
    assert [i.name for i in items] == ["acetamide", "in_2", "in_3", "in_4", "acetamide"]
    assert [i.mol is not None for i in items] == [True, False, False, False, True]
    assert items[1].error == "in.sdf record 2: unreadable SDF record: not UTF-8 text (byte 0xe9)"
    assert items[2].error.startswith("in.sdf record 3: unreadable SDF record:") and "valence" in items[2].error.lower()
    assert items[3].error == "in.sdf record 4: unreadable SDF record: not a valid MDL mol block"
    refs = read_sdf(path, need_3d=True)
    assert [i.mol is not None for i in refs] == [True, False, False, False, True]


def test_write_sdf_conformer_properties(tmp_path):
    mol = parse_smiles("CCO")
    AllChem.EmbedMultipleConfs(mol, 2, randomSeed=1)
    path = write_sdf(mol, tmp_path / "e.sdf", "e", conf_props=[{"polydiff_valid": "1"}, {"polydiff_valid": "0"}])
    assert [m.GetProp("polydiff_valid") for m in Chem.SDMolSupplier(str(path), removeHs=False)] == ["1", "0"]
    with pytest.raises(ValueError, match="conf_props"):
        write_sdf(mol, tmp_path / "f.sdf", conf_props=[{}])


def test_io_ensembles_validation_import_without_rdkit():
    import subprocess
    import sys

    code = ("import sys, polydiff.domains.molecules.io, polydiff.domains.molecules.ensembles, "
            "polydiff.domains.molecules.validation; print('rdkit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
