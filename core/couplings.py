"""Couplings between data and noise for flow matching (torchcfm's idea: the path and the coupling are independent).

A coupling ``couple(x0, eps, group=None) -> eps`` takes a data batch and a noise batch of the same shape and returns the
noise re-ordered to pair with the data. ``group`` (ragged data, ``group[i]`` = sample of row i, e.g. atom -> molecule)
confines the re-ordering to rows of the same sample. Every built-in coupling only permutes noise rows (or points), and
within a group or set at most, so noise that is exchangeable there (i.i.d., or zero centre of mass per group) keeps its
distribution, and a permutation within a group keeps that group's noise mean (zero centre stays zero centre).

Names in ``COUPLINGS``:

- ``independent``: the product coupling, pairs as drawn.
- ``ot``: exact OT across the batch's samples (minibatch OT); for ragged ``group`` data, within each group instead.
- ``ot_within``: exact OT within each sample: the points of each set of x0 [B, N, ...], or the rows of each group.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

Tensor = torch.Tensor
Coupling = Callable[..., Tensor]


def _assignment(cost: np.ndarray) -> np.ndarray:
    """Column paired with each row by the Hungarian algorithm (scipy), for a square cost matrix."""
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(cost)[1]


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``a`` [n, F] and ``b`` [m, F]."""
    from scipy.spatial.distance import cdist

    return cdist(a, b, "sqeuclidean")


def independent(x0: Tensor, eps: Tensor, group: Tensor | None = None) -> Tensor:
    """The product coupling: pairs as drawn."""
    return eps


def within_groups_index(x0: Tensor, eps: Tensor, group: Tensor) -> Tensor:
    """Row index ``p`` such that ``eps[p]`` pairs noise with data by exact OT inside each group (p[i] shares i's group).

    For each group alone, the Hungarian algorithm on squared distances between its data and noise rows: the permutation
    step of equivariant OT flow matching (Klein et al. 2023; no rotation alignment here). Rows never cross groups.
    """
    g = group.detach().cpu().numpy()
    order = np.argsort(g, kind="stable")
    bounds = np.flatnonzero(np.diff(g[order])) + 1
    a = x0.detach().reshape(x0.shape[0], -1).double().cpu().numpy()
    b = eps.detach().reshape(eps.shape[0], -1).double().cpu().numpy()
    perm = np.arange(len(g))
    for rows in np.split(order, bounds):
        perm[rows] = rows[_assignment(_sq_dist(a[rows], b[rows]))]
    return torch.as_tensor(perm, device=eps.device)


def within_groups_ot(x0: Tensor, eps: Tensor, group: Tensor) -> Tensor:
    """Noise rows re-ordered by exact OT inside each group of ragged data (see ``within_groups_index``)."""
    return eps[within_groups_index(x0, eps, group)]


def within_sets_ot(x0: Tensor, eps: Tensor, group: Tensor | None = None) -> Tensor:
    """Exact OT of the points inside each set: for x0 [B, N, ...] set b's noise points are permuted among themselves.

    With ``group`` (ragged data) the groups are the sets. Each set keeps its own noise set (unlike ``ot``, which moves
    whole sets across the batch); only the points' pairing inside it changes, shortening the straight paths.
    """
    if group is not None:
        return within_groups_ot(x0, eps, group)
    if x0.ndim < 3:
        shape = tuple(x0.shape)
        raise ValueError(f"coupling 'ot_within' needs sets shaped [B, N, ...] or a group index; got shape {shape}")
    b, n = x0.shape[:2]
    sets = torch.arange(b, device=x0.device).repeat_interleave(n)
    flat = within_groups_ot(x0.reshape(b * n, -1), eps.reshape(b * n, -1), sets)
    return flat.reshape(eps.shape)


def minibatch_ot(x0: Tensor, eps: Tensor, group: Tensor | None = None) -> Tensor:
    """Exact minibatch optimal transport (Tong et al. 2023, Pooladian et al. 2023): the permutation of the noise samples
    that minimises the summed squared distance to the data, by the Hungarian algorithm.

    With ``group`` (ragged data, whose samples differ in size and cannot be paired whole) it is OT within each group.
    """
    if group is not None:
        return within_groups_ot(x0, eps, group)
    cost = torch.cdist(x0.detach().flatten(1).double(), eps.detach().flatten(1).double()) ** 2
    cols = _assignment(cost.cpu().numpy())
    return eps[torch.as_tensor(cols, device=eps.device)]


COUPLINGS: dict[str, Coupling] = {"independent": independent, "ot": minibatch_ot, "ot_within": within_sets_ot}


def resolve_coupling(coupling: str | Coupling) -> Coupling:
    """The coupling named in ``COUPLINGS`` (a config string), or ``coupling`` itself when it is already a callable."""
    if not isinstance(coupling, str):
        return coupling
    if coupling not in COUPLINGS:
        raise ValueError(f"unknown coupling {coupling!r}; known: {', '.join(COUPLINGS)}")
    return COUPLINGS[coupling]
