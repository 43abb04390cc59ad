"""Exact checks of the PointFlow metrics: CD, EMD (vs brute force), MMD, COV and 1-NNA."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from polydiff.domains.points.metrics import (chamfer, emd, evaluate_sets, mmd_cov, one_nna, pairwise_chamfer,
                                             pairwise_chamfer_dense, pairwise_emd)


def _singletons(xs: list[float]) -> torch.Tensor:
    return torch.tensor([[[x, 0.0, 0.0]] for x in xs])


def test_chamfer_hand_computed() -> None:
    a = torch.tensor([[[0.0, 0, 0], [2.0, 0, 0]]])
    b = torch.tensor([[[0.0, 0, 0]]])
    assert chamfer(a, b).item() == pytest.approx(2.0)  # a->b: (0 + 4) / 2, b->a: 0
    assert chamfer(_singletons([0.0]), _singletons([3.0])).item() == pytest.approx(18.0)


def test_emd_equals_brute_force_on_six_points() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 6, 3, generator=g), torch.randn(1, 6, 3, generator=g)
    cost = torch.cdist(a[0].double(), b[0].double()).numpy()
    brute = min(cost[np.arange(6), list(p)].mean() for p in itertools.permutations(range(6)))
    assert emd(a, b).item() == pytest.approx(brute, abs=1e-6)


def test_emd_of_a_translated_cloud_is_the_shift_length() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randn(2, 64, 3, generator=g)
    t = torch.tensor([0.3, -0.4, 1.2])
    assert torch.allclose(emd(a, a + t), torch.full((2,), t.norm().item()), atol=1e-5)


def test_pairwise_chamfer_both_paths_match_pair_by_pair() -> None:
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(5, 40, 3, generator=g), torch.randn(7, 30, 3, generator=g)
    ref = torch.stack([chamfer(a[i].expand(7, -1, -1), b) for i in range(5)])
    assert torch.allclose(pairwise_chamfer(a, b), ref, atol=1e-5)  # k-d trees (CPU)
    assert torch.allclose(pairwise_chamfer_dense(a, b, chunk=2500), ref, atol=1e-5)  # blocks of 2 pairs


def test_mmd_and_cov_hand_computed() -> None:
    mmd, cov = mmd_cov(torch.tensor([[1.0, 5.0], [2.0, 3.0], [4.0, 0.5]]))
    assert mmd == pytest.approx(0.75) and cov == pytest.approx(1.0)
    mmd, cov = mmd_cov(torch.tensor([[1.0, 5.0], [2.0, 6.0]]))
    assert mmd == pytest.approx(3.0) and cov == pytest.approx(0.5)


def test_one_nna_hand_computed() -> None:
    def nna(gen: list[float], ref: list[float]) -> float:
        g, r = _singletons(gen), _singletons(ref)
        return one_nna(pairwise_chamfer(g, g), pairwise_chamfer(g, r), pairwise_chamfer(r, r))

    assert nna([0.0, 10.0], [1.0, 11.0]) == pytest.approx(0.0)  # every nearest neighbour is in the other set
    assert nna([0.0, 1.0], [10.0, 11.0]) == pytest.approx(1.0)  # perfectly separable
    assert nna([0.0, 1.0], [3.0, 10.0]) == pytest.approx(0.75)  # only ref 3 is misclassified (nearest: gen 1)


def test_identical_sets_give_zero_1nna_and_full_coverage_shifted_set_gives_one() -> None:
    g = torch.Generator().manual_seed(3)
    ref = torch.randn(6, 32, 3, generator=g)
    same = evaluate_sets(ref.clone(), ref, emd_points=32)
    assert same["1nna_cd"] == 0.0 and same["1nna_emd"] == 0.0
    assert same["cov_cd"] == 1.0 and same["mmd_cd"] == pytest.approx(0.0, abs=1e-5)
    assert same["mmd_emd"] == pytest.approx(0.0, abs=1e-5)
    t = torch.tensor([0.0, 0.0, 20.0])
    shifted = evaluate_sets(ref + t, ref, emd_points=32)
    assert shifted["1nna_cd"] == 1.0 and shifted["1nna_emd"] == 1.0
    assert shifted["mmd_emd"] <= 20.0 + 1e-4
    diagonal = pairwise_emd(ref + t, ref, emd_points=32).diagonal()  # EMD of X and X + t is |t|
    assert torch.allclose(diagonal, torch.full((6,), 20.0), atol=1e-4)


def test_pairwise_emd_subsamples_and_rejects_bad_input() -> None:
    g = torch.Generator().manual_seed(4)
    a = torch.randn(2, 100, 3, generator=g)
    d = pairwise_emd(a, a, emd_points=16)
    assert d.shape == (2, 2) and torch.all(d >= 0)
    with pytest.raises(ValueError, match=r"\[M, N, 3\]"):
        pairwise_chamfer(torch.randn(4, 3), a)
    with pytest.raises(ValueError, match="equal size"):
        emd(torch.randn(1, 4, 3), torch.randn(1, 5, 3))
