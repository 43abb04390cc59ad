"""Molecular graphs are torch-geometric ``Data`` collated into a ``Batch`` (stereo atom indices shifted per molecule),
the training pipeline speaks it, and the demo samples named QM9 test-split molecules ("SMILES NAME" inputs)."""
from __future__ import annotations

import numpy as np
import torch
from rdkit import Chem
from torch_geometric.data import Batch, Data

from polydiff.domains.molecules.chem import featurize, parse_smiles
from polydiff.domains.molecules.data import ConformerDataset, collate_batch
from polydiff.domains.molecules.graph import collate
from polydiff.domains.molecules.io import read_inputs
from polydiff.domains.molecules.plugin import DEMO_MOLECULES
from polydiff.domains.molecules.qm9 import iter_rows, split_of


def test_collate_is_a_pyg_batch_with_shifted_stereo_indices():
    graphs = [featurize(parse_smiles(s)) for s in ("C[C@H](O)C#N", "C/C=C/C", "C[C@@H](N)O")]
    batch = collate(graphs)
    assert isinstance(batch, Batch) and batch.num_graphs == 3
    assert isinstance(batch.get_example(1), Data)
    n = [g.num_atoms for g in graphs]
    assert batch["ptr"].tolist() == [0, n[0], n[0] + n[1], sum(n)]
    expected = np.concatenate([graphs[0].chiral, graphs[2].chiral + n[0] + n[1]])
    assert torch.equal(batch["chiral"], torch.as_tensor(expected))
    assert torch.equal(batch["double"], torch.as_tensor(graphs[1].double + n[0]))
    assert batch["edge_index"].shape[1] == sum(k * (k - 1) for k in n)
    src, dst = batch["edge_index"]
    assert torch.equal(batch["batch"][src], batch["batch"][dst])  # edges stay within molecules


def test_training_batches_are_pyg(qm9_small):
    ds = ConformerDataset(qm9_small, "train", limit=5)
    items = [ds[i] for i in range(4)]
    assert all(isinstance(d, Data) and d.pos.shape == (d.num_nodes, 3) for d in items)
    b = collate_batch(items)
    assert isinstance(b.cond, Batch) and torch.equal(b.x0, b.cond.pos) and torch.equal(b.group, b.cond.batch)
    for i in range(len(items)):
        assert torch.allclose(b.x0[b.group == i].mean(0), torch.zeros(3), atol=1e-5)


def _canonical(smiles: str) -> str:
    return Chem.MolToSmiles(Chem.MolFromSmiles(smiles))


def test_demo_molecules_are_named_qm9_test_molecules(load_shipped):
    rows = {int(r["Index"]): r["SMILES"] for r in iter_rows(max_rows=1000)}
    for name, (index, smiles) in DEMO_MOLECULES.items():
        assert split_of(index) == "test" and _canonical(rows[index]) == _canonical(smiles), name
    run = load_shipped("molecules")
    samples = run.sample(1, seed=0, **run.domain.demo)
    assert [n for n, _ in samples["molecules"]] == ["1_4-dioxane", "tetrahydrofuran", "aniline", "2-pyridone",
                                                    "1-propanol"]
    assert samples.meta["errors"] == {} and samples.meta["out_of_distribution"] == {}


def test_smiles_option_takes_a_name():
    items = read_inputs(["CCO ethanol", "CCO"], smiles=["OC1CC1  cyclopropanol", "c1ccccc1"])
    assert [i.name for i in items] == ["ethanol", "CCO", "cyclopropanol", "c1ccccc1"]
    assert all(i.mol is not None for i in items)
