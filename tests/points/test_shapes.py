"""Tests of the labelled procedural shape set (API reused by the text-to-3D domain)."""
from __future__ import annotations

import numpy as np
import pytest

from polydiff.domains.points.shapes import CLASSES, labelled_set, make_shape


def test_every_class_builds_a_nonempty_mesh_with_part_ids() -> None:
    assert len(CLASSES) >= 5
    for name in CLASSES:
        mesh = make_shape(name, np.random.default_rng(0))
        assert len(mesh.faces) > 0 and mesh.area > 0
        face_part = mesh.metadata["face_part"]
        assert face_part.shape == (len(mesh.faces),)
        assert set(np.unique(face_part)) == set(range(len(mesh.metadata["part_names"])))
        assert mesh.bounds[0, 2] >= -1e-6  # stands on the floor, z up


def test_labelled_set_is_deterministic_and_prefix_stable() -> None:
    a = labelled_set(2, seed=3)
    b = labelled_set(3, seed=3)
    assert [c for _, c in a] == [c for c in CLASSES for _ in range(2)]
    np.testing.assert_array_equal(a[0][0].vertices, b[0][0].vertices)
    np.testing.assert_array_equal(a[2][0].vertices, b[3][0].vertices)
    assert not np.array_equal(a[0][0].vertices, a[1][0].vertices)
    c = labelled_set(2, seed=4)
    assert not np.array_equal(a[0][0].vertices, c[0][0].vertices)


def test_unknown_class_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown shape class"):
        make_shape("sofa", np.random.default_rng(0))
    with pytest.raises(ValueError, match="n_per_class"):
        labelled_set(0)
