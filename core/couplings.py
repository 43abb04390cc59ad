"""Couplings between data and noise for flow matching (torchcfm's idea: the path and the coupling are independent).

A coupling takes a data batch and a noise batch of the same size and returns the noise re-ordered to pair with the data.
"""
from __future__ import annotations

import torch

Tensor = torch.Tensor


def independent(x0: Tensor, eps: Tensor) -> Tensor:
    """The product coupling: pairs as drawn."""
    return eps


def minibatch_ot(x0: Tensor, eps: Tensor) -> Tensor:
    """Exact minibatch optimal transport (Tong et al. 2023, Pooladian et al. 2023): the permutation of the noise that
    minimises the summed squared distance to the data, by the Hungarian algorithm."""
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(x0.detach().flatten(1).double(), eps.detach().flatten(1).double()) ** 2
    _, cols = linear_sum_assignment(cost.cpu().numpy())
    return eps[torch.as_tensor(cols, device=eps.device)]


COUPLINGS = {"independent": independent, "ot": minibatch_ot}
