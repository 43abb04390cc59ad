"""Anchored set denoising: every network call sees a set of the training size, and the pieces land where they belong."""
from __future__ import annotations

import pytest
import torch

from polydiff.domains.points.anchored import anchored, chunk_sets


def test_chunks_cover_every_point_past_the_anchor_once() -> None:
    g = torch.Generator().manual_seed(0)
    idx, is_new = chunk_sets(300, 64, 32, g)  # 236 points past the anchor: 7 chunks of 32 new, then one of 12
    assert idx.shape == (8, 64) and is_new.shape == (8, 64)
    assert sorted(idx[is_new].tolist()) == list(range(64, 300))
    assert bool((idx[~is_new] < 64).all()) and int(is_new[-1].sum()) == 12 and int(is_new[0].sum()) == 32
    for row, new in zip(idx, is_new):
        assert len(set(row[~new].tolist())) == int((~new).sum())  # distinct context points


def test_a_per_point_denoiser_is_unchanged() -> None:
    """A denoiser that treats points independently (iid Gaussian data: D = x / (1 + sigma^2)) gives the same answer."""
    def per_point(x, sigma, cond=None):
        return x / (1 + sigma.reshape(-1, 1, 1) ** 2)

    x, sigma = torch.randn(3, 200, 3, dtype=torch.float64), torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    out = anchored(per_point, 48, generator=torch.Generator().manual_seed(1))(x, sigma)
    assert torch.allclose(out, per_point(x, sigma), atol=1e-12)


def test_each_point_gets_the_estimate_of_its_own_set_of_the_training_size() -> None:
    sizes = []

    def set_mean(x, sigma, cond=None):  # set-dependent: every point moves towards the mean of the set it is in
        sizes.append(x.shape[1])
        return x - x.mean(1, keepdim=True) + sigma.reshape(-1, 1, 1) + cond["label"].reshape(-1, 1, 1).to(x.dtype)

    b, n, s, c = 2, 150, 40, 10
    x, sigma = torch.randn(b, n, 3, dtype=torch.float64), torch.tensor([0.3, 0.7], dtype=torch.float64)
    labels = torch.tensor([5, 9])
    out = anchored(set_mean, s, c, generator=torch.Generator().manual_seed(2))(x, sigma, {"label": labels})
    assert sizes == [s]  # one batched call, all of the training size
    sizes.clear()
    idx, is_new = chunk_sets(n, s, c, torch.Generator().manual_seed(2))
    want = torch.empty_like(x)
    want[:, :s] = set_mean(x[:, :s], sigma, {"label": labels})
    for row, new in zip(idx, is_new):
        est = set_mean(x[:, row], sigma, {"label": labels})
        want[:, row[new]] = est[:, new]
    assert torch.allclose(out, want, atol=1e-12)


def test_small_clouds_and_bad_context() -> None:
    def ident(x, sigma, cond=None):
        return 2 * x

    x = torch.randn(1, 30, 3)
    assert torch.equal(anchored(ident, 32)(x, torch.ones(1)), 2 * x)
    with pytest.raises(ValueError, match="anchor context must be in 1..31"):
        anchored(ident, 32, 32)
