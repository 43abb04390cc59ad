"""Mesh clean-up and the topology report, on synthetic trimesh meshes with known answers."""
import numpy as np
import pytest
import torch
import trimesh

from polydiff.domains.text3d.cleanup import boundary_loops, clean_mesh, fill_holes, keep_largest, mesh_report, report_line
from polydiff.domains.text3d.fields import VoxelField
from polydiff.domains.text3d.mesh import extract_mesh


def _coloured(mesh: trimesh.Trimesh, rgb: tuple[int, int, int]) -> trimesh.Trimesh:
    """``mesh`` with one vertex colour, unprocessed (no merging), so vertex indices stay put."""
    colours = np.tile(np.array([*rgb, 255], np.uint8), (len(mesh.vertices), 1))
    return trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_colors=colours, process=False)


def _concat(*meshes: trimesh.Trimesh) -> trimesh.Trimesh:
    """Meshes side by side in one mesh, vertex colours kept."""
    verts, faces, cols, offset = [], [], [], 0
    for m in meshes:
        verts.append(m.vertices)
        faces.append(m.faces + offset)
        cols.append(m.visual.vertex_colors)
        offset += len(m.vertices)
    return trimesh.Trimesh(np.concatenate(verts), np.concatenate(faces), vertex_colors=np.concatenate(cols),
                           process=False)


def _sphere_with_floaters() -> tuple[trimesh.Trimesh, trimesh.Trimesh]:
    """A red unit-ish sphere plus three small blue spheres around it; also the sphere alone."""
    big = _coloured(trimesh.creation.icosphere(subdivisions=3, radius=0.6), (200, 30, 20))
    small = [_coloured(trimesh.creation.icosphere(subdivisions=1, radius=0.05).apply_translation(t), (0, 0, 255))
             for t in ([0.9, 0, 0], [0, -0.9, 0.2], [0.1, 0.3, 0.9])]
    return _concat(big, *small), big


def _open_box() -> trimesh.Trimesh:
    """A unit box (8 shared vertices, 12 faces) with one triangle of its top removed: a 3-edge hole."""
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    top = int(np.argmax(box.triangles_center[:, 2]))
    faces = np.delete(box.faces, top, axis=0)
    colours = np.arange(32, dtype=np.uint8).reshape(8, 4) * 7
    return trimesh.Trimesh(box.vertices, faces, vertex_colors=colours, process=False)


def test_report_of_a_sphere_a_torus_and_two_tori():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    assert mesh_report(sphere) == {"components": 1, "genus": 0, "genus_largest": 0, "euler": 2, "boundary_loops": 0,
                                   "faces": 320, "vertices": 162, "watertight": True}
    torus = trimesh.creation.torus(major_radius=0.6, minor_radius=0.2)
    report = mesh_report(torus)
    assert report["components"] == 1 and report["genus"] == 1 and report["euler"] == 0 and report["watertight"]
    two = mesh_report(_concat(_coloured(torus, (1, 2, 3)), _coloured(sphere.apply_translation([3, 0, 0]), (4, 5, 6))))
    assert (two["components"], two["genus"], two["euler"]) == (2, 1, 2)
    assert two["genus_largest"] == 0  # the sphere (radius 1) encloses more than the torus
    assert report_line(two) == f"2 components, genus 1, {two['faces']:,} faces, {two['vertices']:,} vertices, watertight"


def test_report_of_an_open_mesh_counts_its_boundary_loops():
    box = _open_box()
    report = mesh_report(box)
    assert report == {"components": 1, "genus": 0, "genus_largest": 0, "euler": 1, "boundary_loops": 1, "faces": 11,
                      "vertices": 8, "watertight": False}
    assert "open (1 boundary loops)" in report_line(report)
    assert mesh_report(trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), int)))["components"] == 0


def test_floaters_are_dropped_and_the_sphere_is_kept_with_its_colours():
    mesh, big = _sphere_with_floaters()
    assert mesh_report(mesh)["components"] == 4
    kept = keep_largest(mesh, 1)
    assert len(kept.vertices) == len(big.vertices) and len(kept.faces) == len(big.faces)
    assert np.array_equal(kept.vertices, big.vertices) and np.array_equal(kept.faces, big.faces)
    assert np.array_equal(kept.visual.vertex_colors, big.visual.vertex_colors)
    assert mesh_report(keep_largest(mesh, 2))["components"] == 2
    assert keep_largest(mesh, 0) is mesh


def test_a_closed_part_outranks_a_larger_open_sheet():
    sheet = _coloured(trimesh.creation.box(extents=(3.0, 3.0, 0.01)), (0, 255, 0))
    sheet = trimesh.Trimesh(sheet.vertices, sheet.faces[:-1], vertex_colors=sheet.visual.vertex_colors, process=False)
    ball = _coloured(trimesh.creation.icosphere(subdivisions=2, radius=0.3).apply_translation([0, 0, 1]), (255, 0, 0))
    kept = keep_largest(_concat(sheet, ball), 1)
    assert sheet.area > ball.area and len(kept.faces) == len(ball.faces)
    assert np.all(kept.visual.vertex_colors[:, :3] == [255, 0, 0])


