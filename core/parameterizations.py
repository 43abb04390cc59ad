"""Exact conversions between what a network can predict, all in the sigma frame ``x = x0 + sigma eps``.

With ``a = 1/sqrt(1+sigma^2)`` and ``b = sigma/sqrt(1+sigma^2)`` the VP view is ``x_t = a x``:
- eps:   x0 = x - sigma eps
- score: grad log p(x) = (x0 - x) / sigma^2                                   (Tweedie)
- v:     v = a eps - b x0 in VP units (Salimans & Ho 2022), so x0 = a^2 x - b v
- flow:  velocity u = eps - x0 of x_t = (1 - t) x0 + t eps, t = sigma/(1+sigma), so x0 = (x - sigma u)/(1 + sigma)
Every function takes ``sigma`` already broadcast against ``x`` (see ``polydiff.core.broadcast.rows``).
"""
from __future__ import annotations

import torch

Tensor = torch.Tensor


def eps_to_x0(x: Tensor, sigma: Tensor, eps: Tensor) -> Tensor:
    return x - sigma * eps


def x0_to_eps(x: Tensor, sigma: Tensor, x0: Tensor) -> Tensor:
    return (x - x0) / sigma


def score_to_x0(x: Tensor, sigma: Tensor, score: Tensor) -> Tensor:
    return x + sigma**2 * score


def x0_to_score(x: Tensor, sigma: Tensor, x0: Tensor) -> Tensor:
    return (x0 - x) / sigma**2


def v_to_x0(x: Tensor, sigma: Tensor, v: Tensor) -> Tensor:
    return (x - sigma * v * (1 + sigma**2).sqrt()) / (1 + sigma**2)


def x0_to_v(x: Tensor, sigma: Tensor, x0: Tensor) -> Tensor:
    a = 1 / (1 + sigma**2).sqrt()
    b = sigma * a
    eps = (x - x0) / sigma
    return a * eps - b * x0


def flow_to_x0(x: Tensor, sigma: Tensor, u: Tensor) -> Tensor:
    return (x - sigma * u) / (1 + sigma)


def x0_to_flow(x: Tensor, sigma: Tensor, x0: Tensor) -> Tensor:
    return (x - x0) / sigma - x0


TO_X0 = {"eps": eps_to_x0, "score": score_to_x0, "v": v_to_x0, "flow": flow_to_x0, "x0": lambda x, s, y: y}
FROM_X0 = {"eps": x0_to_eps, "score": x0_to_score, "v": x0_to_v, "flow": x0_to_flow, "x0": lambda x, s, y: y}


def convert(x: Tensor, sigma: Tensor, value: Tensor, source: str, target: str) -> Tensor:
    """Convert a prediction between parameterizations (``eps``, ``x0``, ``v``, ``score``, ``flow``)."""
    for name in (source, target):
        if name not in TO_X0:
            raise ValueError(f"unknown parameterization {name!r}; known: {', '.join(TO_X0)}")
    return FROM_X0[target](x, sigma, TO_X0[source](x, sigma, value))
