"""The shipped QM9 model works out of the box: it loads without --run and, on held-out QM9 molecules given as an SDF,
refines ETKDG embeddings towards the DFT geometries and also builds sound conformers from noise alone."""
from __future__ import annotations

import pytest
from rdkit import Chem


@pytest.fixture(scope="module")
def shipped(load_shipped):
    return load_shipped("molecules")


@pytest.fixture(scope="module")
def test_refs(qm9_small, tmp_path_factory):
    """The test-split molecules (Index % 20 == 0, never trained on) of the first 300 QM9 rows with >= 4 heavy atoms."""
    path = tmp_path_factory.mktemp("refs") / "refs.sdf"
    heavy = qm9_small.heavy_atom_counts()
    writer = Chem.SDWriter(str(path))
    count = 0
    for m in qm9_small.split("test"):
        if heavy[m] >= 4:
            mol = qm9_small.mol(int(m))
            mol.SetProp("_Name", f"qm9_{int(qm9_small.arrays['index'][m])}")
            writer.write(mol)
            count += 1
    writer.close()
    assert count >= 10
    return path


def test_shipped_run_refines_etkdg(shipped, test_refs):
    assert shipped.config["sample"]["init"] == "etkdg"
    r = shipped.evaluate(50, reference=test_refs, k=3, seed=0)
    assert r["model_etkdg_started"] == 1.0 and r["model_stereo_ok"] == 1.0
    assert r["model_mean"] < r["etkdg_mean"] - 0.05, r
    assert r["model_coverage"] > r["etkdg_coverage"], r


def test_shipped_run_from_noise_alone(shipped, test_refs):
    r = shipped.evaluate(50, reference=test_refs, k=3, seed=0, init="noise", no_etkdg=True)
    assert r["model_etkdg_started"] == 0.0 and r["model_failed"] == 0
    assert r["model_coverage"] >= 0.75 and r["model_median"] < 0.45, r