def test_a_box_with_a_missing_face_is_closed_and_faces_outwards():
    box = _open_box()
    assert boundary_loops(np.asarray(box.faces)) != [] and len(boundary_loops(np.asarray(box.faces))[0]) == 3
    filled = fill_holes(box, max_edges=8)
    assert filled.is_watertight and filled.is_winding_consistent and filled.volume == pytest.approx(1.0)
    assert len(filled.vertices) == 9 and len(filled.faces) == 14  # one centre vertex, a fan of 3 faces
    assert np.array_equal(filled.visual.vertex_colors[:8], box.visual.vertex_colors)
    assert fill_holes(box, max_edges=2) is box  # too small a limit: left open
    assert mesh_report(filled)["watertight"] and mesh_report(filled)["genus"] == 0


def test_clean_mesh_fixes_inverted_faces_keeps_colours_and_smooths_in_place():
    mesh, big = _sphere_with_floaters()
    inverted = trimesh.Trimesh(mesh.vertices, mesh.faces[:, ::-1], vertex_colors=mesh.visual.vertex_colors,
                               process=False)
    clean = clean_mesh(inverted, components=1, max_hole=100, smooth=10)
    assert mesh_report(clean) == mesh_report(big)
    assert clean.volume > 0  # turned outwards again
    assert np.array_equal(clean.visual.vertex_colors, big.visual.vertex_colors)
    radii = np.linalg.norm(clean.vertices, axis=1)
    assert abs(radii.mean() - 0.6) < 0.01  # Taubin smoothing keeps the size
    raw = clean_mesh(mesh, components=0, max_hole=0, smooth=0)
    assert np.array_equal(raw.vertices, mesh.vertices) and np.array_equal(raw.faces, mesh.faces)


def test_blurring_the_density_removes_noise_floaters():
    g = torch.Generator().manual_seed(0)
    axis = torch.linspace(-1, 1, 32)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    r = (x**2 + y**2 + z**2).sqrt()
    density = 20 * torch.sigmoid((0.5 - r) * 20) + 6 * torch.rand(32, 32, 32, generator=g)
    field = VoxelField.from_grids(density, torch.tensor([0.2, 0.6, 0.2]))
    noisy = mesh_report(extract_mesh(field, resolution=32, threshold=5.0))
    blurred = extract_mesh(field, resolution=32, threshold=5.0, blur=1.0)
    assert noisy["components"] > 5
    assert mesh_report(blurred)["components"] == 1 and mesh_report(blurred)["genus"] == 0


def _ball_field() -> VoxelField:
    """A red ball of radius 0.5 on a 24^3 grid (peak density 20)."""
    axis = torch.linspace(-1, 1, 24)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    return VoxelField.from_grids(20 * torch.sigmoid((0.5 - (x**2 + y**2 + z**2).sqrt()) * 20), torch.tensor([0.9, 0.1, 0.1]))


def test_generate_reports_the_cleaned_mesh_and_saves_it_with_a_preview_of_the_asked_size(tmp_path):
    import json

    from PIL import Image

    from polydiff.domains.text3d.distill import DistillResult
    from polydiff.domains.text3d.plugin import SampleOptions
    from polydiff.domains.text3d.sampling import mesh_line, object_mesh, save_samples
    from polydiff.plugins.domain import Samples

    ev = {"mesh_resolution": 24, "mesh_threshold": 5.0}
    mesh, report = object_mesh(_ball_field(), ev, SampleOptions(preview_size=16))
    assert (report["components"], report["genus"], report["watertight"]) == (1, 0, True)
    assert report["marching_cubes"]["faces"] >= report["faces"] == len(mesh.faces)
    assert mesh_line(report).startswith("1 component, genus 0, ") and "(marching cubes: 1 component" in mesh_line(report)
    raw, raw_report = object_mesh(_ball_field(), ev, SampleOptions(mesh_cleanup=False))
    assert "marching_cubes" not in raw_report and raw_report["faces"] == len(raw.faces)
    error, error_report = object_mesh(_ball_field(), {**ev, "mesh_threshold": 50.0}, SampleOptions())
    assert isinstance(error, str) and "does not cross threshold" in error_report["error"]

    result = DistillResult(_ball_field(), [1.0, 0.5], 0.1, {"steps": 2})
    samples = Samples({"kind": "objects", "results": [result, result], "meshes": [mesh, error], "preview_size": 16},
                      {"prompt": "a red ball"})
    names = {p.name for p in save_samples(samples, tmp_path)}
    assert {"object_00.glb", "object_00.obj", "object_01_turntable.gif", "preview.png"} <= names
    assert (tmp_path / "object_01_mesh_error.txt").is_file() and "object_01.glb" not in names
    assert len(trimesh.load(tmp_path / "object_00.glb", force="mesh").faces) == len(mesh.faces)
    with Image.open(tmp_path / "object_00_turntable.gif") as gif, Image.open(tmp_path / "preview.png") as preview:
        assert gif.size == (16, 16) and preview.size == (8 * 16, 2 * 16)  # a row of 8 frames per object
    json.dumps(report)
