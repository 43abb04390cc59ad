"""Point-cloud files: binary PLY out (one file per cloud), PLY/OBJ/STL/OFF/GLB in, and a PNG grid preview."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .data import load_mesh

PREVIEW_VIEW = {"elev": 20.0, "azim": -60.0}


def write_ply(path: str | Path, points: np.ndarray) -> Path:
    """Write one cloud [N, 3] as a binary little-endian PLY with float32 x, y, z vertices (no faces)."""
    pts = np.asarray(points, dtype="<f4")
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"a cloud must have shape [N, 3], got {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("the cloud has non-finite coordinates (NaN or inf); refusing to write it")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(pts)}\nproperty float x\nproperty float y\nproperty float z\nend_header\n")
    with open(path, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(np.ascontiguousarray(pts).tobytes())
    return path


def write_clouds(out_dir: str | Path, clouds: np.ndarray, prefix: str = "cloud") -> list[Path]:
    """Write clouds [M, N, 3] as ``prefix_0000.ply``, ... in ``out_dir``."""
    return [write_ply(Path(out_dir) / f"{prefix}_{i:04d}.ply", c) for i, c in enumerate(np.asarray(clouds))]


def read_cloud(path: str | Path, n_points: int | None = None, seed: int = 0) -> np.ndarray:
    """Read a cloud [N, 3] from a point-cloud file (vertices only) or a mesh (surface-sampled, ``n_points`` needed).

    With ``n_points`` a point-cloud file is subsampled (or resampled with replacement when it has fewer points).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    try:
        import trimesh

        loaded = trimesh.load(str(path), process=False)
    except Exception as exc:  # trimesh raises many kinds of errors for broken files
        raise ValueError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    if isinstance(loaded, trimesh.Scene):
        loaded = load_mesh(path)
    if isinstance(loaded, trimesh.Trimesh) and len(loaded.faces) > 0:
        if n_points is None:
            raise ValueError(f"{path} is a mesh: give n_points to sample its surface")
        pts, _ = trimesh.sample.sample_surface(loaded, n_points, seed=seed)
        return np.asarray(pts, dtype=np.float32)
    pts = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))), dtype=np.float32)
    if len(pts) == 0:
        raise ValueError(f"{path} holds no points")
    if n_points is not None and n_points != len(pts):
        rng = np.random.default_rng(seed)
        pts = pts[rng.choice(len(pts), n_points, replace=n_points > len(pts))]
    return pts


def depth_colours(points: np.ndarray, elev: float = PREVIEW_VIEW["elev"], azim: float = PREVIEW_VIEW["azim"]) -> np.ndarray:
    """Depth of every point along the viewing direction of matplotlib's camera at (elev, azim), larger = nearer."""
    e, a = math.radians(elev), math.radians(azim)
    towards_camera = np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])
    return np.asarray(points) @ towards_camera


def preview_grid(clouds: np.ndarray, path: str | Path, titles: list[str] | None = None, cols: int = 4,
                 size: float = 2.5, point_size: float = 1.5) -> Path:
    """Render clouds [M, N, 3] as a PNG grid of 3D scatter plots, fixed view, z up, coloured by depth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clouds = np.asarray(clouds)
    if clouds.ndim != 3 or clouds.shape[-1] != 3 or len(clouds) == 0:
        raise ValueError(f"preview needs clouds of shape [M, N, 3] with M >= 1, got {clouds.shape}")
    cols = min(cols, len(clouds))
    rows = math.ceil(len(clouds) / cols)
    fig = plt.figure(figsize=(cols * size, rows * size), dpi=100)
    for i, pts in enumerate(clouds):
        ax = fig.add_subplot(rows, cols, i + 1, projection="3d")
        order = np.argsort(depth_colours(pts))
        p = pts[order]
        ax.scatter(p[:, 0], p[:, 1], p[:, 2], c=depth_colours(p), cmap="viridis", s=point_size, linewidths=0)
        centre = (p.max(0) + p.min(0)) / 2
        half = max(float((p.max(0) - p.min(0)).max()) / 2, 1e-6)
        for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre):
            setter(c - half, c + half)
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(**PREVIEW_VIEW)
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
