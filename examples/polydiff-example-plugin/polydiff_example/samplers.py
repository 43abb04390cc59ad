"""The example plugin's sampler: EDM's stochastic Algorithm 2 with the core sampler signature."""
from __future__ import annotations

import math

import torch


@torch.no_grad()
def edm_stochastic(denoiser, x, sigmas, *, cond=None, noise=None, callback=None, generator=None,
                   s_churn: float = 40.0, s_tmin: float = 0.05, s_tmax: float = 50.0, s_noise: float = 1.003):
    """EDM's stochastic sampler (Karras et al. 2022, Algorithm 2), with the core sampler signature."""
    from polydiff.core.noise import gaussian

    n = len(sigmas) - 1
    gamma_max = min(s_churn / n, math.sqrt(2) - 1)
    for i in range(n):
        s = sigmas[i]
        gamma = torch.where((s >= s_tmin) & (s <= s_tmax), torch.full_like(s, gamma_max), torch.zeros_like(s))
        s_hat = s * (1 + gamma)
        x = x + (s_hat**2 - s**2).sqrt() * s_noise * (noise or gaussian)(x, generator)
        denoised = denoiser(x, s_hat.expand(x.shape[0]), cond)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": s_hat, "denoised": denoised})
        d = (x - denoised) / s_hat
        x_next = x + d * (sigmas[i + 1] - s_hat)
        if i < n - 1:
            d2 = (x_next - denoiser(x_next, sigmas[i + 1].expand(x.shape[0]), cond)) / sigmas[i + 1]
            x_next = x + (d + d2) / 2 * (sigmas[i + 1] - s_hat)
        x = x_next
    return x
