"""Molecular graphs as torch-geometric ``Data`` objects, collated into a ``Batch``: the form the network reads.

One molecule is a ``MolData`` with ``atoms`` [N, F] (categorical features), ``edge_index`` [2, E] over all ordered atom
pairs of the molecule with ``edge_bond`` [E] (0 = not bonded) and ``edge_topo`` [E] (bond-path length clipped to 5),
the stereo constraints ``chiral`` [C, 4] / ``chiral_sign`` [C] and ``double`` [D, 4] / ``double_sign`` [D], and
optionally ``pos`` [N, 3]. ``Batch.from_data_list`` shifts ``edge_index``, ``chiral`` and ``double`` by the atoms
before each molecule and adds ``batch`` and ``ptr``, so a batch is what users' PyG pipelines pass around, and
``batch["key"]`` reads like the dict the network was written for. Edges are built here (``graph.pair_tables``): PyG
without pyg-lib has no ``radius_graph``, and all pairs of a molecule are what the network uses anyway.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from .chem import MolGraph
from .graph import pair_tables

INDEX_KEYS = ("chiral", "double")
"""Atom-index tensors besides ``edge_index`` that batching shifts by the atoms before each molecule."""


class MolData(Data):
    """One molecule's graph as a PyG ``Data`` (see the module docstring for its tensors)."""

    def __inc__(self, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        if key in INDEX_KEYS:
            return self.num_nodes
        return super().__inc__(key, value, *args, **kwargs)


def to_data(graph: MolGraph, pos: np.ndarray | None = None) -> MolData:
    """The ``MolData`` of a molecular graph, with coordinates ``pos`` [N, 3] (float32) when given."""
    n = graph.num_atoms
    bond, topo = pair_tables(graph)
    i, j = np.nonzero(~np.eye(n, dtype=bool))
    data = MolData(
        atoms=torch.as_tensor(graph.atoms.astype(np.int64)),
        edge_index=torch.as_tensor(np.stack([i, j]), dtype=torch.long),
        edge_bond=torch.as_tensor(bond[i, j], dtype=torch.long),
        edge_topo=torch.as_tensor(topo[i, j], dtype=torch.long),
        chiral=torch.as_tensor(graph.chiral.reshape(-1, 4), dtype=torch.long),
        chiral_sign=torch.as_tensor(graph.chiral_sign, dtype=torch.float32),
        double=torch.as_tensor(graph.double.reshape(-1, 4), dtype=torch.long),
        double_sign=torch.as_tensor(graph.double_sign, dtype=torch.float32),
        num_nodes=n,
    )
    if pos is not None:
        data.pos = torch.as_tensor(np.asarray(pos), dtype=torch.float32)
    return data


def batch_graphs(graphs: Sequence[MolGraph | MolData], device: torch.device | str | None = None) -> Batch:
    """A PyG ``Batch`` of molecular graphs (``MolGraph``s are converted once each, however often they repeat)."""
    if not graphs:
        raise ValueError("collate needs at least one molecule")
    converted: dict[int, MolData] = {}
    items = []
    for g in graphs:
        if isinstance(g, MolData):
            items.append(g)
            continue
        if id(g) not in converted:
            converted[id(g)] = to_data(g)
        items.append(converted[id(g)])
    out = Batch.from_data_list(items)
    return out.to(device) if device is not None else out
