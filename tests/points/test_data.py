"""Mesh loading, skipping and reporting, the deterministic split, normalisation and the npz cache."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import trimesh

from polydiff.domains.points.data import (Normalization, is_held_out, load_folder, load_set, random_urdfs_folder,
                                          sample_clouds)


@pytest.fixture()
def mesh_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "meshes"
    (folder / "sub").mkdir(parents=True)
    trimesh.creation.box(extents=(1, 2, 3)).export(folder / "box.obj")
    trimesh.creation.icosphere(subdivisions=2).export(folder / "sub" / "ball.ply")
    trimesh.creation.cylinder(radius=0.5, height=1.0).export(folder / "can.stl")
    (folder / "empty.obj").write_text("# no faces\nv 0 0 0\n")
    (folder / "broken.off").write_text("this is not an OFF file")
    (folder / "notes.txt").write_text("ignored: not a mesh suffix")
    return folder


def test_load_folder_skips_and_reports_bad_meshes(mesh_folder: Path) -> None:
    loaded = load_folder(mesh_folder)
    assert sorted(loaded.names) == ["box.obj", "can.stl", "sub/ball.ply"]
    assert sorted(n for n, _ in loaded.skipped) == ["broken.off", "empty.obj"]
    assert "loaded 3 meshes, skipped 2" in loaded.report()


def test_empty_and_missing_folders_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no mesh files"):
        load_folder(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        load_folder(tmp_path / "nope")
    with pytest.raises(ValueError, match="unknown data source"):
        load_set(str(tmp_path / "nope"))


def test_random_urdfs_empty_mesh_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYDIFF_CACHE", str(tmp_path / "cache"))
    src = random_urdfs_folder()
    for name in ("000", "001", "168"):
        shutil.copytree(src / name, tmp_path / "urdfs" / name)
    ps = load_set(str(tmp_path / "urdfs"), n_points=64)
    assert ps.names == ["000/000.obj", "001/001.obj"] and ps.points.shape == (2, 64, 3)
    assert [n for n, _ in ps.skipped] == ["168/168.obj"]


def test_surface_samples_lie_on_the_mesh_and_are_seeded() -> None:
    box = trimesh.creation.box(extents=(2, 2, 2))
    a = sample_clouds([box], 200, seed=5)
    assert np.allclose(np.abs(a[0]).max(1), 1.0, atol=1e-5)  # every point on a face of the cube
    np.testing.assert_array_equal(a, sample_clouds([box], 200, seed=5))


def test_split_is_deterministic_and_near_the_fraction() -> None:
    names = [f"{i:03d}" for i in range(1000)]
    held = [is_held_out(n) for n in names]
    assert held == [is_held_out(n) for n in names]
    assert 0.15 < np.mean(held) < 0.25


def test_normalizations() -> None:
    g = np.random.default_rng(0)
    clouds = g.normal(size=(4, 100, 3)) * 3 + 5
    glob = Normalization.fit("global", clouds)
    x = glob.apply(clouds)
    assert np.allclose(x.reshape(-1, 3).mean(0), 0, atol=1e-5)
    assert glob.std == pytest.approx(clouds.reshape(-1).std())  # PointFlow: one std of all raw coordinates
    np.testing.assert_allclose(glob.invert(x), clouds, atol=1e-4)
    assert Normalization.from_dict(glob.to_dict()) == glob
    s = Normalization.fit("shape", clouds).apply(clouds)
    assert np.allclose(np.linalg.norm(s, axis=-1).max(1), 1.0, atol=1e-6)
    assert np.allclose((s.max(1) + s.min(1)) / 2, 0, atol=1e-6)
    with pytest.raises(ValueError, match="unknown normalization"):
        Normalization("minmax")


def test_shapes_set_is_cached_and_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYDIFF_CACHE", str(tmp_path))
    ps = load_set("shapes", n_points=32, n_per_class=4)
    assert ps.points.shape == (4 * len(ps.classes), 32, 3) and set(ps.labels.tolist()) == set(range(len(ps.classes)))
    assert len(list((tmp_path / "points").glob("*.npz"))) == 1
    again = load_set("shapes", n_points=32, n_per_class=4)
    np.testing.assert_array_equal(ps.points, again.points)
    train, test = ps.split("train"), ps.split("test")
    assert len(train) + len(test) == len(ps) and not set(train.names) & set(test.names)
