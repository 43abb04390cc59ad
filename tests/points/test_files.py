"""PLY round trip, reading meshes as clouds, the PNG preview and completion by inpainting."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from polydiff.core.schedules import karras_sigmas
from polydiff.domains.points.completion import complete, crop_half, known_and_mask
from polydiff.domains.points.files import depth_colours, preview_grid, read_cloud, write_clouds, write_ply


def test_ply_round_trip_is_exact_and_readable_by_trimesh(tmp_path: Path) -> None:
    pts = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    path = write_ply(tmp_path / "a.ply", pts)
    np.testing.assert_array_equal(read_cloud(path), pts)
    np.testing.assert_array_equal(np.asarray(trimesh.load(path).vertices), pts)
    assert len(read_cloud(path, n_points=250)) == 250
    files = write_clouds(tmp_path / "many", np.stack([pts, pts + 1]))
    assert [f.name for f in files] == ["cloud_0000.ply", "cloud_0001.ply"]
    with pytest.raises(ValueError, match="non-finite"):
        write_ply(tmp_path / "bad.ply", np.full((3, 3), np.nan))


def test_read_mesh_samples_its_surface(tmp_path: Path) -> None:
    trimesh.creation.box(extents=(2, 2, 2)).export(tmp_path / "box.obj")
    pts = read_cloud(tmp_path / "box.obj", n_points=300)
    assert pts.shape == (300, 3) and np.allclose(np.abs(pts).max(1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="n_points"):
        read_cloud(tmp_path / "box.obj")
    with pytest.raises(ValueError, match="no such file"):
        read_cloud(tmp_path / "missing.ply")


def test_preview_grid_png(tmp_path: Path) -> None:
    clouds = np.random.default_rng(1).normal(size=(5, 200, 3))
    path = preview_grid(clouds, tmp_path / "grid.png", cols=3, size=1.0)
    assert Image.open(path).size == (300, 200)
    nearer = depth_colours(np.array([[10.0, -10.0, 10.0], [-10.0, 10.0, -10.0]]))
    assert nearer[0] > nearer[1]  # the camera sits at azim -60 deg, elev 20 deg


def test_completion_keeps_known_points_exactly() -> None:
    cloud = np.random.default_rng(2).normal(size=(64, 3))
    partial = torch.tensor(crop_half(cloud, keep=0.25), dtype=torch.float32)
    assert partial.shape == (16, 3) and partial[:, 2].min() >= np.sort(cloud[:, 2])[-16] - 1e-6
    known, mask = known_and_mask(partial, 64)
    assert known.shape == (1, 64, 3) and mask.sum() == 16

    def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor, cond=None) -> torch.Tensor:
        return x / (1 + sigma.reshape(-1, 1, 1) ** 2)  # exact denoiser of N(0, I) data

    g = torch.Generator().manual_seed(0)
    out = complete(gaussian_denoiser, partial[None], 64, karras_sigmas(10, 0.01, 20.0), "heun", generator=g)
    assert out.shape == (1, 64, 3)
    assert torch.allclose(out[0, :16], partial, atol=1e-5)
    assert 0.3 < out[0, 16:].std() < 2.0
    with pytest.raises(ValueError, match="cannot be completed"):
        known_and_mask(torch.zeros(1, 70, 3), 64)
