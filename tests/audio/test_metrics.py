"""SC09 metrics against exact answers."""
import math

import pytest
import torch
from scipy.linalg import sqrtm

from polydiff.domains.audio.metrics import (accuracy, am_score, fid, frechet_distance, inception_score, kmeans,
                                            modified_inception_score, ndb)


def test_fid_of_a_set_with_itself_is_zero():
    x = torch.randn(200, 8)
    assert abs(fid(x, x)) < 1e-8


def test_frechet_distance_matches_the_closed_form():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(5, 5, generator=g, dtype=torch.float64)
    b = torch.randn(5, 5, generator=g, dtype=torch.float64)
    c1, c2 = a @ a.T + 0.1 * torch.eye(5, dtype=torch.float64), b @ b.T + 0.1 * torch.eye(5, dtype=torch.float64)
    mu1, mu2 = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    ref = float(((mu1 - mu2) ** 2).sum()) + float(torch.trace(c1 + c2)) - 2 * float(sqrtm(c1.numpy() @ c2.numpy()).real.trace())
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(ref, rel=1e-8)
    # commuting (diagonal) covariances: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    d1, d2 = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 16.0])
    expect = 3.0 + float(((d1.sqrt() - d2.sqrt()) ** 2).sum())
    assert frechet_distance(torch.zeros(3), torch.diag(d1), torch.ones(3), torch.diag(d2)) == pytest.approx(expect)


def test_fid_of_two_gaussian_samples_approaches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 2, generator=g)
    y = torch.randn(20000, 2, generator=g) * torch.tensor([2.0, 1.0]) + torch.tensor([3.0, 0.0])
    assert fid(x, y) == pytest.approx(9.0 + 1.0, rel=0.03)


def test_inception_score_exact_cases():
    assert inception_score(torch.eye(10)) == pytest.approx(10.0)
    assert inception_score(torch.eye(10).repeat(7, 1)) == pytest.approx(10.0)
    assert inception_score(torch.full((5, 10), 0.1)) == pytest.approx(1.0)
    assert inception_score(torch.eye(10)[[3] * 6]) == pytest.approx(1.0)


def test_modified_inception_score_exact_cases():
    assert modified_inception_score(torch.full((4, 10), 0.1)) == pytest.approx(1.0)
    p = torch.tensor([[0.5, 0.5], [0.9, 0.1]], dtype=torch.float64)
    kl = lambda a, b: float((a * (a / b).log()).sum())
    expect = math.exp((kl(p[0], p[1]) + kl(p[1], p[0])) / 4)
    assert modified_inception_score(p) == pytest.approx(expect, rel=1e-9)


def test_am_score_exact_cases():
    uniform = torch.full((10,), 0.1)
    assert am_score(torch.eye(10), uniform) == pytest.approx(0.0, abs=1e-7)
    assert am_score(torch.full((3, 10), 0.1), uniform) == pytest.approx(math.log(10))
    one_class = torch.eye(10)[[0, 0]]
    assert am_score(one_class, uniform) == pytest.approx(0.1 * math.log(0.1 / 1.0) + 0.9 * (math.log(0.1) - math.log(1e-12)), rel=1e-6)
    with pytest.raises(ValueError, match="classes"):
        am_score(torch.eye(10), torch.full((9,), 1 / 9))


def test_accuracy():
    assert accuracy(torch.eye(4), torch.tensor([0, 1, 2, 0])) == 0.75


def test_kmeans_finds_separated_clusters():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(50, 2) for c in centres])
    found = kmeans(x, 3, seed=0)
    d = torch.cdist(found.float(), centres).min(1).values
    assert torch.all(d < 0.1)


def test_ndb_same_distribution_vs_collapsed():
    g = torch.Generator().manual_seed(0)
    train = torch.randn(2000, 4, generator=g)
    same = ndb(train, train, k=10)
    assert same["ndb"] == 0 and same["js"] == pytest.approx(0.0, abs=1e-12)
    collapsed = train[train[:, 0] > 1.5]
    res = ndb(train, collapsed, k=10)
    assert res["ndb"] >= 5 and res["ndb_over_k"] == res["ndb"] / 10 and res["js"] > 0.1


def test_metrics_reject_bad_shapes():
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        inception_score(torch.zeros(10))
    with pytest.raises(ValueError, match="N >= 2"):
        fid(torch.zeros(1, 3), torch.zeros(4, 3))


def test_fid_of_collapsed_features_is_the_closed_form():
    """A sampler that collapses every clip to one point: C1 = 0, so FID = |mu1 - mu2|^2 + Tr(C2), finite."""
    g = torch.Generator().manual_seed(0)
    other = torch.randn(400, 16, generator=g, dtype=torch.float64) * 2 + 1
    collapsed = torch.full((50, 16), 3.0, dtype=torch.float64)
    expected = float(((3.0 - other.mean(0)) ** 2).sum() + torch.trace(torch.cov(other.T)))
    assert abs(fid(collapsed, other) - expected) < 1e-6 * expected


def test_fid_of_diverged_features_is_infinite():
    feats = torch.randn(50, 8, generator=torch.Generator().manual_seed(1))
    bad = feats.clone()
    bad[3, 2] = float("nan")
    assert fid(bad, feats) == math.inf and math.isfinite(fid(feats, feats))
