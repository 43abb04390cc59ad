"""Training losses over a denoiser. Every weighting is a weight on ``|D(x0 + sigma eps, sigma) - x0|^2``.

Predicting eps, v or x0 with their own MSE is the same objective with weight 1/sigma^2, (1+sigma^2)/sigma^2 and 1
(see ``parameterizations``), so one function serves all; EDM's lambda(sigma) and min-SNR-gamma are two more weights.
Flow matching is the rectified-flow schedule with weight ((1+sigma)/sigma)^2 and a coupling between data and noise.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .broadcast import rows
from .couplings import Coupling, resolve_coupling
from .noise import NoiseFn, gaussian
from .schedules import LinearBeta, RectifiedFlow, Schedule

Tensor = torch.Tensor


def weight(name: str, sigma: Tensor, sigma_data: float = 1.0, gamma: float = 5.0) -> Tensor:
    """Loss weight on the x0 error at frame noise level ``sigma``.

    ``eps`` (L_simple): 1/sigma^2; ``x0``: 1; ``v``: (1 + sigma^2)/sigma^2; ``edm``: (sigma^2 + sd^2)/(sigma sd)^2;
    ``min_snr``: min(SNR, gamma) with SNR = 1/sigma^2 (Hang et al. 2023, for an eps-style objective);
    ``flow``: ((1 + sigma)/sigma)^2, the velocity MSE of the rectified flow.
    """
    if name == "eps":
        return sigma**-2
    if name == "x0":
        return torch.ones_like(sigma)
    if name == "v":
        return (1 + sigma**2) / sigma**2
    if name == "edm":
        return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    if name == "min_snr":
        return torch.clamp(sigma**-2, max=gamma)
    if name == "flow":
        return ((1 + sigma) / sigma) ** 2
    raise ValueError(f"unknown weighting {name!r}; known: eps, x0, v, edm, min_snr, flow")


def _row_mean(err: Tensor) -> Tensor:
    return err.reshape(err.shape[0], -1).mean(1)


def _draw_sigma(schedule: Schedule, x0: Tensor, group: Tensor | None, generator: torch.Generator | None) -> Tensor:
    """One training sigma per sample, per row of x0: a ragged sample's rows (``group``) share their sample's sigma."""
    n = x0.shape[0] if group is None else int(group.max()) + 1
    sigma = schedule.sample_sigma(n, generator, x0.device)
    return sigma if group is None else sigma[group]


def _sample_mean(per_row: Tensor, group: Tensor | None) -> Tensor:
    """Mean over samples of a per-row loss; a ragged sample's rows are averaged first so each sample counts once."""
    if group is None:
        return per_row.mean()
    counts = torch.bincount(group).clamp(min=1).to(per_row.dtype)
    return (per_row / counts[group]).sum() / counts.numel()


def denoising_loss(denoiser, x0: Tensor, *, schedule: Schedule, weighting: str = "edm", sigma_data: float = 1.0,
                   cond: Any = None, sigma: Tensor | None = None, noise: NoiseFn | None = None,
                   group: Tensor | None = None, generator: torch.Generator | None = None, gamma: float = 5.0) -> Tensor:
    """Denoising score matching: E_sigma E_eps w(sigma) |D(x0 + sigma eps, sigma) - x0|^2, a scalar.

    Sigma is drawn from ``schedule`` once per sample; for ragged batches ``group`` maps each row of x0 to its sample
    (e.g. atom -> molecule) so the rows of one sample share their sigma. ``noise`` replaces the Gaussian (e.g. zero
    centre of mass).
    """
    if sigma is None:
        sigma = _draw_sigma(schedule, x0, group, generator)
    eps = (noise or gaussian)(x0, generator)
    x = x0 + rows(sigma, x0) * eps
    err = _row_mean((denoiser(x, sigma, cond).float() - x0.float()) ** 2)
    return _sample_mean(weight(weighting, sigma.float(), sigma_data, gamma) * err, group)


