"""Training on the user's own conformers: an SDF with S, Cl and Br (ETKDG + MMFF, built here) trains through
``train --data``, its vocabulary and facts land in the run's fitted section, bad records are skipped and named, the
run samples its own elements and refuses others in one line, and evaluates against ensembles; splits keep molecules
(and scaffolds) together."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from rdkit import Chem
from rdkit.Chem import AllChem
from typer.testing import CliRunner

from polydiff.domains.molecules.splits import hash_split, scaffold, scaffold_split, split_molecules
from polydiff.domains.molecules.userdata import read_set
from polydiff.domains.molecules.vocab import QM9, Vocabulary, fit_vocabulary

MOLECULES = ["CCS", "ClCCO", "BrCC(=O)O", "CSC", "c1ccsc1", "Clc1ccccc1", "Brc1ccccc1", "CC(Cl)C", "OCCBr",
             "CSCC(=O)N", "Oc1ccccc1Cl", "CC(=O)SC", "ClC(Cl)Cl", "Brc1ccncc1", "CCCS", "ClCC#N"]
TINY = """
[data]
fractions = [0.6, 0.2, 0.2]
[network]
scalars = 8
vectors = 2
layers = 1
lmax = 1
num_rbf = 4
[train]
steps = 2
batch_size = 8
log_every = 1
ckpt_every = 2
bf16 = false
progress = false
"""


def write_set(path, smiles=MOLECULES, k: int = 3) -> int:
    """K ETKDG + MMFF conformers of each molecule as records named after it, one unreadable record and one record
    without 3D coordinates; returns the number of records."""
    n = 0
    with Chem.SDWriter(str(path)) as w:
        for i, s in enumerate(smiles):
            mol = Chem.AddHs(Chem.MolFromSmiles(s))
            AllChem.EmbedMultipleConfs(mol, k, randomSeed=i)
            AllChem.MMFFOptimizeMoleculeConfs(mol, numThreads=1)
            mol.SetProp("_Name", f"mol{i}")
            for conf in mol.GetConformers():
                w.write(mol, confId=conf.GetId())
                n += 1
        flat = Chem.AddHs(Chem.MolFromSmiles("CCBr"))
        flat.SetProp("_Name", "flat")
        w.write(flat)
    with path.open("a") as f:
        f.write("broken\n\n\n  1  0  0  0  0  0  0  0  0  0999 V2000\nxx\nM  END\n$$$$\n")
    return n + 2


@pytest.fixture(scope="module")
def conformer_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("userdata") / "halo.sdf"
    return path, write_set(path)


def test_read_set_groups_ensembles_and_names_bad_records(conformer_file, capsys):
    path, records = conformer_file
    s = read_set(path)
    assert len(s.ensembles) == len(MOLECULES) and all(e.mol.GetNumConformers() == 3 for e in s.ensembles)
    assert s.records == records and len(s.skipped) == 2
    assert any("halo.sdf record 49" in line and "no 3D coordinates" in line for line in s.skipped)
    assert any("halo.sdf record 50" in line and "unreadable" in line for line in s.skipped)
    assert s.ensembles[0].source == "halo.sdf record 1" and s.ensembles[0].key == "CCS"
    assert fit_vocabulary(e.mol for e in s.ensembles).symbols == ["H", "C", "N", "O", "S", "Cl", "Br"]


def test_train_sample_evaluate_on_own_conformers(conformer_file, tmp_path):
    from polydiff.cli.app import build_app

    path, _ = conformer_file
    (tmp_path / "tiny.toml").write_text(TINY)
    app, runner, run = build_app(), CliRunner(), tmp_path / "run"
    res = runner.invoke(app, ["molecules", "train", "--data", str(path), "--out", str(run), "--config",
                              str(tmp_path / "tiny.toml"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["source"] == str(path.resolve()) and cfg["data"]["split"] == "random"
    fitted = cfg["fitted"]
    assert fitted["elements"] == ["H", "C", "N", "O", "S", "Cl", "Br"] and fitted["charges"] == [0]
    keys = [Chem.MolToSmiles(Chem.MolFromSmiles(s), isomericSmiles=False) for s in MOLECULES]
    train = [s for s, name in zip(MOLECULES, hash_split(keys, [0.6, 0.2, 0.2])) if name == "train"]
    rings = {len(r) for s in train for r in Chem.GetSymmSSSR(Chem.MolFromSmiles(s))}
    assert fitted["ring_sizes"] == sorted(rings) and len(train) < len(MOLECULES)  # facts of the training split only
    assert fitted["heavy_atoms"] == [min(Chem.MolFromSmiles(s).GetNumHeavyAtoms() for s in train),
                                     max(Chem.MolFromSmiles(s).GetNumHeavyAtoms() for s in train)]
    assert fitted["data"]["skipped"] == 2 and "record" in fitted["data"]["skipped_first"][0]
    assert sum(fitted["data"]["split_molecules"].values()) == len(MOLECULES)

    res = runner.invoke(app, ["molecules", "sample", "--smiles", "ClCCS chloroethanethiol", "--smiles",
                              "CCP ethylphosphine", "--run", str(run), "-k", "2", "--steps", "2", "--out",
                              str(tmp_path / "s"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "skipped ethylphosphine: element(s) P not supported: this run was trained on H C N O S Cl Br" in res.output
    records = list(Chem.SDMolSupplier(str(tmp_path / "s" / "chloroethanethiol.sdf"), removeHs=False))
    assert len(records) >= 1 and {a.GetSymbol() for a in records[0].GetAtoms()} == {"C", "Cl", "S", "H"}
    assert records[0].HasProp("polydiff_valid")

    res = runner.invoke(app, ["molecules", "evaluate", "--run", str(run), "--reference", str(path), "-n", "2",
                              "--k-factor", "1", "--steps", "2", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    metrics = dict(line.split(": ", 1) for line in res.output.strip().splitlines() if ": " in line)
    assert int(metrics["n_molecules"]) == 2 and int(metrics["n_reference_conformers"]) == 6
    assert float(metrics["etkdg_cov_r_mean"]) > 0 and "model_mat_p_median" in metrics


def test_data_option_refuses_what_it_cannot_read(tmp_path, monkeypatch):
    from polydiff.cli.app import build_app

    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_text("CCO\n")
    Path("empty").mkdir()
    runner, app = CliRunner(), build_app()
    for value, message in [("notes.txt", "neither qm9, an .sdf file nor a folder"), ("empty", "holds no .sdf files")]:
        res = runner.invoke(app, ["molecules", "train", "--data", value, "--out", "r"])
        assert res.exit_code == 2 and message in res.output, res.output
        assert not Path("r").exists()


def test_data_section_checks_split_and_fractions():
    from polydiff.plugins.errors import ConfigError
    from polydiff.plugins.manager import get_manager
    from polydiff.plugins.runs import resolve_config

    domain = get_manager().domain("molecules")
    assert resolve_config(domain)["data"]["source"] == "qm9"
    with pytest.raises(ConfigError, match="QM9 keeps its own split"):
        resolve_config(domain, override={"data": {"split": "scaffold"}})
    with pytest.raises(ConfigError, match="summing to 1"):
        resolve_config(domain, override={"data": {"source": "x.sdf", "fractions": [0.5, 0.1, 0.1]}})
    with pytest.raises(ConfigError, match="split must be one of random, scaffold"):
        resolve_config(domain, override={"data": {"source": "x.sdf", "split": "time"}})


def test_hash_split_is_stable_and_proportional():
    smiles = [f"C{'C' * i}O" for i in range(400)]
    split = hash_split(smiles, [0.8, 0.1, 0.1])
    assert split == hash_split(smiles, [0.8, 0.1, 0.1])
    assert hash_split(smiles[:100], [0.8, 0.1, 0.1]) == split[:100]  # adding molecules moves none
    counts = {s: split.count(s) for s in ("train", "val", "test")}
    assert 280 < counts["train"] < 360 and counts["val"] > 20 and counts["test"] > 20


def test_scaffold_split_keeps_scaffolds_together():
    smiles = ["c1ccccc1C", "c1ccccc1O", "c1ccccc1N", "c1ccccc1CC", "C1CCCCC1O", "C1CCCCC1N", "c1ccncc1C", "CCO", "CCN",
              "c1ccsc1C"]
    split = scaffold_split(smiles, [0.6, 0.2, 0.2])
    groups: dict[str, set[str]] = {}
    for s, name in zip(smiles, split):
        groups.setdefault(scaffold(s), set()).add(name)
    assert all(len(names) == 1 for names in groups.values())
    assert split[:4] == ["train"] * 4 and "test" in split and "val" in split
    assert split_molecules(smiles, "scaffold", [0.6, 0.2, 0.2]) == split
    with pytest.raises(ValueError, match="unknown split"):
        split_molecules(smiles, "time", [0.6, 0.2, 0.2])


def test_vocabulary_round_trip_and_qm9_charges_as_before():
    v = Vocabulary.from_dict({"elements": ["H", "C", "S", "Br"], "charges": [-1, 0, 1]})
    assert v.elements == (1, 6, 16, 35) and Vocabulary.from_dict(v.as_dict()) == v
    assert v.sizes()[:2] == (4, 3)
    assert [QM9.charge_index(c) for c in (-2, -1, 0, 1, 2)] == [0, 0, 1, 2, 2]  # the clip QM9 runs always used
    with pytest.raises(KeyError):
        QM9.element_index(16)


def test_druglike_preset_resolves_with_a_conformer_file(conformer_file):
    from polydiff.plugins.manager import get_manager
    from polydiff.plugins.runs import resolve_config

    path, _ = conformer_file
    cfg = resolve_config(get_manager().domain("molecules"), "druglike", {"data": {"source": str(path)}})
    assert cfg["diffusion"]["sigma_data"] == 2.5 and cfg["network"]["rbf_max"] == 10.0


def test_hash_split_is_independent_of_a_selection_by_plain_sha1():
    import hashlib

    smiles = sorted((f"C{'C' * i}N" for i in range(2000)), key=lambda s: hashlib.sha1(s.encode()).hexdigest())[:60]
    assert {"val", "test"} <= set(hash_split(smiles, [0.8, 0.1, 0.1]))
