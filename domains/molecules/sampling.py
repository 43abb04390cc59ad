"""Conformer generation: K conformers per molecule in one batch, any core sampler, zero-CoM noise, and a post-hoc
mirror fix (a conformer whose tetrahedral centres mostly have the wrong handedness is inverted through its centre).

Sampling starts from pure noise at ``sigmas[0]``, or (``init``) from given conformers noised to ``sigmas[0]``: SDEdit
on ETKDG embeddings (``etkdg_starts``), which keeps the run short when the grid starts low.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from polydiff.core.samplers import sample as core_sample

from .chem import MolGraph, stereo_values
from .graph import collate, com_free_noise, repeat_graphs
from .metrics import etkdg_conformers

Tensor = torch.Tensor


def fix_mirror(pos: np.ndarray, graph: MolGraph) -> tuple[np.ndarray, bool]:
    """Invert ``pos`` through its centroid when more tetrahedral centres are wrong than right; (pos, inverted)."""
    chi, _ = stereo_values(pos, graph)
    if len(chi) and (chi < 0).sum() > (chi > 0).sum():
        return 2 * pos.mean(0, keepdims=True) - pos, True
    return pos, False


def stereo_ok(pos: np.ndarray, graph: MolGraph) -> bool:
    """True when every requested tetrahedral centre and stereo double bond of ``graph`` is right in ``pos``."""
    chi, dbl = stereo_values(pos, graph)
    return bool((chi > 0).all() and (dbl > 0).all())


def etkdg_starts(mols: Sequence, k: int, seed: int = 0) -> list[np.ndarray | None]:
    """K ETKDGv3 conformers [k, n_atoms, 3] of each molecule (atom order kept), or None where ETKDG embeds fewer."""
    out: list[np.ndarray | None] = []
    for mol in mols:
        m = etkdg_conformers(mol, k, seed)
        confs = [c.GetPositions() for c in m.GetConformers()]
        out.append(np.stack(confs) if len(confs) == k and m.GetNumAtoms() == mol.GetNumAtoms() else None)
    return out


def sample_conformers(denoiser, graphs: Sequence[MolGraph], k: int, sigmas: Tensor, sampler: str = "heun", *,
                      generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                      max_atoms: int = 6000, mirror_fix: bool = True,
                      init: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
    """K conformers [k, n_atoms, 3] (Angstrom) for each graph, sampled in batches of at most ``max_atoms`` atoms.

    ``init`` (one [k, n_atoms, 3] array per graph): start from these conformers plus noise at ``sigmas[0]`` instead of
    from noise alone.
    """
    if k < 1:
        raise ValueError("k (conformers per molecule) must be at least 1")
    if init is not None and [np.shape(a) for a in init] != [(k, g.num_atoms, 3) for g in graphs]:
        raise ValueError("init needs one [k, n_atoms, 3] array of starting conformers per graph")
    out: list[np.ndarray] = []
    start = 0
    while start < len(graphs):
        stop, atoms = start, 0
        while stop < len(graphs) and (stop == start or atoms + k * graphs[stop].num_atoms <= max_atoms):
            atoms += k * graphs[stop].num_atoms
            stop += 1
        cond = collate(repeat_graphs(graphs[start:stop], k), device=device)
        noise = com_free_noise(cond)
        x = noise(torch.zeros(atoms, 3, device=device), generator) * sigmas[0]
        if init is not None:
            x0 = np.concatenate([a.reshape(-1, 3) for a in init[start:stop]])
            x = x + torch.as_tensor(x0, dtype=x.dtype, device=device)
        x = core_sample(denoiser, x, sigmas.to(device), sampler, cond=cond, noise=noise, generator=generator)
        ptr = cond["ptr"].cpu().numpy()
        flat = x.detach().float().cpu().numpy()
        for j, g in enumerate(graphs[start:stop]):
            confs = []
            for c in range(k):
                b = j * k + c
                pos = flat[ptr[b]:ptr[b + 1]].astype(np.float64)
                confs.append(fix_mirror(pos, g)[0] if mirror_fix else pos)
            out.append(np.stack(confs))
        start = stop
    return out
