"""Samplers: one short stateless function per method, all with the same signature.

``fn(denoiser, x, sigmas, *, cond=None, noise=None, callback=None, generator=None, **options) -> x``

``x`` is the starting point at ``sigmas[0]`` (noise times sigmas[0] for generation), ``sigmas`` a descending grid that
ends in 0 (``polydiff.core.schedules``). The denoiser is called as ``denoiser(x, sigma, cond)`` with one sigma per row
of ``x``. The loops branch only on the step index and on Python options, never on tensor values: no host-device sync,
and they trace under ``torch.compile``.

Noise. ``noise(like, generator)`` is the domain's noise (zero centre of mass, masks); every random draw uses it unless
a stochastic method is given ``noise_sampler(sigma, sigma_next) -> Tensor`` (k-diffusion's convention): unit-variance
noise for the step from sigma to sigma_next, e.g. ``polydiff.core.noise.brownian_tree_noise``. A noise sampler
replaces the domain noise for the step noise; it does not apply the domain's constraint unless it was built with
that projection. ``s_noise`` scales the step noise of every stochastic method (1 = the method as published).

Options k-diffusion users expect: ``euler`` and ``heun`` take EDM churn (Karras et al. 2022, Algorithm 2:
``s_churn``, ``s_tmin``, ``s_tmax``, ``s_noise``; churn noise comes from ``noise``); ``ddim``, ``euler_ancestral``,
``dpmpp_2m_sde`` and ``dpmpp_3m_sde`` take ``eta``; the stochastic methods take ``s_noise`` and ``noise_sampler``.
With churn, the callback's ``sigma`` is sigma_hat, the level that its ``x`` and ``denoised`` belong to.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import torch
from tqdm.auto import tqdm

from .noise import NoiseFn, NoiseSampler, gaussian

Tensor = torch.Tensor
Callback = Callable[[dict[str, Any]], None]


def _call(denoiser, x: Tensor, sigma: Tensor, cond: Any) -> Tensor:
    return denoiser(x, sigma.expand(x.shape[0]), cond)


def _noise(noise: NoiseFn | None, like: Tensor, generator: torch.Generator | None) -> Tensor:
    return (noise or gaussian)(like, generator)


def _step_noise(noise: NoiseFn | None, noise_sampler: NoiseSampler | None, like: Tensor,
                generator: torch.Generator | None, sigma: Tensor, sigma_next: Tensor) -> Tensor:
    """Unit-variance noise for the step sigma -> sigma_next: the noise sampler's when given, else the domain's."""
    if noise_sampler is not None:
        return noise_sampler(sigma, sigma_next)
    return _noise(noise, like, generator)


def _report(callback: Callback | None, i: int, x: Tensor, sigma: Tensor, denoised: Tensor) -> None:
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "denoised": denoised})


def ancestral_step(sigma: Tensor, sigma_next: Tensor, eta: float) -> tuple[Tensor, Tensor]:
    """Split a step into a deterministic part down to sigma_down and fresh noise of std sigma_up."""
    up = (eta * sigma_next * (1 - sigma_next**2 / sigma**2).clamp(min=0).sqrt()).minimum(sigma_next)
    return (sigma_next**2 - up**2).clamp(min=0).sqrt(), up


def _churn_gamma(s_churn: float, steps: int) -> float:
    """EDM's per-step churn factor gamma = min(s_churn / steps, sqrt(2) - 1), a Python float (0 disables churn)."""
    return min(s_churn / steps, math.sqrt(2) - 1) if s_churn > 0 and steps > 0 else 0.0


