"""Marching cubes, GLB / OBJ files with vertex colours, and the turntable GIF."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from polydiff.domains.text3d.fields import SphereField, VoxelField
from polydiff.domains.text3d.mesh import extract_mesh, save_mesh
from polydiff.domains.text3d.turntable import save_gif, turntable_frames


def _ball_field(radius=0.55, rgb=(0.8, 0.2, 0.1)):
    axis = torch.linspace(-1, 1, 40)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    r = (x**2 + y**2 + z**2).sqrt()
    return VoxelField.from_grids(20 * torch.sigmoid((radius - r) * 30), torch.tensor(rgb))


def test_marching_cubes_recovers_a_sphere():
    mesh = extract_mesh(_ball_field(), resolution=48, threshold=10.0)
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert abs(radii.mean() - 0.55) < 0.02 and radii.std() < 0.02
    assert mesh.is_watertight
    assert abs(mesh.volume - 4 / 3 * math.pi * 0.55**3) < 0.05 * 4 / 3 * math.pi * 0.55**3  # outward faces: volume > 0
    colours = mesh.visual.vertex_colors[:, :3].astype(float) / 255
    assert np.allclose(colours, [0.8, 0.2, 0.1], atol=0.01)


def test_glb_and_obj_round_trip_with_colours(tmp_path):
    import trimesh

    mesh = extract_mesh(_ball_field(rgb=(0.1, 0.3, 0.9)), resolution=24, threshold=10.0)
    glb = trimesh.load(save_mesh(mesh, tmp_path / "ball.glb"), force="mesh")
    assert len(glb.vertices) == len(mesh.vertices) and len(glb.faces) == len(mesh.faces)
    assert np.array_equal(glb.visual.vertex_colors, mesh.visual.vertex_colors)
    obj = trimesh.load(save_mesh(mesh, tmp_path / "ball.obj"), force="mesh", process=False)
    assert len(obj.faces) == len(mesh.faces)
    assert np.abs(obj.visual.vertex_colors[:, :3].astype(int) - mesh.visual.vertex_colors[:, :3].astype(int)).max() <= 1
    with pytest.raises(ValueError, match="glb or .obj"):
        save_mesh(mesh, tmp_path / "ball.stl")


def test_empty_field_gives_a_clear_error():
    with pytest.raises(ValueError, match="does not cross threshold"):
        extract_mesh(SphereField(0.5, 1.0), resolution=16, threshold=5.0)


def test_turntable_gif(tmp_path):
    frames = turntable_frames(SphereField(0.5, 8.0, rgb=(0.0, 0.0, 1.0)), n_frames=6, size=16, n_samples=32)
    assert frames.shape == (6, 16, 16, 3) and frames.dtype == np.uint8
    path = save_gif(frames, tmp_path / "spin.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == 6 and gif.size == (16, 16)
        gif.seek(3)
        centre = np.asarray(gif.convert("RGB"))[8, 8]
    assert centre[2] > 100 and centre[0] < 60  # a blue ball in the middle of every frame
    with pytest.raises(ValueError, match="uint8"):
        save_gif(frames.astype(np.float32), tmp_path / "bad.gif")
