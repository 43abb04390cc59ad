"""Partial scans: the points of a cloud a camera sees from one viewpoint, as the ``partial`` control of
``train-control`` (ControlNet completion) and as the completion benchmark's inputs.

Visibility is hidden point removal (Katz, Tal and Basri, "Direct visibility of point sets", SIGGRAPH 2007): seen from
a camera at ``CAMERA_DISTANCE`` bounding radii from the centroid, each point is flipped through a sphere of radius
``10 ** HPR_GAMMA`` times the farthest point's distance, and the points on the convex hull of the flipped set and the
camera are the visible ones. It needs no surface and is exact for convex shapes at any density (on a unit sphere the
cap facing a camera at 2.5 radii is seen whole and under 5% of the hidden side is taken, from 256 points or 2048);
for non-convex shapes it approximates, and a sparse cloud sees more: of a 256-point subset's visible points about a
quarter are hidden in the full 2048-point cloud of the same chair. The visible points are then drawn, with
replacement when fewer, to a fixed count: the control is a set [M, 3] in the run's normalised frame, encoded by a
PointNet (``core.control.SetControlEncoder``), so its density and count do not matter.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.plugins.domain import Batch

Tensor = torch.Tensor

CONTROL_POINTS = 256
"""Points in a partial-scan control."""
CAMERA_DISTANCE = 2.5
"""Camera distance from the centroid, in bounding radii of the cloud."""
HPR_GAMMA = 1.0
"""The flipping sphere's radius, as log10 of a multiple of the farthest point's distance (larger sees more)."""


def random_directions(n: int, generator: torch.Generator | None = None, device: Any = None) -> Tensor:
    """``n`` unit vectors uniform on the sphere (the viewpoints), drawn on the generator's device."""
    where = generator.device if generator is not None else torch.device("cpu")
    d = torch.randn(n, 3, generator=generator, device=where)
    return (d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)).to(device if device is not None else where)


def visible(points: Tensor, direction: Tensor) -> Tensor:
    """Which points [B, N, 3] a camera at ``direction`` [B, 3] (unit, from the centroid) sees: a mask [B, N] (hidden
    point removal, computed on the CPU: a convex hull per cloud)."""
    from scipy.spatial import ConvexHull

    pts = points.detach().double().cpu().numpy()
    dirs = direction.detach().double().cpu().numpy()
    mask = np.zeros(pts.shape[:2], dtype=bool)
    for b, (cloud, d) in enumerate(zip(pts, dirs)):
        centre = cloud.mean(0)
        eye = centre + CAMERA_DISTANCE * np.linalg.norm(cloud - centre, axis=1).max() * d
        rel = cloud - eye
        dist = np.linalg.norm(rel, axis=1, keepdims=True).clip(1e-12)
        flipped = rel + 2 * (dist.max() * 10 ** HPR_GAMMA - dist) * rel / dist
        hull = ConvexHull(np.vstack([flipped, np.zeros((1, 3))]))
        seen = hull.vertices[hull.vertices < len(cloud)]
        mask[b, seen] = True
    return torch.from_numpy(mask).to(points.device)


def partial_scan(points: Tensor, m: int = CONTROL_POINTS, generator: torch.Generator | None = None,
                 direction: Tensor | None = None) -> Tensor:
    """Partial scans [B, m, 3] of clouds [B, N, 3]: ``m`` of the points visible from a random (or the given)
    viewpoint, drawn with replacement."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    direction = random_directions(len(points), generator, points.device) if direction is None else direction
    mask = visible(points, direction.to(points.device, points.dtype))
    idx = torch.multinomial(mask.float().to(gen_device), m, replacement=True, generator=generator)
    return torch.gather(points, 1, idx.to(points.device)[..., None].expand(-1, -1, 3))


def compute(batch: Batch, generator: torch.Generator) -> Tensor:
    """The ``partial`` control of a clean batch: each cloud's scan from its own random viewpoint."""
    return partial_scan(batch.x0.float(), CONTROL_POINTS, generator)


def read(path: Path, config: dict[str, Any]) -> Tensor:
    """``sample --control FILE``: a partial scan in the data's frame (a PLY/OBJ/XYZ point file, a partial mesh,
    surface-sampled, or a .npy/.pt of clouds [K, 3] / [m, K, 3]), normalised like the run's training data and drawn
    to the control's point count."""
    from polydiff.plugins.errors import OptionError
    from polydiff.plugins.personalize import read_array

    from .files import read_cloud
    from .prepared import sampling_spec

    path = Path(path)
    try:
        if path.suffix in (".npy", ".pt"):
            clouds = read_array(path).x0.float().numpy()
        else:
            try:
                clouds = read_cloud(path)
            except ValueError as exc:
                if "is a mesh" not in str(exc):
                    raise
                clouds = read_cloud(path, n_points=4 * CONTROL_POINTS)
    except ValueError as exc:
        raise OptionError("--control", str(exc)) from None
    clouds = clouds[None] if clouds.ndim == 2 else clouds
    if clouds.ndim != 3 or clouds.shape[-1] != 3 or clouds.shape[1] == 0:
        raise OptionError("--control", f"{path}: expected a partial cloud [K, 3] or clouds [m, K, 3], got "
                                       f"{list(clouds.shape)}")
    norm = sampling_spec(config).normalization
    x = torch.as_tensor(norm.apply(clouds) if norm.mode == "global" else clouds, dtype=torch.float32)
    idx = torch.randint(x.shape[1], (x.shape[0], CONTROL_POINTS), generator=torch.Generator().manual_seed(0))
    return torch.gather(x, 1, idx[..., None].expand(-1, -1, 3))