def _churn(x: Tensor, sigma: Tensor, gamma: float, s_tmin: float, s_tmax: float, s_noise: float,
           noise: NoiseFn | None, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Raise the noise level to sigma_hat = (1 + gamma) sigma inside [s_tmin, s_tmax] with fresh noise (EDM Alg. 2)."""
    sigma_hat = torch.where((sigma >= s_tmin) & (sigma <= s_tmax), sigma * (1 + gamma), sigma)
    return x + _noise(noise, x, generator) * s_noise * (sigma_hat**2 - sigma**2).sqrt(), sigma_hat


@torch.no_grad()
def euler(denoiser, x, sigmas, *, cond=None, noise=None, callback=None, generator=None, s_churn: float = 0.0,
          s_tmin: float = 0.0, s_tmax: float = math.inf, s_noise: float = 1.0) -> Tensor:
    """Euler on the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma (first order, n NFE); EDM churn."""
    gamma = _churn_gamma(s_churn, len(sigmas) - 1)
    for i in range(len(sigmas) - 1):
        sigma = sigmas[i]
        if gamma > 0:
            x, sigma = _churn(x, sigma, gamma, s_tmin, s_tmax, s_noise, noise, generator)
        denoised = _call(denoiser, x, sigma, cond)
        _report(callback, i, x, sigma, denoised)
        x = x + (x - denoised) / sigma * (sigmas[i + 1] - sigma)
    return x


@torch.no_grad()
def heun(denoiser, x, sigmas, *, cond=None, noise=None, callback=None, generator=None, s_churn: float = 0.0,
         s_tmin: float = 0.0, s_tmax: float = math.inf, s_noise: float = 1.0) -> Tensor:
    """Heun's second-order method on the probability-flow ODE (EDM Algorithms 1 and 2; 2n - 1 NFE)."""
    last = len(sigmas) - 2
    gamma = _churn_gamma(s_churn, len(sigmas) - 1)
    for i in range(len(sigmas) - 1):
        sigma = sigmas[i]
        if gamma > 0:
            x, sigma = _churn(x, sigma, gamma, s_tmin, s_tmax, s_noise, noise, generator)
        denoised = _call(denoiser, x, sigma, cond)
        _report(callback, i, x, sigma, denoised)
        d = (x - denoised) / sigma
        dt = sigmas[i + 1] - sigma
        x_euler = x + d * dt
        if i == last:  # the grid ends at sigma = 0, where the slope is undefined: a final Euler step
            x = x_euler
        else:
            d_next = (x_euler - _call(denoiser, x_euler, sigmas[i + 1], cond)) / sigmas[i + 1]
            x = x + (d + d_next) / 2 * dt
    return x


@torch.no_grad()
def ddim(denoiser, x, sigmas, *, cond=None, noise=None, callback=None, generator=None, eta: float = 0.0,
         s_noise: float = 1.0, noise_sampler: NoiseSampler | None = None) -> Tensor:
    """DDIM (Song et al. 2021) in the sigma frame: eta = 0 is deterministic (Euler), eta = 1 is ancestral DDPM."""
    for i in range(len(sigmas) - 1):
        denoised = _call(denoiser, x, sigmas[i], cond)
        _report(callback, i, x, sigmas[i], denoised)
        eps = (x - denoised) / sigmas[i]
        if eta > 0:
            down, up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
            z = _step_noise(noise, noise_sampler, x, generator, sigmas[i], sigmas[i + 1])
            x = denoised + eps * down + z * up * s_noise
        else:
            x = denoised + eps * sigmas[i + 1]
    return x


@torch.no_grad()
def euler_ancestral(denoiser, x, sigmas, *, cond=None, noise=None, callback=None, generator=None, eta: float = 1.0,
                    s_noise: float = 1.0, noise_sampler: NoiseSampler | None = None) -> Tensor:
    """Euler ancestral (k-diffusion's): an Euler step down to sigma_down, then fresh noise of std sigma_up (n NFE)."""
    for i in range(len(sigmas) - 1):
        denoised = _call(denoiser, x, sigmas[i], cond)
        _report(callback, i, x, sigmas[i], denoised)
        d = (x - denoised) / sigmas[i]
        if eta > 0:
            down, up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
            z = _step_noise(noise, noise_sampler, x, generator, sigmas[i], sigmas[i + 1])
            x = x + d * (down - sigmas[i]) + z * up * s_noise
        else:
            x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


@torch.no_grad()
def ddpm(denoiser, x, sigmas, *, cond=None, noise=None, callback=None, generator=None,
         variance: str = "posterior", s_noise: float = 1.0, noise_sampler: NoiseSampler | None = None) -> Tensor:
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
        x = mean + _step_noise(noise, noise_sampler, x, generator, s, s_next) * std * s_noise
    return x


@torch.no_grad()
def euler_maruyama(denoiser, x, sigmas, *, cond=None, noise=None, callback=None, generator=None,
                   s_noise: float = 1.0, noise_sampler: NoiseSampler | None = None) -> Tensor:
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
            z = _step_noise(noise, noise_sampler, x, generator, s, s_next)
            x = x + 2 * (s - s_next) / s * (denoised - x) + (2 * s * (s - s_next)).sqrt() * z * s_noise
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
                 eta: float = 1.0, s_noise: float = 1.0, noise_sampler: NoiseSampler | None = None) -> Tensor:
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
                z = _step_noise(noise, noise_sampler, x, generator, sigmas[i], sigmas[i + 1])
                x = x + z * sigmas[i + 1] * (-torch.expm1(-2 * eta_h)).sqrt() * s_noise
            h_last = h
        old = denoised
    return x


