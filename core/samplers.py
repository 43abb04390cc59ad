"""Samplers: one short stateless function per method, all with the same signature.

``fn(denoiser, x, sigmas, *, cond=None, noise=None, callback=None, generator=None, **options) -> x``

``x`` is the starting point at ``sigmas[0]`` (noise times sigmas[0] for generation), ``sigmas`` a descending grid that
ends in 0 (``polydiff.core.schedules``). The denoiser is called as ``denoiser(x, sigma, cond)`` with one sigma per row
of ``x``. The loops branch only on the step index, never on tensor values: no host-device sync, and they trace under
``torch.compile``. ``noise(like, generator)`` supplies the noise of the stochastic methods.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm

from .noise import NoiseFn, gaussian

Tensor = torch.Tensor
Callback = Callable[[dict[str, Any]], None]


def _call(denoiser, x: Tensor, sigma: Tensor, cond: Any) -> Tensor:
    return denoiser(x, sigma.expand(x.shape[0]), cond)


def _noise(noise: NoiseFn | None, like: Tensor, generator: torch.Generator | None) -> Tensor:
    return (noise or gaussian)(like, generator)


def _report(callback: Callback | None, i: int, x: Tensor, sigma: Tensor, denoised: Tensor) -> None:
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "denoised": denoised})


def _ancestral(sigma: Tensor, sigma_next: Tensor, eta: float) -> tuple[Tensor, Tensor]:
    """Split a step into a deterministic part down to sigma_down and fresh noise of std sigma_up."""
    up = (eta * sigma_next * (1 - sigma_next**2 / sigma**2).clamp(min=0).sqrt()).minimum(sigma_next)
    return (sigma_next**2 - up**2).clamp(min=0).sqrt(), up


@torch.no_grad()
def euler(denoiser, x, sigmas, *, cond=None, noise=None, callback=None, generator=None) -> Tensor:
    """Euler on the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma (first order, n NFE)."""
    for i in range(len(sigmas) - 1):
        denoised = _call(denoiser, x, sigmas[i], cond)
        _report(callback, i, x, sigmas[i], denoised)
        x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return x


@torch.no_grad()
def heun(denoiser, x, sigmas, *, cond=None, noise=None, callback=None, generator=None) -> Tensor:
    """Heun's second-order method on the probability-flow ODE (EDM Algorithm 1 without churn; 2n - 1 NFE)."""
    last = len(sigmas) - 2
    for i in range(len(sigmas) - 1):
        denoised = _call(denoiser, x, sigmas[i], cond)
        _report(callback, i, x, sigmas[i], denoised)
        d = (x - denoised) / sigmas[i]
        dt = sigmas[i + 1] - sigmas[i]
        x_euler = x + d * dt
        if i == last:  # the grid ends at sigma = 0, where the slope is undefined: a final Euler step
            x = x_euler
        else:
            d_next = (x_euler - _call(denoiser, x_euler, sigmas[i + 1], cond)) / sigmas[i + 1]
            x = x + (d + d_next) / 2 * dt
    return x


@torch.no_grad()
def ddim(denoiser, x, sigmas, *, cond=None, noise=None, callback=None, generator=None, eta: float = 0.0) -> Tensor:
    """DDIM (Song et al. 2021) in the sigma frame: eta = 0 is deterministic (Euler), eta = 1 is ancestral DDPM."""
    for i in range(len(sigmas) - 1):
        denoised = _call(denoiser, x, sigmas[i], cond)
        _report(callback, i, x, sigmas[i], denoised)
        eps = (x - denoised) / sigmas[i]
        if eta > 0:
            down, up = _ancestral(sigmas[i], sigmas[i + 1], eta)
            x = denoised + eps * down + _noise(noise, x, generator) * up
        else:
            x = denoised + eps * sigmas[i + 1]
    return x


