"""Per-class geometric checks: exact cases from trimesh primitives, and ground-truth fields through the exporter."""
import numpy as np
import pytest
import trimesh
from trimesh import creation

from polydiff.domains.points.shapes import make_shape
from polydiff.domains.text3d.cleanup import clean_mesh
from polydiff.domains.text3d.mesh import extract_mesh
from polydiff.domains.text3d.metric import ground_truth_field
from polydiff.domains.text3d.shape_checks import check_shape


def _box(extents, centre) -> trimesh.Trimesh:
    """An axis-aligned box of ``extents`` centred at ``centre``."""
    return creation.box(extents=extents, transform=trimesh.transformations.translation_matrix(centre))


def _placed(mesh: trimesh.Trimesh, azimuth: float) -> trimesh.Trimesh:
    """``mesh`` turned about z by ``azimuth``, scaled and moved off the origin (the checks must not care)."""
    m = mesh.copy()
    m.apply_transform(trimesh.transformations.rotation_matrix(azimuth, [0, 0, 1]))
    m.apply_scale(1.7)
    m.apply_translation([0.4, -0.3, 0.6])
    return m


def _mug() -> trimesh.Trimesh:
    """An open-top tube with a base and a torus handle (loop in the x-z plane) on its +x side."""
    body = creation.annulus(r_min=0.34, r_max=0.4, segment=[[0, 0, 0.05], [0, 0, 0.9]], sections=32)
    base = creation.cylinder(radius=0.4, segment=[[0, 0, 0], [0, 0, 0.05]], sections=32)
    turn = trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0])
    handle = creation.torus(0.22, 0.045, transform=trimesh.transformations.translation_matrix([0.4, 0, 0.45]) @ turn)
    return trimesh.util.concatenate([body, base, handle])


def _table() -> trimesh.Trimesh:
    """A box top on four box legs."""
    legs = [_box((0.08, 0.08, 0.7), (sx * 0.6, sy * 0.35, 0.35)) for sx in (-1, 1) for sy in (-1, 1)]
    return trimesh.util.concatenate([*legs, _box((1.4, 0.9, 0.05), (0, 0, 0.725))])


@pytest.mark.parametrize("azimuth", [0.0, 1.1])
def test_torus_handle_mug_passes_and_closed_cylinder_fails(azimuth):
    out = check_shape(_placed(_mug(), azimuth), "mug")
    assert out["shape"] == "mug" and out["passed"] is True, out
    assert out["through_hole_pixels"] > 0 and out["reason"].startswith("handle loop found")
    cylinder = check_shape(_placed(creation.cylinder(radius=0.4, height=0.9), azimuth), "mug")
    assert cylinder["passed"] is False and cylinder["reason"].startswith("no handle"), cylinder


@pytest.mark.parametrize("azimuth", [0.0, 0.7])
def test_table_on_four_legs_passes_and_solid_box_fails(azimuth):
    out = check_shape(_placed(_table(), azimuth), "table")
    assert out["passed"] is True and out["legs"] == 4, out
    assert check_shape(_placed(_box((1.4, 0.9, 0.75), (0, 0, 0)), azimuth), "table")["passed"] is False


def test_pedestal_table_passes():
    parts = [creation.cylinder(radius=0.2, segment=[[0, 0, 0], [0, 0, 0.04]]),
             creation.cylinder(radius=0.05, segment=[[0, 0, 0.04], [0, 0, 0.7]]),
             creation.cylinder(radius=0.5, segment=[[0, 0, 0.7], [0, 0, 0.75]])]
    out = check_shape(trimesh.util.concatenate(parts), "table")
    assert out["passed"] is True and out["legs"] == 0 and "pedestal" in out["reason"], out


def test_procedural_chair_passes_and_box_fails():
    chair = make_shape("chair", np.random.default_rng(0))
    out = check_shape(_placed(chair, 2.0), "chair")
    assert out["passed"] is True and out["legs"] == 4, out
    assert check_shape(_box((0.5, 0.5, 1.0), (0, 0, 0)), "chair")["passed"] is False


def test_negatives_and_unchecked_classes():
    sphere = creation.icosphere(subdivisions=3, radius=0.7)
    assert [check_shape(sphere, s)["passed"] for s in ("mug", "table", "chair")] == [False, False, False]
    assert check_shape(_table(), "mug")["passed"] is False and check_shape(_table(), "chair")["passed"] is False
    assert check_shape(_mug(), "table")["passed"] is False
    out = check_shape(sphere, "lamp")
    assert out == {"shape": "lamp", "passed": None, "reason": "no geometric check for this class"}


@pytest.mark.parametrize("shape", ["mug", "table", "chair"])
def test_ground_truth_fields_through_the_exporter(shape):
    field = ground_truth_field("red", shape, seed=10_002, resolution=48)
    mesh = clean_mesh(extract_mesh(field, resolution=48, threshold=5.0, blur=1.0), components=1, max_hole=100,
                      smooth=10)
    results = {s: check_shape(mesh, s)["passed"] for s in ("mug", "table", "chair")}
    assert results == {s: s == shape for s in results}, results