@torch.no_grad()
def dpmpp_3m_sde(denoiser, x, sigmas, *, cond=None, noise=None, callback=None, generator=None,
                 eta: float = 1.0, s_noise: float = 1.0, noise_sampler: NoiseSampler | None = None) -> Tensor:
    """DPM-Solver++(3M) SDE as in k-diffusion: multistep in log sigma over the last three denoised estimates, noise
    of strength ``eta`` (0 = the ODE), one NFE per step.

    The update is the published one, for parity with k-diffusion and diffusers: its second-difference term carries
    half the Taylor weight, so on the ODE it converges at second order (with a smaller error than 2M), not third.
    """
    last = len(sigmas) - 2
    past: list[tuple[Tensor, Tensor]] = []  # (denoised, h) of the previous steps, newest first
    for i in range(len(sigmas) - 1):
        denoised = _call(denoiser, x, sigmas[i], cond)
        _report(callback, i, x, sigmas[i], denoised)
        if i == last:
            x = denoised
            continue
        h = sigmas[i].log() - sigmas[i + 1].log()
        h_eta = h * (1 + eta)
        x = torch.exp(-h_eta) * x - torch.expm1(-h_eta) * denoised
        if past:
            phi_2 = torch.expm1(-h_eta) / h_eta + 1
            r0 = past[0][1] / h
            d1_0 = (denoised - past[0][0]) / r0
            if len(past) == 1:
                x = x + phi_2 * d1_0
            else:
                r1 = past[1][1] / h
                d1_1 = (past[0][0] - past[1][0]) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                x = x + phi_2 * d1 - (phi_2 / h_eta - 0.5) * d2
        if eta > 0:
            z = _step_noise(noise, noise_sampler, x, generator, sigmas[i], sigmas[i + 1])
            x = x + z * sigmas[i + 1] * (-torch.expm1(-2 * eta * h)).sqrt() * s_noise
        past = [(denoised, h), *past[:1]]
    return x


@torch.no_grad()
def langevin_pc(denoiser, x, sigmas, *, cond=None, noise=None, callback=None, generator=None,
                snr: float = 0.16, corrector_steps: int = 1, s_noise: float = 1.0,
                noise_sampler: NoiseSampler | None = None) -> Tensor:
    """Predictor-corrector (Song et al. 2021): an ancestral predictor step, then Langevin corrector steps.

    The corrector step size follows the paper: eps = 2 (snr |z| / |score|)^2 with norms over the whole batch.
    NFE: one per step plus ``corrector_steps`` per intermediate level. ``s_noise`` and ``noise_sampler`` act on the
    predictor's step noise; the corrector's noise (at a fixed level) always comes from ``noise``.
    """
    last = len(sigmas) - 2
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = _call(denoiser, x, s, cond)
        _report(callback, i, x, s, denoised)
        r = s_next**2 / s**2
        z = _step_noise(noise, noise_sampler, x, generator, s, s_next)
        x = denoised + r * (x - denoised) + z * (s_next**2 * (1 - r)).clamp(min=0).sqrt() * s_noise
        if i == last:
            continue
        for _ in range(corrector_steps):
            score = (_call(denoiser, x, s_next, cond) - x) / s_next**2
            z = _noise(noise, x, generator)
            step = 2 * (snr * z.norm() / score.norm()) ** 2
            x = x + step * score + (2 * step).sqrt() * z
    return x


