"""Prior data: voxelisation against exact volumes, captions, the render set and its cache, text embeddings."""
import numpy as np
import pytest
import torch
import trimesh

from polydiff.domains.text3d import data
from polydiff.domains.text3d.data import RenderSetConfig, caption, captions_of, load_render_set, normalise_mesh, voxelise
from polydiff.domains.text3d.text import encode, null_embedding


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYDIFF_CACHE", str(tmp_path / "cache"))


def test_voxelised_box_has_the_box_volume():
    box = trimesh.creation.box(extents=(1.0, 0.5, 1.5))
    occ = voxelise(box, resolution=40, n_points=40000)
    cell = (2 / 40) ** 3
    # The surface voxels add at most one shell of cells: volume within one cell layer of the exact 0.75.
    assert 0.75 <= occ.sum() * cell <= 0.75 + 2 * (0.5 + 0.75 + 0.375) * (2 / 40) + 1e-9
    assert occ[20, 20, 20] and not occ[0, 0, 0]


def test_normalise_mesh_centres_and_scales():
    m = normalise_mesh(trimesh.creation.box(extents=(2.0, 1.0, 0.5), transform=trimesh.transformations.translation_matrix([3, 1, 0])))
    assert np.allclose(m.bounds.mean(0), 0, atol=1e-9) and np.isclose(np.abs(m.bounds).max(), 0.8)


def test_captions():
    assert caption("red", "mug", "front") == "a red mug, front view"
    assert caption("orange", "lamp") == "an orange lamp"


def test_render_set_labels_images_and_cache():
    cfg = RenderSetConfig(n_per_class=1, views_per_shape=2, size=16, voxel_resolution=24, n_samples=24)
    first = load_render_set(cfg)
    n = len(data.shape_classes()) * 2
    assert first["images"].shape == (n, 3, 16, 16) and first["images"].dtype == torch.uint8
    assert first["shape"].tolist() == [i for i in range(n // 2) for _ in range(2)]
    img = first["images"].float() / 255
    assert (img.amin(dim=(1, 2, 3)) < 0.6).all() and (img[:, :, 0, 0] > 0.99).all()  # an object on a white corner
    # The dominant non-background colour is the labelled one.
    for im, c in zip(img, first["color"]):
        fg = im.reshape(3, -1)[:, (im.reshape(3, -1) < 0.95).any(0)]
        target = torch.tensor(data.COLORS[data.COLOR_NAMES[int(c)]])
        assert torch.argmax(fg.mean(1)) == torch.argmax(target)
    again = load_render_set(cfg)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert len(captions_of(first)) == n and captions_of(first)[0].startswith("a") and captions_of(first)[0].endswith(" view")


def test_text_embeddings_are_unit_cached_and_separate_prompts():
    e = encode(["a red mug, front view", "a blue chair, side view", "a red mug, front view"])
    assert e.shape == (3, 384) and torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.equal(e[0], e[2]) and float(e[0] @ e[1]) < 0.9
    assert torch.equal(encode(["a blue chair, side view"])[0], e[1])
    assert torch.equal(null_embedding(2), torch.zeros(2, 384))
    with pytest.raises(ValueError, match="list of prompts"):
        encode("a red mug")
