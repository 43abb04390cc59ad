"""Sample-quality metrics of DiffWave's SC09 protocol, computed on a digit classifier's outputs.

FID (Heusel et al. 2017) on penultimate features, IS (Salimans et al. 2016), modified IS (Gurumurthy et al. 2017),
AM score (Zhou et al. 2018) and NDB (Richardson & Weiss 2018, with k-means bins on training features).
All functions take probabilities [N, C] or features [N, D] and return Python floats.
"""
from __future__ import annotations

import math

import torch

_EPS = 1e-12


def _check_probs(p: torch.Tensor) -> torch.Tensor:
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"class probabilities must be [N, C] with N >= 1; got shape {tuple(p.shape)}")
    return p.double()


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance of features [N, D] (float64)."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"FID needs features [N, D] with N >= 2; got shape {tuple(features.shape)}")
    f = features.double()
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """|mu1 - mu2|^2 + Tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2), the Frechet distance of two Gaussians."""
    mu1, mu2, cov1, cov2 = (t.double() for t in (mu1, mu2, cov1, cov2))
    s1 = _sqrt_psd(cov1)
    m = s1 @ cov2 @ s1
    # symmetric PSD, so its singular values are its eigenvalues; the SVD converges where eigh fails (degenerate
    # features, e.g. a one-step sampler's near-identical clips)
    cross = torch.linalg.svdvals((m + m.T) / 2).sqrt().sum()
    return float(((mu1 - mu2) ** 2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * cross)


def fid(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """FID between two feature sets [N, D], [M, D]; infinite when a set holds non-finite features (a sampler that
    diverged), which no finite distance describes."""
    if not (torch.isfinite(features_a).all() and torch.isfinite(features_b).all()):
        return math.inf
    return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


def inception_score(probs: torch.Tensor) -> float:
    """IS = exp E_x KL(p(y|x) || p(y)), with p(y) the mean prediction over the set."""
    p = _check_probs(probs)
    marginal = p.mean(0, keepdim=True)
    kl = (p * ((p + _EPS).log() - (marginal + _EPS).log())).sum(1)
    return math.exp(float(kl.mean()))


def modified_inception_score(probs: torch.Tensor) -> float:
    """mIS = exp E_{x_i, x_j} KL(p(y|x_i) || p(y|x_j)) over all ordered pairs (including i = j, as in the paper)."""
    p = _check_probs(probs)
    logp = (p + _EPS).log()
    neg_entropy = (p * logp).sum(1)
    cross = p @ logp.T
    kl = neg_entropy[:, None] - cross
    return math.exp(float(kl.mean()))


def am_score(probs: torch.Tensor, train_marginal: torch.Tensor) -> float:
    """AM = KL(p_train(y) || p_gen(y)) + E_x H(p(y|x)); lower is better, 0 for confident predictions with the train marginal."""
    p = _check_probs(probs)
    q = train_marginal.double().reshape(-1)
    if q.numel() != p.shape[1]:
        raise ValueError(f"train marginal has {q.numel()} classes but predictions have {p.shape[1]}")
    gen = p.mean(0)
    kl = (q * ((q + _EPS).log() - (gen + _EPS).log())).sum()
    entropy = -(p * (p + _EPS).log()).sum(1).mean()
    return float(kl + entropy)


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose arg-max class equals the label."""
    return float((probs.argmax(1).cpu() == labels.cpu()).double().mean())


def kmeans(x: torch.Tensor, k: int, iters: int = 50, seed: int = 0) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding; returns the centroids [k, D]."""
    if x.shape[0] < k:
        raise ValueError(f"k-means with k={k} needs at least {k} points; got {x.shape[0]}")
    x = x.double()
    gen = torch.Generator().manual_seed(seed)
    centres = [x[torch.randint(len(x), (1,), generator=gen)].squeeze(0)]
    for _ in range(1, k):
        d2 = torch.cdist(x, torch.stack(centres)).pow(2).min(1).values
        idx = torch.multinomial(d2 / d2.sum(), 1, generator=gen) if d2.sum() > 0 else torch.randint(len(x), (1,), generator=gen)
        centres.append(x[idx].squeeze(0))
    c = torch.stack(centres)
    for _ in range(iters):
        assign = torch.cdist(x, c).argmin(1)
        new = torch.stack([x[assign == j].mean(0) if (assign == j).any() else c[j] for j in range(k)])
        if torch.allclose(new, c):
            break
        c = new
    return c


def ndb(train_features: torch.Tensor, gen_features: torch.Tensor, k: int = 20, alpha: float = 0.05,
        seed: int = 0, centroids: torch.Tensor | None = None) -> dict[str, float]:
    """Number of statistically different bins: k-means bins of the training features, two-proportion z-test per bin.

    Returns ``{"ndb": count, "ndb_over_k": count / k, "js": Jensen-Shannon divergence of the two bin histograms}``.
    """
    from scipy.stats import norm

    c = kmeans(train_features, k, seed=seed) if centroids is None else centroids.double()
    k = c.shape[0]
    h_train = torch.bincount(torch.cdist(train_features.double(), c).argmin(1), minlength=k).double()
    h_gen = torch.bincount(torch.cdist(gen_features.double(), c).argmin(1), minlength=k).double()
    n1, n2 = h_train.sum(), h_gen.sum()
    p1, p2 = h_train / n1, h_gen / n2
    pooled = (h_train + h_gen) / (n1 + n2)
    se = (pooled * (1 - pooled) * (1 / n1 + 1 / n2)).sqrt()
    z = (p1 - p2) / se.clamp(min=1e-12)
    different = (z.abs() > norm.ppf(1 - alpha / 2)) & (se > 0)
    m = (p1 + p2) / 2
    js = 0.5 * ((p1 * ((p1 + _EPS) / (m + _EPS)).log()).sum() + (p2 * ((p2 + _EPS) / (m + _EPS)).log()).sum())
    count = int(different.sum())
    return {"ndb": float(count), "ndb_over_k": count / k, "js": float(js)}