@torch.no_grad()
def ddpm(denoiser, x, sigmas, *, cond=None, noise=None, callback=None, generator=None,
         variance: str = "posterior") -> Tensor:
    """Ancestral sampling of the DDPM chain (Ho et al. 2020, Algorithm 2), one step per grid interval.

    Each step draws x_next from q(x_next | x, x0 = D(x)): mean (1 - r) x0 + r x with r = sigma_next^2 / sigma^2, and
    variance ``posterior`` (beta tilde) or ``beta`` (the forward beta of the step, the paper's sigma_t^2 = beta_t),
    both written in the sigma frame. On the DDPM grid (``ddpm_sigmas``) this is Algorithm 2 exactly.
    """
    if variance not in ("posterior", "beta"):
        raise ValueError("variance must be 'posterior' or 'beta'")
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = _call(denoiser, x, s, cond)
        _report(callback, i, x, s, denoised)
        r = s_next**2 / s**2
        mean = denoised + r * (x - denoised)
        if variance == "posterior":
            std = (s_next**2 * (1 - r)).clamp(min=0).sqrt()
        else:
            std = ((s**2 - s_next**2) * (1 + s_next**2) / (1 + s**2)).sqrt() * (i < len(sigmas) - 2)
        x = mean + _noise(noise, x, generator) * std
    return x


@torch.no_grad()
def euler_maruyama(denoiser, x, sigmas, *, cond=None, noise=None, callback=None, generator=None) -> Tensor:
    """Euler-Maruyama on the reverse-time SDE of the variance-exploding process (Song et al. 2021).

    dx = -2 sigma grad log p(x) dsigma + sqrt(2 sigma |dsigma|) dW, with the score (D - x) / sigma^2; the last step
    (to sigma = 0) returns the denoised estimate (Tweedie), as is customary.
    """
    last = len(sigmas) - 2
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = _call(denoiser, x, s, cond)
        _report(callback, i, x, s, denoised)
        if i == last:
            x = denoised
        else:
            x = x + 2 * (s - s_next) / s * (denoised - x) + (2 * s * (s - s_next)).sqrt() * _noise(noise, x, generator)
    return x


