"""``evaluate --reference`` through the shipped run: an SDF of several conformers per molecule gives COV/MAT recall
and precision next to ETKDGv3 with the same K; on references ETKDG itself made (seed 0, which evaluate's baseline
uses), ETKDG's recall is exact: COV-R 100% and MAT-R 0. Single-conformer references keep the min-RMSD report."""
from __future__ import annotations

import pytest
from rdkit import Chem

from polydiff.domains.molecules.chem import parse_smiles
from polydiff.domains.molecules.metrics import etkdg_conformers

ACHIRAL = {"ethanol": "CCO", "butanol": "CCCCO", "methoxyethanol": "OCCOC"}  # no stereo: ETKDG's draws repeat


@pytest.fixture(scope="module")
def shipped(load_shipped):
    return load_shipped("molecules")


def etkdg_reference(path, n_confs: int = 2):
    """``n_confs`` ETKDGv3 conformers (seed 0) of each molecule, one record each, named after the molecule."""
    with Chem.SDWriter(str(path)) as w:
        for name, smiles in ACHIRAL.items():
            mol = etkdg_conformers(parse_smiles(smiles), n_confs, seed=0)
            mol.SetProp("_Name", name)
            for conf in mol.GetConformers():
                w.write(mol, confId=conf.GetId())
    return path


@pytest.mark.parametrize("k_factor", [1, 2])
def test_ensemble_reference_gives_cov_mat_and_etkdg_reproduces_its_own(shipped, tmp_path, k_factor):
    ref = etkdg_reference(tmp_path / "ens.sdf")
    r = shipped.evaluate(reference=ref, k_factor=k_factor, steps=2, seed=0)
    assert r["n_molecules"] == 3 and r["n_reference_conformers"] == 6
    assert r["etkdg_cov_r_mean"] == 1.0 and r["etkdg_mat_r_mean"] == pytest.approx(0, abs=1e-3)
    if k_factor == 1:  # the same K conformers: every one matches a reference, both ways
        assert r["etkdg_cov_p_mean"] == 1.0 and r["etkdg_mat_p_median"] == pytest.approx(0, abs=1e-3)
    for key in ("cov_r", "mat_r", "cov_p", "mat_p"):
        assert f"model_{key}_mean" in r and f"model_{key}_median" in r
    assert r["model_failed"] == 0 and 0 <= r["model_cov_r_mean"] <= 1 and r["model_mat_r_mean"] > 0
    assert "model_median" not in r and r["model_refused"] == 0


def test_threshold_option_and_single_conformer_references(shipped, tmp_path):
    ref = etkdg_reference(tmp_path / "ens.sdf")
    strict = shipped.evaluate(reference=ref, threshold=1e-6, steps=2, seed=0, no_etkdg=True)
    assert strict["model_cov_r_mean"] == 0.0 and "etkdg_cov_r_mean" not in strict
    single = shipped.evaluate(reference=etkdg_reference(tmp_path / "one.sdf", 1), k=2, steps=2, seed=0)
    assert single["etkdg_median"] == pytest.approx(0, abs=1e-3) and single["etkdg_coverage"] == 1.0
    assert "model_median" in single and "model_cov_r_mean" not in single


def test_etkdg_baseline_draws_distinct_conformers_for_seed_zero():
    from rdkit.Chem import rdMolAlign

    heavy = Chem.RemoveHs(etkdg_conformers(parse_smiles("CCCCO"), 3, seed=0))
    rmsd = [rdMolAlign.GetBestRMS(Chem.Mol(heavy, confId=c), Chem.Mol(heavy, confId=0)) for c in (1, 2)]
    assert min(rmsd) > 0.1, rmsd  # RDKit's own seed 0 gives one conformer three times