def flow_matching_loss(denoiser, x0: Tensor, *, coupling: str | Coupling = "independent",
                       schedule: Schedule | None = None, cond: Any = None, group: Tensor | None = None,
                       noise: NoiseFn | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Conditional flow matching (Lipman et al. 2023, Liu et al. 2022) with a coupling of data and noise, a scalar.

    Path x_t = (1 - t) x0 + t eps, target velocity eps - x0, t from ``schedule`` (``RectifiedFlow``: uniform or
    logit-normal) once per sample. In the sigma frame x = x_t / (1 - t) = x0 + sigma eps with sigma = t/(1 - t), and the
    velocity MSE is ((1 + sigma)/sigma)^2 |D - x0|^2. ``noise`` replaces the Gaussian (e.g. zero centre of mass);
    ``coupling`` names one of ``COUPLINGS`` (``independent``, ``ot``, ``ot_within``) or is a callable
    ``couple(x0, eps, group=None)``. For ragged batches ``group`` maps each row to its sample (atom -> molecule): its
    rows share one sigma, couplings stay within it, and each sample counts once in the mean, as in ``denoising_loss``.
    """
    schedule = schedule or RectifiedFlow()
    couple = resolve_coupling(coupling)
    drawn = (noise or gaussian)(x0, generator)
    eps = couple(x0, drawn) if group is None else couple(x0, drawn, group)
    sigma = _draw_sigma(schedule, x0, group, generator)
    x = x0 + rows(sigma, x0) * eps
    err = _row_mean((denoiser(x, sigma, cond).float() - x0.float()) ** 2)
    return _sample_mean(weight("flow", sigma.float()) * err, group)


# ---- the variational bound of a discrete DDPM (Ho et al. 2020, eq. 5) ----------------------------------------

def _gauss_kl(mean1: Tensor, var1: Tensor, mean2: Tensor, var2: Tensor) -> Tensor:
    return 0.5 * (torch.log(var2 / var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1)


def ddpm_vlb(denoiser, x0: Tensor, schedule: LinearBeta, *, cond: Any = None, variance: str = "beta",
             timesteps: Tensor | None = None, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """The negative ELBO of a discrete DDPM, L_T + sum_{t=2}^T L_{t-1} + L_0, in nats per sample (a dict of terms).

    Works in the VP variables of the chain: x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, with the reverse mean given by the
    posterior mean at x0_hat = D(x_t / sqrt(ab_t), sigma_t) and the reverse variance ``beta`` or ``posterior``.
    L_0 = -log N(x0; mu_1, var_1) is a continuous Gaussian decoder. All T terms are summed by default (exact in the
    expectation over eps); ``timesteps`` (1-based) picks a subset, whose sum is rescaled to T terms (an unbiased estimate).
    Divide by the number of coordinates and log 2 for bits per dimension.
    """
    T = schedule.T
    betas = schedule.betas.to(x0.device)
    ab = schedule.alphas_cumprod.to(x0.device)
    ab_prev = torch.cat([ab.new_ones(1), ab[:-1]])
    post_var = betas * (1 - ab_prev) / (1 - ab)
    x0d = x0.double()
    dims = x0d[0].numel()
    mean_T = ab[-1].sqrt() * x0d
    l_T = _row_mean(_gauss_kl(mean_T, (1 - ab[-1]).expand_as(x0d), torch.zeros_like(x0d), torch.ones_like(x0d))) * dims
    ts = torch.arange(1, T + 1) if timesteps is None else timesteps
    total = torch.zeros(x0.shape[0], dtype=torch.float64, device=x0.device)
    l0 = torch.zeros_like(total)
    for t in ts.tolist():
        k = t - 1
        eps = gaussian(x0d, generator)
        x_t = ab[k].sqrt() * x0d + (1 - ab[k]).sqrt() * eps
        sigma_t = ((1 - ab[k]) / ab[k]).sqrt()
        x0_hat = denoiser((x_t / ab[k].sqrt()).to(x0.dtype), sigma_t.float().expand(x0.shape[0]), cond).double()
        coef0 = ab_prev[k].sqrt() * betas[k] / (1 - ab[k])
        coeft = (1 - betas[k]).sqrt() * (1 - ab_prev[k]) / (1 - ab[k])
        mean_model = coef0 * x0_hat + coeft * x_t
        var_model = betas[k] if variance == "beta" else post_var[k]
        if t == 1:
            nll = 0.5 * (torch.log(2 * math.pi * var_model) + (x0d - mean_model) ** 2 / var_model)
            l0 = _row_mean(nll) * dims
        else:
            mean_true = coef0 * x0d + coeft * x_t
            kl = _gauss_kl(mean_true, post_var[k].expand_as(x0d), mean_model, var_model.expand_as(x0d))
            total = total + _row_mean(kl) * dims
    n_terms = len(ts) - int((ts == 1).any())
    scale = (T - 1) / max(n_terms, 1) if timesteps is not None else 1.0
    l_mid = total * scale
    return {"L_T": l_T, "L_mid": l_mid, "L_0": l0, "nll_bound": l_T + l_mid + l0}
