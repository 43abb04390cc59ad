"""From a radiance field to a coloured triangle mesh (marching cubes on the density) and its GLB / OBJ files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .render import Field


@torch.no_grad()
def sample_grid(field: Field, resolution: int = 64, bound: float = 1.0, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Density [R, R, R] and colour [R, R, R, 3] of ``field`` at the nodes of a grid over [-bound, bound]^3 ([x, y, z])."""
    axis = torch.linspace(-bound, bound, resolution)
    pts = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    dens, cols = [], []
    for part in pts.split(chunk):
        d, c = field(part)
        dens.append(d.float().cpu())
        cols.append(c.float().cpu())
    r = resolution
    return torch.cat(dens).reshape(r, r, r).numpy(), torch.cat(cols).reshape(r, r, r, 3).numpy()


def extract_mesh(field: Field, resolution: int = 64, threshold: float = 5.0, bound: float = 1.0,
                 blur: float = 0.0):
    """Marching cubes (``skimage.measure.marching_cubes``) on the density at ``threshold``; vertex colours from the field.

    ``blur`` > 0 first smooths the sampled density with a Gaussian of that many grid cells (``scipy.ndimage``): a
    distilled field's density is noisy near the threshold, and the noise becomes floaters and tunnels in the mesh.
    Returns a ``trimesh.Trimesh`` in world coordinates. Raises ``ValueError`` if the density never crosses the threshold.
    """
    import trimesh
    from skimage.measure import marching_cubes

    density, _ = sample_grid(field, resolution, bound)
    if blur > 0:
        from scipy.ndimage import gaussian_filter

        density = gaussian_filter(density, blur, mode="nearest")
    if not density.min() < threshold < density.max():
        raise ValueError(f"density range [{density.min():.3g}, {density.max():.3g}] does not cross threshold {threshold}: "
                         "the field is empty or full; lower or raise the threshold")
    padded = np.pad(density, 1, constant_values=0.0)
    verts, faces, _, _ = marching_cubes(padded, level=threshold, spacing=(2 * bound / (resolution - 1),) * 3)
    verts = verts - bound - 2 * bound / (resolution - 1)
    # marching_cubes orients faces towards increasing values (the inside); flip them to face outwards.
    faces = faces[:, ::-1]
    with torch.no_grad():
        _, rgb = field(torch.from_numpy(np.ascontiguousarray(verts)).float())
    colors = np.concatenate([(rgb.numpy() * 255).round().astype(np.uint8), np.full((len(verts), 1), 255, np.uint8)], 1)
    return trimesh.Trimesh(vertices=verts, faces=np.ascontiguousarray(faces), vertex_colors=colors, process=False)


def save_mesh(mesh, path: str | Path) -> Path:
    """Write a mesh with vertex colours as GLB (``.glb``) or OBJ (``.obj``, colours as ``v x y z r g b``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".glb", ".obj"):
        raise ValueError(f"mesh files must end in .glb or .obj, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".glb":
        data = mesh.export(file_type="glb")
        path.write_bytes(data)
    else:
        path.write_text(mesh.export(file_type="obj", include_color=True, include_normals=False))
    return path