Sampler = Callable[..., Tensor]

SAMPLERS: Mapping[str, Sampler] = MappingProxyType({
    "euler": euler,
    "heun": heun,
    "ddim": ddim,
    "ddpm": ddpm,
    "euler_ancestral": euler_ancestral,
    "euler_maruyama": euler_maruyama,
    "dpmpp_2m": dpmpp_2m,
    "dpmpp_2m_sde": dpmpp_2m_sde,
    "dpmpp_3m_sde": dpmpp_3m_sde,
    "langevin_pc": langevin_pc,
})
"""The built-in samplers by name, read-only. Plugin samplers live in the plugin manager's registry, which passes
them to ``sample`` as functions."""

BUILTIN = frozenset(SAMPLERS)
STOCHASTIC = frozenset({"ddpm", "euler_ancestral", "euler_maruyama", "dpmpp_2m_sde", "dpmpp_3m_sde", "langevin_pc"})
_TWO_NFE_PER_STEP = frozenset({"heun", "langevin_pc"})


def _name(method: str | Sampler) -> str:
    """A sampler's name: the string itself, the built-in name of a built-in function, else the function's name."""
    if isinstance(method, str):
        return method
    return next((k for k, fn in SAMPLERS.items() if fn is method), getattr(method, "__name__", repr(method)))


def nfe(method: str | Sampler, steps: int) -> int:
    """Denoiser evaluations used by a built-in method over a grid of ``steps`` intervals (one per step otherwise)."""
    return 2 * steps - 1 if _name(method) in _TWO_NFE_PER_STEP else steps


def steps_for_nfe(method: str | Sampler, budget: int) -> int:
    """The largest number of grid intervals whose NFE fits in ``budget``."""
    return (budget + 1) // 2 if _name(method) in _TWO_NFE_PER_STEP else budget


def resolve(method: str | Sampler) -> Sampler:
    """The sampler function for a built-in name, or ``method`` itself when it is already a callable."""
    if callable(method):
        return method
    if method not in SAMPLERS:
        raise ValueError(f"unknown sampler {method!r}; built-in: {', '.join(sorted(SAMPLERS))} "
                         "(pass a plugin's sampler as a function, e.g. from the plugin manager's registry)")
    return SAMPLERS[method]


def sample(denoiser, x: Tensor, sigmas: Tensor, method: str | Sampler = "heun", *, cond: Any = None,
           noise: NoiseFn | None = None, callback: Callback | None = None, generator: torch.Generator | None = None,
           progress: bool = False, **options) -> Tensor:
    """Run ``method`` (a built-in name or a sampler function) from ``x`` at sigmas[0] down the grid, with options."""
    fn = resolve(method)
    sigmas = sigmas.to(device=x.device, dtype=x.dtype)
    if progress:
        bar = tqdm(total=len(sigmas) - 1, desc=f"sampling ({_name(method)})", leave=False)
        inner = callback

        def callback(info: dict[str, Any]) -> None:
            bar.update(1)
            if inner is not None:
                inner(info)

        try:
            return fn(denoiser, x, sigmas, cond=cond, noise=noise, callback=callback, generator=generator, **options)
        finally:
            bar.close()
    return fn(denoiser, x, sigmas, cond=cond, noise=noise, callback=callback, generator=generator, **options)
