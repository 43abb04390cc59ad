"""The hook implementations of the example plugin: one sampler and one data set.

Only declarations run when polydiff starts: the sampler is registered as a lazy reference (its module, which needs
torch, is imported when a command samples with it) and the data set imports torch when it is called, so
``polydiff --help`` stays fast with this plugin installed.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from polydiff.plugins import hookimpl
from polydiff.plugins.lazy import lazy

if TYPE_CHECKING:
    import torch


def spirals(n: int, generator: torch.Generator):
    """Two interleaved spirals (label = arm), scaled to about unit variance."""
    import torch

    label = torch.randint(0, 2, (n,), generator=generator)
    t = torch.sqrt(torch.rand(n, generator=generator)) * 3 * math.pi
    r = t / (3 * math.pi) * 2
    angle = t + label * math.pi
    x = torch.stack([r * angle.cos(), r * angle.sin()], 1) + 0.05 * torch.randn(n, 2, generator=generator)
    return x, label


spirals.num_classes = 2


@hookimpl
def polydiff_register_samplers(register):
    register("edm_stochastic", lazy("polydiff_example.samplers:edm_stochastic"))


@hookimpl
def polydiff_register_datasets(register):
    register("toy", "spirals", spirals)