@torch.no_grad()
def dpmpp_2m(denoiser, x, sigmas, *, cond=None, noise=None, callback=None, generator=None) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022): second-order multistep in log sigma, one NFE per step."""
    last = len(sigmas) - 2
    old = None
    h = sigmas[:-1].log().diff(append=sigmas[-2:-1].log()).neg()  # h[i] = log sigma_i - log sigma_{i+1}
    ratio = sigmas[1:] / sigmas[:-1]
    for i in range(len(sigmas) - 1):
        denoised = _call(denoiser, x, sigmas[i], cond)
        _report(callback, i, x, sigmas[i], denoised)
        if i == last:
            x = denoised
        else:
            d = denoised
            if old is not None:
                half_r = 0.5 * h[i] / h[i - 1]  # 1 / (2 r) with r = h_last / h
                d = (1 + half_r) * denoised - half_r * old
            x = ratio[i] * x - torch.expm1(-h[i]) * d
        old = denoised
    return x


@torch.no_grad()
def dpmpp_2m_sde(denoiser, x, sigmas, *, cond=None, noise=None, callback=None, generator=None,
                 eta: float = 1.0) -> Tensor:
    """DPM-Solver++(2M) SDE (midpoint variant, as in k-diffusion) with Gaussian noise of strength ``eta``."""
    last = len(sigmas) - 2
    old, h_last = None, None
    for i in range(len(sigmas) - 1):
        denoised = _call(denoiser, x, sigmas[i], cond)
        _report(callback, i, x, sigmas[i], denoised)
        if i == last:
            x = denoised
        else:
            h = sigmas[i].log() - sigmas[i + 1].log()
            eta_h = eta * h
            x = sigmas[i + 1] / sigmas[i] * torch.exp(-eta_h) * x - torch.expm1(-h - eta_h) * denoised
            if old is not None:
                x = x - 0.5 * torch.expm1(-h - eta_h) * (h / h_last) * (denoised - old)
            if eta > 0:
                x = x + _noise(noise, x, generator) * sigmas[i + 1] * (-torch.expm1(-2 * eta_h)).sqrt()
            h_last = h
        old = denoised
    return x


@torch.no_grad()
def langevin_pc(denoiser, x, sigmas, *, cond=None, noise=None, callback=None, generator=None,
                snr: float = 0.16, corrector_steps: int = 1) -> Tensor:
    """Predictor-corrector (Song et al. 2021): an ancestral predictor step, then Langevin corrector steps.

    The corrector step size follows the paper: eps = 2 (snr |z| / |score|)^2 with norms over the whole batch.
    NFE: one per step plus ``corrector_steps`` per intermediate level.
    """
    last = len(sigmas) - 2
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = _call(denoiser, x, s, cond)
        _report(callback, i, x, s, denoised)
        r = s_next**2 / s**2
        x = denoised + r * (x - denoised) + _noise(noise, x, generator) * (s_next**2 * (1 - r)).clamp(min=0).sqrt()
        if i == last:
            continue
        for _ in range(corrector_steps):
            score = (_call(denoiser, x, s_next, cond) - x) / s_next**2
            z = _noise(noise, x, generator)
            step = 2 * (snr * z.norm() / score.norm()) ** 2
            x = x + step * score + (2 * step).sqrt() * z
    return x


Sampler = Callable[..., Tensor]

SAMPLERS: dict[str, Sampler] = {
    "euler": euler,
    "heun": heun,
    "ddim": ddim,
    "ddpm": ddpm,
    "euler_maruyama": euler_maruyama,
    "dpmpp_2m": dpmpp_2m,
    "dpmpp_2m_sde": dpmpp_2m_sde,
    "langevin_pc": langevin_pc,
}

BUILTIN = frozenset(SAMPLERS)
STOCHASTIC = frozenset({"ddpm", "euler_maruyama", "dpmpp_2m_sde", "langevin_pc"})


def nfe(method: str, steps: int) -> int:
    """Denoiser evaluations used by a built-in method over a grid of ``steps`` intervals."""
    return {"heun": 2 * steps - 1, "langevin_pc": 2 * steps - 1}.get(method, steps)


def steps_for_nfe(method: str, budget: int) -> int:
    """The largest number of grid intervals whose NFE fits in ``budget``."""
    return (budget + 1) // 2 if method in ("heun", "langevin_pc") else budget


def register_sampler(name: str, fn: Sampler) -> None:
    """Make ``fn`` available to ``sample(method=name)`` (plugins do this through their hook)."""
    if name in SAMPLERS and SAMPLERS[name] is not fn:
        raise ValueError(f"sampler {name!r} is already registered")
    SAMPLERS[name] = fn


def sample(denoiser, x: Tensor, sigmas: Tensor, method: str = "heun", *, cond: Any = None,
           noise: NoiseFn | None = None, callback: Callback | None = None, generator: torch.Generator | None = None,
           progress: bool = False, **options) -> Tensor:
    """Run sampler ``method`` (a registered name) from ``x`` at sigmas[0] down the grid; options go to the sampler."""
    if method not in SAMPLERS:
        raise ValueError(f"unknown sampler {method!r}; known: {', '.join(sorted(SAMPLERS))}")
    sigmas = sigmas.to(device=x.device, dtype=x.dtype)
    if progress:
        bar = tqdm(total=len(sigmas) - 1, desc=f"sampling ({method})", leave=False)
        inner = callback

        def callback(info: dict[str, Any]) -> None:
            bar.update(1)
            if inner is not None:
                inner(info)

        try:
            return SAMPLERS[method](denoiser, x, sigmas, cond=cond, noise=noise, callback=callback,
                                    generator=generator, **options)
        finally:
            bar.close()
    return SAMPLERS[method](denoiser, x, sigmas, cond=cond, noise=noise, callback=callback, generator=generator,
                            **options)
