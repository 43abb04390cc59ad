"""End to end through the CLI: ``polydiff molecules train`` (tiny config on 300 QM9 rows), ``sample``, ``evaluate``."""
from __future__ import annotations

import json

from rdkit import Chem
from typer.testing import CliRunner

TINY = """
[data]
max_rows = 300
subsample = 1
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


def test_train_sample_evaluate(tmp_path, qm9_cache, monkeypatch):
    from polydiff.cli.app import build_app

    monkeypatch.setenv("POLYDIFF_CACHE", str(qm9_cache))
    (tmp_path / "tiny.toml").write_text(TINY)
    app, runner, run = build_app(), CliRunner(), tmp_path / "run"
    res = runner.invoke(app, ["molecules", "train", "--out", str(run), "--config", str(tmp_path / "tiny.toml"),
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert (run / "config.json").is_file()

    smi = tmp_path / "in.smi"
    smi.write_text("CCO ethanol\nC1CC broken\nC[C@H](O)C#N lactonitrile\nCCCl chloro\n")
    res = runner.invoke(app, ["molecules", "sample", "--input", str(smi), "--run", str(run), "-n", "3", "--steps", "2",
                              "--out", str(tmp_path / "s"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "broken" in res.output and "Cl not supported" in res.output
    confs = list(Chem.SDMolSupplier(str(tmp_path / "s" / "lactonitrile.sdf"), removeHs=False))
    assert len(confs) == 3 and confs[0].GetNumAtoms() == 10
    assert (tmp_path / "s" / "ethanol.png").is_file() and not (tmp_path / "s" / "broken.sdf").exists()
    info = json.loads((tmp_path / "s" / "samples.json").read_text())
    assert set(info["errors"]) == {"broken", "chloro"} and info["stereo_ok"]["lactonitrile"] == 1.0

    res = runner.invoke(app, ["molecules", "sample", "--smiles", "CCO", "--smiles", "c1ccccc1O", "--input",
                              str(tmp_path / "missing.smi"), "--input", str(tmp_path / "notes.csv"), "--run", str(run),
                              "-k", "2", "--steps", "2", "--out", str(tmp_path / "t"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "missing.smi does not exist" in res.output and "unknown file type" in res.output
    assert len(list(Chem.SDMolSupplier(str(tmp_path / "t" / "c1ccccc1O.sdf"), removeHs=False))) == 2
    assert (tmp_path / "t" / "CCO.sdf").is_file()
    res = runner.invoke(app, ["molecules", "sample", "--smiles", "CCO", "--smiles", "CC(=O)N", "--run", str(run),
                              "-k", "2", "--steps", "2", "--init", "etkdg", "--init-sigma", "0.3", "--out", str(tmp_path / "e"),
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "e" / "samples.json").read_text())
    assert info["init"] == "etkdg" and info["etkdg_started"] == 2
    res = runner.invoke(app, ["molecules", "sample", "--smiles", "CCO", "--run", str(run), "--init", "rdkit",
                              "--device", "cpu"])
    assert res.exit_code == 2 and "'rdkit' is not one of noise, etkdg" in res.output
    res = runner.invoke(app, ["molecules", "sample", "--smiles", "C1CC", "--run", str(run), "--device", "cpu"])
    assert res.exit_code == 2 and "none of the inputs is a usable molecule" in res.output

    res = runner.invoke(app, ["molecules", "evaluate", "--run", str(run), "--n", "2", "--k", "2", "--steps", "2",
                              "--min-heavy", "4", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    metrics = dict(line.split(": ") for line in res.output.strip().splitlines() if ": " in line)
    assert int(metrics["n_molecules"]) == 2 and float(metrics["etkdg_median"]) < 1.0
    assert float(metrics["model_median"]) > 0
