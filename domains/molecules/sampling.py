"""Conformer generation: K conformers per molecule in one batch, any core sampler, zero-CoM noise, and a post-hoc
mirror fix (a conformer whose tetrahedral centres mostly have the wrong handedness is inverted through its centre)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from polydiff.core.samplers import sample as core_sample

from .chem import MolGraph, stereo_values
from .graph import collate, com_free_noise, repeat_graphs

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


def sample_conformers(denoiser, graphs: Sequence[MolGraph], k: int, sigmas: Tensor, sampler: str = "heun", *,
                      generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                      max_atoms: int = 6000, mirror_fix: bool = True) -> list[np.ndarray]:
    """K conformers [k, n_atoms, 3] (Angstrom) for each graph, sampled in batches of at most ``max_atoms`` atoms."""
    if k < 1:
        raise ValueError("k (conformers per molecule) must be at least 1")
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
