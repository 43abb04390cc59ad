"""The sample rule on the shipped QM9 model: no conformer with broken geometry is written silently (imatinib and a
20-membered carbocycle, far outside QM9, come out repaired, each record saying so), a conformer that cannot be
repaired is dropped and the molecule falls back to ETKDG with a warning naming it, an element the run was not
trained on is refused in one line, and the shipped model still samples exactly as before vocabularies, validation
and PyG batches came in."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem

from polydiff.domains.molecules.screening import screen_molecules
from polydiff.domains.molecules.validation import check_conformers
from polydiff.plugins.outputs import write_samples

IMATINIB = "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1 imatinib"
MACROCYCLE = "C1CCCCCCCCCCCCCCCCCCC1 cycloicosane"
SHIPPED_SAMPLES = Path(__file__).parent / "data" / "shipped_samples.json"


@pytest.fixture(scope="module")
def shipped(load_shipped):
    return load_shipped("molecules")


@pytest.fixture(scope="module")
def written(shipped, tmp_path_factory):
    """Two conformers each of imatinib and the macrocycle, sampled and written as ``sample`` does."""
    samples = shipped.sample(2, smiles=[IMATINIB, MACROCYCLE], seed=0)
    out = tmp_path_factory.mktemp("ood")
    write_samples(shipped.domain, samples, out)
    return samples, out


def test_out_of_distribution_molecules_are_sampled_then_repaired(written):
    samples, out = written
    info = json.loads((out / "samples.json").read_text())
    assert info["validated"] and info["errors"] == {}
    assert "37 heavy atoms (trained on 1-9)" in info["out_of_distribution"]["imatinib"]
    assert any("ring size 20" in r for r in info["out_of_distribution"]["cycloicosane"])
    for name in ("imatinib", "cycloicosane"):
        records = list(Chem.SDMolSupplier(str(out / f"{name}.sdf"), removeHs=False))
        expected = 2 if name in info["fallbacks"] else 2 - info["dropped"].get(name, 0)
        assert len(records) == expected, name
        for rec in records:
            props = rec.GetPropsAsDict()
            fallback = props["polydiff_source"] == "etkdg_fallback"
            assert fallback or props["polydiff_valid"] == 1, props  # never a broken model conformer
            assert fallback or check_conformers(rec)[0].ok  # and the file holds what the property says
            assert props["polydiff_source"] in ("model", "etkdg_fallback")
    assert info["n_relaxed"] == sum(info["relaxed"].values()) and info["n_relaxed"] + info["n_dropped"] >= 1


def test_unrepairable_conformers_are_dropped_and_the_molecule_falls_back_to_etkdg(shipped, capsys):
    capsys.readouterr()
    raw = shipped.sample(2, smiles=[MACROCYCLE], seed=0, no_validate=True)
    assert raw.meta["validated"] is False and raw.data["conf_props"] == {}
    assert "outside this run's training molecules" in (note := capsys.readouterr().err)
    assert "sampled, not validated (--no-validate)" in note  # the note says what happens to it
    (name, mol), = raw["molecules"]
    assert not any(r.ok for r in check_conformers(mol))  # what issue 23 saw: C-C bonds of 1.7-1.9 A
    capsys.readouterr()
    result = screen_molecules(raw["molecules"], relax_iters=0)
    err = capsys.readouterr().err
    assert result.meta["fallbacks"] == ["cycloicosane"] and result.meta["n_dropped"] == 2
    assert "warning: cycloicosane: none of 2 conformers passed the geometry checks" in err
    props = result.conf_props["cycloicosane"]
    assert len(props) == 2 and all(p["polydiff_source"] == "etkdg_fallback" for p in props)


def test_unknown_element_is_refused_in_one_line(shipped, capsys):
    samples = shipped.sample(1, smiles=["CCS ethanethiol", "CCO ethanol"], seed=0, init="etkdg")
    err = capsys.readouterr().err
    assert [name for name, _ in samples["molecules"]] == ["ethanol"]
    why = samples.meta["errors"]["ethanethiol"]
    assert why == "element(s) S not supported: this run was trained on H C N O F"
    assert f"skipped ethanethiol: {why}\n" in err


@pytest.mark.parametrize("init", ["etkdg", "noise"])
def test_shipped_model_samples_as_before(shipped, init):
    expected = json.loads(SHIPPED_SAMPLES.read_text())["samples"][init]
    samples = shipped.sample(2, smiles=["C[C@H](O)C#N", "OC1CC1"], seed=3, init=init, steps=4, no_validate=True)
    got = {name: np.stack([c.GetPositions() for c in mol.GetConformers()]) for name, mol in samples["molecules"]}
    assert set(got) == set(expected)
    for name, pos in got.items():
        assert np.abs(pos - np.asarray(expected[name])).max() < 1e-4, name


def test_a_student_distilled_for_etkdg_starts_refuses_pure_noise(shipped):
    """A student distilled only below init_sigma (``distill --sigma-max 0.3``) samples ETKDG starts; asked for pure
    noise it says so in one line naming --init instead of denoising a 0.3 A cloud into nonsense."""
    import dataclasses

    from polydiff.plugins import distill
    from polydiff.plugins.errors import OptionError

    def student(**kw):
        plan = distill.make_plan(shipped, steps=4, train={"steps": 1}, **kw)
        return dataclasses.replace(shipped, config=distill.stage_config(shipped.config, plan, distill.stages(plan)[-1]))

    part_way = student(sigma_max=0.3)
    assert part_way.config["sample"]["sigma_max"] == pytest.approx(0.3)
    with pytest.raises(OptionError, match="--init"):
        part_way.sample(1, smiles=["CCO ethanol"], init="noise", seed=0)
    whole = student()
    assert whole.sample(1, smiles=["CCO ethanol"], init="noise", seed=0)["molecules"]
