"""Batches of molecular graphs and their noise: pair tables, batching (a torch-geometric ``Batch``, see ``pyg``),
zero-centre-of-mass noise, stereo features and per-molecule means.

A batch (the ``cond`` of the network) is read by key: ``atoms`` [N, F], ``batch`` [N], ``ptr`` [B + 1], ``edge_index``
[2, E] over all ordered atom pairs of each molecule, ``edge_bond`` [E] (0 = not bonded) and ``edge_topo`` [E]
(bond-path length clipped to 5), plus the stereo constraints with global atom indices. pyg-lib is not available, so
edges are built here; molecules have tens of atoms, so all pairs are cheap.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.sparse.csgraph import shortest_path

from polydiff.core.noise import NoiseFn, zero_mean

from .chem import MolGraph

Tensor = torch.Tensor
MAX_TOPO = 5


def pair_tables(graph: MolGraph) -> tuple[np.ndarray, np.ndarray]:
    """Dense [n, n] bond-type and bond-path-length tables of one molecule."""
    n = graph.num_atoms
    bond = np.zeros((n, n), dtype=np.int64)
    if len(graph.bonds):
        i, j = graph.bonds[:, 0], graph.bonds[:, 1]
        bond[i, j] = bond[j, i] = graph.bond_types
    topo = shortest_path((bond > 0).astype(np.float64), unweighted=True, directed=False)
    topo = np.where(np.isfinite(topo), topo, MAX_TOPO).clip(0, MAX_TOPO).astype(np.int64)
    return bond, topo


def collate(graphs: Sequence[Any], device: torch.device | str | None = None) -> Any:
    """Molecular graphs (``MolGraph`` or ``pyg.MolData``) as one torch-geometric ``Batch`` (all-pairs edges within
    each molecule); torch-geometric is imported on first use, not with the CLI."""
    from .pyg import batch_graphs

    return batch_graphs(graphs, device)


def num_graphs(cond: Any) -> int:
    """Number of molecules in a batch."""
    return int(cond["ptr"].numel()) - 1


def scatter_mean(x: Tensor, index: Tensor, n: int) -> Tensor:
    """Mean of the rows of ``x`` per group (``index[i]`` = group of row i), shape [n, ...]."""
    sums = torch.zeros((n, *x.shape[1:]), dtype=x.dtype, device=x.device).index_add_(0, index, x)
    counts = torch.bincount(index, minlength=n).clamp(min=1).to(x.dtype)
    return sums / counts.reshape(-1, *([1] * (x.ndim - 1)))


def remove_mean(x: Tensor, cond: Any) -> Tensor:
    """``x`` with each molecule's centre of mass (unweighted mean over its atoms) moved to the origin."""
    return x - scatter_mean(x, cond["batch"], num_graphs(cond))[cond["batch"]]


def com_free_noise(cond: Any) -> NoiseFn:
    """Gaussian noise with zero centre of mass per molecule: ``noise(like, generator=None)`` for samplers and losses."""
    return zero_mean(cond["batch"], num_graphs(cond))


def batch_noise(batch: Any) -> NoiseFn:
    """The Domain's ``noise``: zero-centre-of-mass noise for a training batch's molecules."""
    return com_free_noise(batch.cond)


def stereo_features(x: Tensor, cond: Any) -> Tensor:
    """Per-atom [N, 2] signed stereo measures of geometry ``x``: > 0 where it has the requested chirality / E-Z.

    Column 0 at tetrahedral centres: sign * det of the unit vectors to three neighbours (odd under reflection of x);
    column 1 at both ends of a stereo double bond: sign * cos(dihedral) (even). Invariant to rotations, translations
    and scale of x, so the network stays exactly SE(3)-equivariant.
    """
    out = x.new_zeros(x.shape[0], 2)
    c = cond["chiral"]
    if c.shape[0]:
        v = [x[c[:, k]] - x[c[:, 0]] for k in (1, 2, 3)]
        v = [u / u.norm(dim=-1, keepdim=True).clamp(min=1e-6) for u in v]
        vol = (v[0] * torch.cross(v[1], v[2], dim=-1)).sum(-1) * cond["chiral_sign"].to(x.dtype)
        out[:, 0] = out[:, 0].index_add(0, c[:, 0], vol)
    d = cond["double"]
    if d.shape[0]:
        b1, b2, b3 = x[d[:, 1]] - x[d[:, 0]], x[d[:, 2]] - x[d[:, 1]], x[d[:, 3]] - x[d[:, 2]]
        n1, n2 = torch.cross(b1, b2, dim=-1), torch.cross(b2, b3, dim=-1)
        cos = (n1 * n2).sum(-1) / (n1.norm(dim=-1) * n2.norm(dim=-1)).clamp(min=1e-6)
        val = cos * cond["double_sign"].to(x.dtype)
        out[:, 1] = out[:, 1].index_add(0, d[:, 1], val).index_add(0, d[:, 2], val)
    return out


def repeat_graphs(graphs: Sequence[MolGraph], k: int) -> list[MolGraph]:
    """Each graph ``k`` times in a row (K conformers of each molecule sampled in one batch)."""
    return [g for g in graphs for _ in range(k)]
