"""An E(3)-equivariant conformer network with e3nn: ``F(x_in [N, 3], c_noise [N], cond) -> [N, 3]``.

NequIP-style message passing over all atom pairs of each molecule: messages are tensor products of node features
(scalars, vectors 1o and pseudovectors 1e) with spherical harmonics of the edge vector, weighted per path by an MLP of
edge scalars (Gaussian radial basis of the distance, bond type, bond-path length, noise level); gated
nonlinearities; the output is one 1o vector per atom with zero mean per molecule. Stereo enters as per-atom scalars
computed from the current geometry and the requested chirality (``graph.stereo_features``): they are odd under a
reflection of x, so the network is SE(3)-equivariant and distinguishes enantiomers; flipping the requested chirality
together with reflecting x reflects the output exactly (for an achiral molecule, it is plainly E(3)-equivariant).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from e3nn import o3
from e3nn.math import soft_one_hot_linspace
from e3nn.nn import FullyConnectedNet, Gate
from torch import nn
from torch.nn import functional as fn

from polydiff.domains.common.embeddings import NoiseEmbedding

from .chem import ATOM_FEATURE_SIZES, NUM_BOND_TYPES
from .graph import MAX_TOPO, num_graphs, scatter_mean, stereo_features

Tensor = torch.Tensor


def _tp_instructions(irreps_in: o3.Irreps, irreps_sh: o3.Irreps, keep: set[o3.Irrep]):
    """'uvu' paths (one weight per input channel and path, NequIP) onto the irreps in ``keep``."""
    mid, instructions = [], []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for j, (_, ir_sh) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_sh:
                if ir_out in keep:
                    instructions.append((i, j, len(mid), "uvu", True))
                    mid.append((mul, ir_out))
    mid = o3.Irreps(mid)
    mid_sorted, perm, _ = mid.sort()
    instructions = [(i, j, perm[k], mode, train) for i, j, k, mode, train in instructions]
    return mid_sorted, instructions


class Interaction(nn.Module):
    """One message-passing block: linear, edge tensor product, aggregation, linear + self-connection, gate, residual."""

    def __init__(self, irreps: o3.Irreps, irreps_sh: o3.Irreps, edge_dim: int, hidden: int, avg_neighbors: float) -> None:
        super().__init__()
        scalars = o3.Irreps([(m, ir) for m, ir in irreps if ir.l == 0])
        gated = o3.Irreps([(m, ir) for m, ir in irreps if ir.l > 0])
        self.gate = Gate(scalars, [fn.silu], o3.Irreps(f"{gated.num_irreps}x0e"), [torch.sigmoid], gated)
        mid, instr = _tp_instructions(irreps, irreps_sh, {ir for _, ir in irreps})
        self.lin_in = o3.Linear(irreps, irreps)
        self.tp = o3.TensorProduct(irreps, irreps_sh, mid, instr, shared_weights=False, internal_weights=False)
        self.radial = FullyConnectedNet([edge_dim, hidden, hidden, self.tp.weight_numel], fn.silu)
        self.lin_out = o3.Linear(mid, self.gate.irreps_in)
        self.self_connection = o3.Linear(irreps, self.gate.irreps_in)
        self.norm = 1.0 / avg_neighbors  # a mean, not 1/sqrt: neighbours' messages are correlated, so a
        # 1/sqrt sum grows the features ~sqrt(avg_neighbors)-fold per layer (output std ~10 at init, loss in the 100s)

    def forward(self, h: Tensor, sh: Tensor, edge_scalars: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        """Update node features ``h`` [N, irreps.dim]."""
        msg = self.tp(self.lin_in(h)[src], sh, self.radial(edge_scalars))
        agg = torch.zeros(h.shape[0], msg.shape[1], dtype=msg.dtype, device=msg.device).index_add_(0, dst, msg)
        return h + self.gate(self.lin_out(agg * self.norm) + self.self_connection(h))


class ConformerNet(nn.Module):
    """E(3)-equivariant network predicting one vector per atom (zero mean per molecule) for conformer denoising.

    ``atom_sizes``: sizes of the categorical atom-feature columns, from the run's vocabulary (``Vocabulary.sizes``;
    the default is QM9's)."""

    def __init__(self, scalars: int = 64, vectors: int = 16, layers: int = 4, lmax: int = 2, num_rbf: int = 16,
                 rbf_max: float = 5.0, noise_dim: int = 64, edge_hidden: int = 64, avg_neighbors: float = 17.0,
                 atom_sizes: tuple[int, ...] = ATOM_FEATURE_SIZES) -> None:
        super().__init__()
        self.config = dict(scalars=scalars, vectors=vectors, layers=layers, lmax=lmax, num_rbf=num_rbf,
                           rbf_max=rbf_max, noise_dim=noise_dim, edge_hidden=edge_hidden, avg_neighbors=avg_neighbors,
                           atom_sizes=list(atom_sizes))
        self.num_rbf, self.rbf_max = num_rbf, rbf_max
        self.irreps = o3.Irreps(f"{scalars}x0e + {vectors}x1o + {vectors}x1e")
        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        self.atom_embed = nn.ModuleList(nn.Embedding(size, scalars) for size in atom_sizes)
        self.noise_embed = NoiseEmbedding(noise_dim)
        self.noise_to_node = nn.Linear(noise_dim, scalars)
        self.noise_to_edge = nn.Linear(noise_dim, 16)
        self.stereo_embed = nn.Sequential(nn.Linear(2, scalars), nn.SiLU(), nn.Linear(scalars, scalars))
        edge_dim = num_rbf + NUM_BOND_TYPES + MAX_TOPO + 1 + 16
        self.blocks = nn.ModuleList(
            Interaction(self.irreps, self.irreps_sh, edge_dim, edge_hidden, avg_neighbors) for _ in range(layers))
        self.out = o3.Linear(self.irreps, o3.Irreps("1x1o"))

    def forward(self, x: Tensor, c_noise: Tensor, cond: Any) -> Tensor:
        """Vectors [N, 3] for atom positions ``x`` [N, 3], noise levels ``c_noise`` [N] and the graph batch ``cond``
        (``graph.collate``)."""
        if cond is None or "edge_index" not in cond:
            raise ValueError("ConformerNet needs cond = graph.collate(...) of the molecules (it is never unconditional)")
        if x.ndim != 2 or x.shape[1] != 3 or c_noise.shape != (x.shape[0],):
            raise ValueError(f"expected x [N, 3] and c_noise [N]; got {tuple(x.shape)} and {tuple(c_noise.shape)}")
        src, dst = cond["edge_index"]
        vec = x[src] - x[dst]
        dist = vec.norm(dim=-1)
        sh = o3.spherical_harmonics(self.irreps_sh, vec, normalize=True, normalization="component")
        rbf = soft_one_hot_linspace(dist, 0.0, self.rbf_max, self.num_rbf, basis="gaussian", cutoff=False)
        noise = self.noise_embed(c_noise).to(x.dtype)
        edge_scalars = torch.cat([
            rbf,
            fn.one_hot(cond["edge_bond"], NUM_BOND_TYPES).to(x.dtype),
            fn.one_hot(cond["edge_topo"], MAX_TOPO + 1).to(x.dtype),
            self.noise_to_edge(noise)[dst],
        ], dim=-1)
        atoms = cond["atoms"]
        s = sum(emb(atoms[:, k]) for k, emb in enumerate(self.atom_embed)).to(x.dtype) / math.sqrt(len(self.atom_embed))
        s = s + self.noise_to_node(noise) + self.stereo_embed(stereo_features(x, cond))
        h = torch.cat([s, x.new_zeros(x.shape[0], self.irreps.dim - s.shape[1])], dim=-1)
        for block in self.blocks:
            h = block(h, sh, edge_scalars, src, dst)
        out = self.out(h)
        return out - scatter_mean(out, cond["batch"], num_graphs(cond))[cond["batch"]]
