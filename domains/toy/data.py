"""Two-dimensional data sets with class labels, generated from a seed (train and test use different seeds)."""
from __future__ import annotations

import math

import torch

from polydiff.core.mixtures import eight_gaussians

Tensor = torch.Tensor


def moons(n: int, g: torch.Generator, noise: float = 0.05) -> tuple[Tensor, Tensor]:
    """Two interleaving half circles (as scikit-learn's make_moons), scaled to unit-ish variance; label = moon."""
    label = torch.randint(0, 2, (n,), generator=g)
    t = torch.rand(n, generator=g) * math.pi
    outer = torch.stack([t.cos(), t.sin()], 1)
    inner = torch.stack([1 - t.cos(), 0.5 - t.sin()], 1)
    x = torch.where(label[:, None] == 0, outer, inner) + noise * torch.randn(n, 2, generator=g)
    return (x - torch.tensor([0.5, 0.25])) * 1.4, label


def gaussians8(n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Eight Gaussians on a circle of radius 2 with std 0.1 (exact denoiser: ``eight_gaussians()``); label = mode."""
    x, label = eight_gaussians().sample(n, g)
    return x, label


def checkerboard(n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Uniform on the dark squares of a 4x4 board over [-2, 2]^2 (FFJORD's set); label = row of the square mod 2."""
    x1 = torch.rand(n, generator=g) * 4 - 2
    x2_ = torch.rand(n, generator=g) - torch.randint(0, 2, (n,), generator=g).float() * 2
    x2 = x2_ + (torch.floor(x1) % 2)
    x = torch.stack([x1, x2], 1)
    label = (torch.floor(x2) % 2).long()
    return x, label


def swissroll(n: int, g: torch.Generator, noise: float = 0.25) -> tuple[Tensor, Tensor]:
    """The 2D swiss roll (scikit-learn's make_swiss_roll, x-z plane) scaled by 1/5; label = inner or outer half."""
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g))
    x = torch.stack([t * t.cos(), t * t.sin()], 1) + noise * torch.randn(n, 2, generator=g)
    return x / 5, (t > 3 * math.pi).long()


DATASETS = {"moons": (moons, 2), "8gaussians": (gaussians8, 8), "checkerboard": (checkerboard, 2),
            "swissroll": (swissroll, 2)}
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}


def available() -> dict[str, tuple]:
    """Built-in data sets plus those plugins registered for the toy domain: name -> (factory, num_classes)."""
    from polydiff.plugins.manager import get_manager

    plugged = {k: (f, getattr(f, "num_classes", 0)) for k, f in get_manager().datasets("toy").items()}
    return {**DATASETS, **plugged}


def make(name: str, split: str, n: int) -> Tensor:
    """``n`` rows of (x, y, label) of data set ``name`` for ``split`` (train/val/test)."""
    sets = available()
    if name not in sets:
        raise ValueError(f"unknown toy data set {name!r}; choose from {', '.join(sets)}")
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLIT_SEEDS)}")
    g = torch.Generator().manual_seed(1000 + SPLIT_SEEDS[split] * 7 + sum(map(ord, name)))
    x, label = sets[name][0](n, g)
    return torch.cat([x.float(), label.float()[:, None]], 1)


def num_classes(name: str) -> int:
    return available()[name][1]
