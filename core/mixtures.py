"""Gaussian mixtures: data with a closed-form denoiser, score and density.

For ``x = x0 + sigma eps`` with x0 from the mixture sum_k w_k N(mu_k, S_k), x is the mixture with covariances
S_k + sigma^2 I, and E[x0 | x] = sum_k r_k(x) (mu_k + S_k (S_k + sigma^2 I)^-1 (x - mu_k)). It is the reference answer
for samplers, guidance and losses, and the toy domain's ground truth.
"""
from __future__ import annotations

import math
from typing import Any

import torch

Tensor = torch.Tensor


class GaussianMixture:
    """A mixture of K Gaussians in d dimensions with full covariances."""

    def __init__(self, means: Tensor, covs: Tensor, weights: Tensor | None = None) -> None:
        self.means = torch.as_tensor(means, dtype=torch.float64)
        k, d = self.means.shape
        covs = torch.as_tensor(covs, dtype=torch.float64)
        if covs.ndim == 1:
            covs = covs[:, None, None] * torch.eye(d, dtype=torch.float64)
        self.covs = covs
        w = torch.ones(k, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.weights = w / w.sum()
        self.eigvals, self.eigvecs = torch.linalg.eigh(self.covs)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """n samples and their component labels."""
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        chol = torch.linalg.cholesky(self.covs)
        x = self.means[labels] + torch.einsum("nij,nj->ni", chol[labels], z)
        return x.float(), labels

    def _project(self, x: Tensor, sigma: Tensor | float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Coordinates of x - mu_k in each component's eigenbasis, the noised eigenvalues, the eigenvectors, sigma."""
        x = x.double()
        sig = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).expand(x.shape[0])
        lam, U = self.eigvals.to(x.device), self.eigvecs.to(x.device)
        z = torch.einsum("kji,nkj->nki", U, x[:, None, :] - self.means.to(x.device)[None])
        return z, lam[None] + sig[:, None, None] ** 2, U, lam

    def log_prob_components(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """log w_k + log N(x; mu_k, S_k + sigma^2 I), shape [n, K]."""
        z, var, _, _ = self._project(x, sigma)
        maha = (z**2 / var).sum(-1)
        logdet = var.log().sum(-1)
        return self.weights.to(z.device).log()[None] - 0.5 * (maha + logdet + self.dim * math.log(2 * math.pi))

    def log_prob(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """Log density of the noised mixture at x."""
        return torch.logsumexp(self.log_prob_components(x, sigma), dim=1)

    def responsibilities(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """Posterior probability of each component given x (noised at sigma)."""
        return torch.softmax(self.log_prob_components(x, sigma), dim=1)

    def denoise(self, x: Tensor, sigma: Tensor | float, cond: Any = None) -> Tensor:
        """The exact denoiser E[x0 | x] (differentiable; float64 inside, x's dtype out)."""
        z, var, U, lam = self._project(x, sigma)
        maha = (z**2 / var).sum(-1)
        logits = self.weights.to(z.device).log()[None] - 0.5 * (maha + var.log().sum(-1))
        r = torch.softmax(logits, dim=1)
        post = self.means.to(z.device)[None] + torch.einsum("kij,nkj->nki", U, lam[None] / var * z)
        return (r[..., None] * post).sum(1).to(x.dtype)

    def __call__(self, x: Tensor, sigma: Tensor | float, cond: Any = None) -> Tensor:
        return self.denoise(x, sigma, cond)

    def restricted(self, keep: Tensor) -> "GaussianMixture":
        """The mixture of the components selected by a boolean mask (renormalised weights)."""
        return GaussianMixture(self.means[keep], self.covs[keep], self.weights[keep])


def eight_gaussians(radius: float = 2.0, std: float = 0.1) -> GaussianMixture:
    """Eight isotropic Gaussians evenly spaced on a circle (the classic toy set)."""
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
    return GaussianMixture(means, torch.full((8,), std**2, dtype=torch.float64))


def energy_distance(x: Tensor, y: Tensor) -> Tensor:
    """Squared energy distance 2 E|X-Y| - E|X-X'| - E|Y-Y'| between two samples (V-statistic, >= 0)."""
    x, y = x.double().flatten(1), y.double().flatten(1)
    return 2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean()
