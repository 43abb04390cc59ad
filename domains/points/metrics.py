"""Point-cloud generation metrics of the PointFlow / PVD protocol: CD, EMD, MMD, COV and 1-NNA.

Conventions (PointFlow, Yang et al. 2019): Chamfer distance is the sum of the two mean squared nearest-neighbour
distances; EMD is the mean Euclidean distance under the optimal one-to-one matching of two clouds of equal size
(computed exactly with ``scipy.optimize.linear_sum_assignment``, on a random subsample of ``emd_points`` points per
cloud on CPU: the cost is cubic). MMD, COV and 1-NNA are computed from the pairwise distance matrices between a
generated set and a reference set.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

Tensor = torch.Tensor


def _check(x: Tensor, name: str) -> Tensor:
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"{name} must be clouds of shape [M, N, 3], got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty set of clouds")
    return x.float()


def chamfer(a: Tensor, b: Tensor) -> Tensor:
    """Chamfer distance between clouds paired row by row, a [B, N, 3] and b [B, M, 3] -> [B]."""
    d = torch.cdist(a.float(), b.float()).pow(2)
    return d.min(2).values.mean(1) + d.min(1).values.mean(1)


def emd(a: Tensor, b: Tensor) -> Tensor:
    """Exact EMD (mean matched Euclidean distance) between clouds paired row by row, each [B, N, 3] -> [B]."""
    if a.shape != b.shape:
        raise ValueError(f"EMD needs clouds of equal size, got {tuple(a.shape)} and {tuple(b.shape)}")
    cost = torch.cdist(a.double(), b.double()).cpu().numpy()
    out = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        r, c = linear_sum_assignment(cost[i])
        out[i] = cost[i][r, c].mean()
    return torch.from_numpy(out).float()


def subsample(x: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """A random subset of ``n`` points of every cloud of x [M, N, 3] (all of them when N <= n)."""
    if x.shape[1] <= n:
        return x
    idx = torch.stack([torch.randperm(x.shape[1], generator=generator)[:n] for _ in range(x.shape[0])])
    return torch.gather(x, 1, idx.to(x.device)[..., None].expand(-1, -1, 3))


def _pairwise_chamfer_kdtree(a: Tensor, b: Tensor) -> Tensor:
    """Exact pairwise Chamfer distances on CPU with one k-d tree per cloud (about 20x faster there than dense
    distance matrices, whose memory traffic dominates on CPU)."""
    from scipy.spatial import cKDTree

    an, bn = a.double().numpy(), b.double().numpy()
    trees_a, trees_b = [cKDTree(x) for x in an], [cKDTree(x) for x in bn]
    out = np.empty((len(an), len(bn)))
    for i, (x, tx) in enumerate(zip(an, trees_a)):
        for j, (y, ty) in enumerate(zip(bn, trees_b)):
            out[i, j] = np.square(ty.query(x, k=1)[0]).mean() + np.square(tx.query(y, k=1)[0]).mean()
    return torch.from_numpy(out).float()


def pairwise_chamfer_dense(a: Tensor, b: Tensor, chunk: int = 2 ** 24) -> Tensor:
    """Pairwise Chamfer distances [A, B] from dense squared-distance blocks of at most ``chunk`` entries (any device)."""
    rb = max(1, min(b.shape[0], chunk // (a.shape[1] * b.shape[1])))
    b_sq = b.pow(2).sum(-1)
    out = torch.empty(a.shape[0], b.shape[0], device=a.device)
    for i in range(a.shape[0]):
        ai = a[i]
        a_sq = ai.pow(2).sum(-1)
        for j in range(0, b.shape[0], rb):
            bj = b[j:j + rb]
            d = torch.baddbmm(a_sq[None, :, None] + b_sq[j:j + rb, None, :], ai.expand(bj.shape[0], -1, -1),
                              bj.transpose(1, 2), alpha=-2).clamp_(min=0)
            out[i, j:j + rb] = d.min(2).values.mean(1) + d.min(1).values.mean(1)
    return out.cpu()


def pairwise_chamfer(a: Tensor, b: Tensor) -> Tensor:
    """Chamfer distances between every cloud of a [A, N, 3] and every cloud of b [B, M, 3] -> [A, B]: k-d trees on
    CPU, dense distance blocks on an accelerator."""
    a, b = _check(a, "a"), _check(b, "b")
    if a.device.type == "cpu" and b.device.type == "cpu":
        return _pairwise_chamfer_kdtree(a, b)
    return pairwise_chamfer_dense(a, b)


def pairwise_emd(a: Tensor, b: Tensor, emd_points: int = 256, seed: int = 0) -> Tensor:
    """Exact EMD between every cloud of a and every cloud of b -> [A, B], on ``emd_points`` random points per cloud."""
    a, b = _check(a, "a"), _check(b, "b")
    g = torch.Generator().manual_seed(seed)
    a, b = subsample(a, emd_points, g), subsample(b, emd_points, g)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"EMD needs equal cloud sizes after subsampling, got {a.shape[1]} and {b.shape[1]}")
    out = torch.empty(a.shape[0], b.shape[0])
    for i in range(a.shape[0]):
        out[i] = emd(a[i].expand(b.shape[0], -1, -1), b)
    return out


def mmd_cov(d_gen_ref: Tensor) -> tuple[float, float]:
    """Minimum matching distance and coverage from distances [G, R] between generated and reference clouds.

    MMD: mean over references of the distance to the closest generated cloud. COV: the fraction of references that
    are the nearest reference of at least one generated cloud.
    """
    mmd = d_gen_ref.min(0).values.mean().item()
    nearest = d_gen_ref.argmin(1)
    cov = nearest.unique().numel() / d_gen_ref.shape[1]
    return mmd, cov


def one_nna(d_gg: Tensor, d_gr: Tensor, d_rr: Tensor) -> float:
    """1-NN two-sample accuracy (Lopez-Paz & Oquab 2017) of generated vs reference, from the three distance blocks.

    Every cloud of the union is classified by its nearest other cloud (leave-one-out); 0.5 is ideal. Two identical
    sets give 0: each cloud's nearest neighbour is its copy in the other set, at distance 0, always misclassified.
    Ties go to the cloud listed first (generated before reference), as in PointFlow's topk.
    """
    g, r = d_gg.shape[0], d_rr.shape[0]
    top = torch.cat([d_gg, d_gr], 1)
    bottom = torch.cat([d_gr.T, d_rr], 1)
    full = torch.cat([top, bottom], 0).double()
    full.fill_diagonal_(float("inf"))
    labels = torch.cat([torch.ones(g), torch.zeros(r)])
    nn_idx = full.argmin(1)
    return (labels[nn_idx] == labels).double().mean().item()


def distance_blocks(gen: Tensor, ref: Tensor, metric: str, emd_points: int = 256) -> tuple[Tensor, Tensor, Tensor]:
    """(gen-gen, gen-ref, ref-ref) distance matrices for ``metric`` ``cd`` or ``emd``."""
    if metric == "cd":
        return pairwise_chamfer(gen, gen), pairwise_chamfer(gen, ref), pairwise_chamfer(ref, ref)
    if metric == "emd":
        return (pairwise_emd(gen, gen, emd_points), pairwise_emd(gen, ref, emd_points),
                pairwise_emd(ref, ref, emd_points))
    raise ValueError(f"unknown metric {metric!r}; choose cd or emd")


def evaluate_sets(gen: Tensor, ref: Tensor, metrics: tuple[str, ...] = ("cd", "emd"),
                  emd_points: int = 256) -> dict[str, float]:
    """MMD, COV and 1-NNA for each distance in ``metrics``: keys like ``mmd_cd``, ``cov_emd``, ``1nna_cd``."""
    gen, ref = _check(gen, "generated set"), _check(ref, "reference set")
    out: dict[str, float] = {}
    for m in metrics:
        d_gg, d_gr, d_rr = distance_blocks(gen, ref, m, emd_points)
        out[f"mmd_{m}"], out[f"cov_{m}"] = mmd_cov(d_gr)
        out[f"1nna_{m}"] = one_nna(d_gg, d_gr, d_rr)
    if "emd" in metrics:
        out["emd_points"] = float(min(emd_points, gen.shape[1]))
    return out
