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


def test_captions_with_attributes_and_the_shaped_mesh():
    assert caption("blue", "lamp", attribute="tall") == "a tall blue lamp"
    assert caption("green", "mug", "side", "small") == "a small green mug, side view"
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    tall, small, wide = (data.shaped(box, a).extents for a in ("tall", "small", "wide"))
    assert np.allclose(tall, [1.0, 1.0, 1.6]) and np.allclose(small, [1.0, 1.0, 1.0]) and np.allclose(wide, [1.6, 1.6, 1.0])
    with pytest.raises(ValueError, match="unknown attribute"):
        data.shaped(box, "huge")


def test_render_set_holds_out_pairs_and_labels_attributes():
    classes = data.shape_classes()
    holdout = tuple(f"{c} chair" for c in data.COLOR_NAMES[:-1])  # chairs may only be the last colour
    cfg = RenderSetConfig(n_per_class=3, views_per_shape=1, size=16, voxel_resolution=24, n_samples=16,
                          attributes=("small", "tall"), attribute_rate=1.0, holdout=holdout, ambient=(0.2, 0.5))
    d = load_render_set(cfg)
    chairs = d["color"][d["shape"] == classes.index("chair")]
    assert (chairs == len(data.COLOR_NAMES) - 1).all()
    assert set(d["attribute"].tolist()) <= {1, 2} and (d["attribute"] > 0).all()
    caps = captions_of(d)
    assert all(c.split()[1] in ("small", "tall") for c in caps)
    with pytest.raises(ValueError, match="colour shape"):
        data.check_combinations(RenderSetConfig(holdout=("green dragon",)))
    with pytest.raises(ValueError, match="no colour at all"):
        data.check_combinations(RenderSetConfig(holdout=tuple(f"{c} mug" for c in data.COLOR_NAMES)))


def test_render_set_key_is_unchanged_for_the_older_settings():
    assert RenderSetConfig().key() == "renders_24_8_32_48_64_0_0.05"
    assert RenderSetConfig(holdout=["green chair"]).key() == RenderSetConfig(holdout=("green chair",)).key()
    assert RenderSetConfig(holdout=("green chair",)).key().endswith("_holdout-greenchair")


def test_token_states_pool_to_the_sentence_embedding_and_pad_with_a_mask():
    from polydiff.domains.text3d.text import encode_tokens

    prompts = ["a tall blue lamp, front view", "a mug"]
    states, mask = encode_tokens(prompts)
    assert states.shape[0] == 2 and mask.sum(1).tolist()[0] > mask.sum(1).tolist()[1]
    assert not states[1, ~mask[1]].any()
    pooled = torch.nn.functional.normalize((states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1)
    assert torch.allclose(pooled, encode(prompts), atol=1e-5)
    longer, mask2 = encode_tokens(prompts, length=20)
    assert longer.shape[1] == 20 and torch.equal(longer[:, :states.shape[1]], states) and torch.equal(mask2.sum(1), mask.sum(1))
    with pytest.raises(ValueError, match="more than the length"):
        encode_tokens(prompts, length=2)
