"""The points domain's config sections: what a run's ``data``, ``network`` and ``sample`` tables may hold."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Data:
    """The ``data`` section: which meshes, how many surface points per cloud, the split and the normalisation."""

    source: str = "shapes"
    """``shapes`` (labelled procedural set), ``random_urdfs`` (pybullet's objects) or a folder of meshes."""
    n_points: int = 2048
    n_per_class: int = 100
    normalization: str = "global"
    """``global`` (one mean and std over all train points, PointFlow) or ``shape`` (each cloud in the unit sphere)."""
    held_out: float = 0.2
    conditional: bool = True
    seed: int = 0
    limit: int | None = None
    train_points: int | None = None
    """Train on a fresh random subset of this many points of each cloud per access (None: all points)."""


@dataclass
class Network:
    """The ``network`` section: the set transformer's sizes (``network.PointSetTransformer``)."""

    dim: int = 128
    depth: int = 4
    latents: int = 32
    heads: int = 4
    mlp_ratio: int = 2
    fourier: int = 32
    fourier_scale: float = 1.0


@dataclass
class SampleExtras:
    """Points' own keys of the ``sample`` section."""

    anchored: bool = True
    """Denoise clouds larger than ``data.train_points`` in anchored sets of the training size."""
    anchor_context: int | None = None
    """Anchor points each chunk reads (None: three quarters of the set)."""
