"""Guidance: functions that take a denoiser and return a denoiser, plus SDEdit and score distillation.

Scale convention (classifier-free guidance): ``D = D_uncond + w (D_cond - D_uncond)``, so ``w = 1`` is the plain
conditional model and ``w = 0`` the unconditional one (diffusers' ``guidance_scale``; Ho & Salimans' w is ours - 1).
``cfg`` and ``compose`` evaluate all their conditions in one network call on a stacked batch when the conditions
allow it (``evaluate``, ``stack_conds``), and one call per condition otherwise.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .broadcast import per_row, rows
from .noise import NoiseFn, draw_device, gaussian
from .samplers import sample

Tensor = torch.Tensor
Denoiser = Callable[[Tensor, Tensor, Any], Tensor]


class Unbatchable(ValueError):
    """Conditions that cannot be stacked along the batch dimension (ragged, mismatched or of unknown type)."""


SCALARS = (bool, int, float, str)


def _stack_tensors(items: Sequence[Tensor], batch: int) -> Tensor:
    """Concatenate tensors that each hold one row per sample of x (same shape, leading dimension ``batch``)."""
    shape, dtype, device = items[0].shape, items[0].dtype, items[0].device
    if items[0].ndim == 0 or shape[0] != batch or any((t.shape, t.dtype, t.device) != (shape, dtype, device)
                                                      for t in items):
        raise Unbatchable(f"tensor conditions of shapes {[tuple(t.shape) for t in items]} for a batch of {batch}")
    return torch.cat(list(items))


def stack_conds(conds: Sequence[Any], batch: int, *, _in_sequence: bool = False) -> Any:
    """One condition for ``len(conds)`` copies of a batch of ``batch`` rows stacked along dimension 0.

    Tensors with one row per sample are concatenated; dicts (same keys), lists and tuples (same length) recursively;
    None stays None, and equal scalars (bool, int, float, str) stay as they are outside lists and tuples (inside one
    they may be one item per row). Anything else raises ``Unbatchable``: a ragged condition (a molecule graph with
    ``ptr`` or ``edge_index``) or an object whose batch layout is unknown. A ragged condition whose tensors all have
    one row per atom (say, only a ``batch`` index) would be stacked wrongly: guide it with ``batched=False``.
    """
    first = conds[0]
    if all(c is None for c in conds):
        return None
    if all(isinstance(c, Tensor) for c in conds):
        return _stack_tensors(conds, batch)
    if all(isinstance(c, dict) for c in conds) and all(c.keys() == first.keys() for c in conds):
        return {k: stack_conds([c[k] for c in conds], batch, _in_sequence=_in_sequence) for k in first}
    if type(first) in (list, tuple) and all(type(c) is type(first) and len(c) == len(first) for c in conds):
        return type(first)(stack_conds(parts, batch, _in_sequence=True) for parts in zip(*conds))
    if not _in_sequence and isinstance(first, SCALARS) and all(type(c) is type(first) and c == first for c in conds):
        return first
    raise Unbatchable(f"conditions of types {sorted({type(c).__name__ for c in conds})} cannot be stacked")


def _sigma_rows(sigma: Tensor | float, x: Tensor) -> Tensor:
    """``sigma`` as one value per row of x, keeping its dtype (a float becomes the default dtype)."""
    s = torch.as_tensor(sigma, device=x.device)
    return s.expand(x.shape[0]) if s.ndim == 0 else s


def evaluate(denoiser: Denoiser, x: Tensor, sigma: Tensor | float, conds: Sequence[Any],
             batched: bool | None = None) -> list[Tensor]:
    """``[D(x, sigma, c) for c in conds]``, in one network call on the stacked batch where the conditions allow.

    ``batched``: None stacks when ``stack_conds`` can and otherwise calls once per condition; True always stacks
    (``Unbatchable`` if it cannot); False always calls once per condition (less peak memory). The same object
    repeated is evaluated once.
    """
    if all(c is conds[0] for c in conds):
        return [denoiser(x, sigma, conds[0])] * len(conds)
    if batched is not False:
        try:
            cond = stack_conds(conds, x.shape[0])
        except Unbatchable:
            if batched:
                raise
        else:
            k = len(conds)
            out = denoiser(torch.cat([x] * k), torch.cat([_sigma_rows(sigma, x)] * k), cond)
            return list(out.split(x.shape[0]))
    return [denoiser(x, sigma, c) for c in conds]


def cfg(denoiser: Denoiser, scale: float, uncond: Any = None, *, batched: bool | None = None) -> Denoiser:
    """Classifier-free guidance (Ho & Salimans 2022) at ``scale``; ``uncond`` is the null condition.

    The conditional and unconditional branches run as one network call on a doubled batch when the conditions can be
    stacked (see ``evaluate`` for ``batched``), as diffusers' pipelines do, and as two calls otherwise.
    """

    def guided(x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        if scale == 1.0:
            return denoiser(x, sigma, cond)
        d_cond, d_uncond = evaluate(denoiser, x, sigma, [cond, uncond], batched)
        return d_uncond + scale * (d_cond - d_uncond)

    return guided


def compose(denoiser: Denoiser, conds: Sequence[tuple[Any, float]], uncond: Any = None, *,
            batched: bool | None = None) -> Denoiser:
    """Composition of conditions (Liu et al. 2022): D_u + sum_i w_i (D_{c_i} - D_u); a negative w is a negative prompt.

    The ``cond`` passed at call time is ignored: the conditions are fixed here. All branches run as one network call
    when the conditions can be stacked (``batched`` as in ``evaluate``).
    """

    def composed(x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        d_uncond, *d_conds = evaluate(denoiser, x, sigma, [uncond, *(c for c, _ in conds)], batched)
        out = d_uncond
        for d, (_, w) in zip(d_conds, conds):
            out = out + w * (d - d_uncond)
        return out

    return composed


def _grad(fn: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        value = fn(xg)
        (g,) = torch.autograd.grad(value.sum(), xg)
    return g, value.detach()


def classifier_guidance(denoiser: Denoiser, log_prob: Callable[[Tensor, Tensor], Tensor], scale: float = 1.0) -> Denoiser:
    """Classifier guidance (Dhariwal & Nichol 2021): the score gains scale * grad_x log p(y | x, sigma).

    ``log_prob(x, sigma)`` returns one log-likelihood per row of x; since D = x + sigma^2 score, the denoiser shifts by
    sigma^2 times the scaled gradient.
    """

    def guided(x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        g, _ = _grad(lambda z: log_prob(z, sigma), x)
        return denoiser(x, sigma, cond) + scale * rows(sigma, x) ** 2 * g

    return guided


def dps(denoiser: Denoiser, operator: Callable[[Tensor], Tensor], y: Tensor, scale: float = 1.0,
        noise_std: float = 0.05, sigma_data: float = 1.0) -> Denoiser:
    """Diffusion posterior sampling (Chung et al. 2023) for y = A(x0) + noise of std ``noise_std``.

    The likelihood p(y | x) is taken Gaussian around A(D(x)) and differentiated through the denoiser, as in DPS; its
    variance is noise_std^2 + r^2 with r^2 = sigma^2 sd^2 / (sigma^2 + sd^2), the variance of x0 given x for data of
    std ``sigma_data`` (Song et al. 2023, PiGDM), which keeps the correction stable at every noise level and for every
    sampler without retuning. The denoised estimate moves by sigma^2 * scale * grad log p(y | x).
    """

    def guided(x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        s = rows(sigma, x)
        var = noise_std**2 + s**2 * sigma_data**2 / (s**2 + sigma_data**2)

        def log_lik(z: Tensor) -> Tensor:
            r = (y - operator(denoiser(z, sigma, cond))).reshape(z.shape[0], -1)
            return -(r**2).sum(1) / (2 * var.reshape(-1))

        g, _ = _grad(log_lik, x)
        with torch.no_grad():
            d = denoiser(x, sigma, cond)
        return d + scale * s**2 * g

    return guided


def inpaint(denoiser: Denoiser, known: Tensor, mask: Tensor) -> Denoiser:
    """Inpainting by replacement: where ``mask`` is 1 the estimate of x0 is the ``known`` value.

    Along any of the samplers this keeps the known region at ``known + sigma * noise``, which is RePaint's replacement
    of the known part by a noised copy, and lets the unknown region condition on it.
    """
    mask = mask.to(known.dtype)

    def guided(x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        return mask * known + (1 - mask) * denoiser(x, sigma, cond)

    return guided


@torch.no_grad()
def repaint(denoiser: Denoiser, x: Tensor, sigmas: Tensor, known: Tensor, mask: Tensor, *, resample: int = 10,
            cond: Any = None, noise: NoiseFn | None = None, generator: torch.Generator | None = None) -> Tensor:
    """RePaint (Lugmayr et al. 2022) with jump length 1: ancestral steps with the known part replaced, each step
    undone by re-noising and redone ``resample`` times, so the generated part harmonises with the known part.

    Costs ``resample`` denoiser evaluations per step; ``resample=1`` is plain replacement with ancestral sampling.
    """
    den = inpaint(denoiser, known, mask)
    draw = noise or gaussian
    last = len(sigmas) - 2
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        r = s_next**2 / s**2
        for u in range(resample if i < last else 1):
            d = den(x, s.expand(x.shape[0]), cond)
            x_next = d + r * (x - d) + draw(x, generator) * (s_next**2 * (1 - r)).clamp(min=0).sqrt()
            if u < resample - 1 and i < last:
                x = x_next + draw(x, generator) * (s**2 - s_next**2).sqrt()
        x = x_next
    return x


def sdedit(denoiser: Denoiser, x_init: Tensor, sigmas: Tensor, strength: float, method: str = "heun", *,
           cond: Any = None, noise: NoiseFn | None = None, generator: torch.Generator | None = None, **options) -> Tensor:
    """SDEdit (Meng et al. 2022): noise ``x_init`` to part-way down the grid and sample from there.

    ``strength`` in (0, 1]: the fraction of the grid's steps that are run (1 = start from pure noise level sigmas[0]).
    """
    if not 0 < strength <= 1:
        raise ValueError("strength must be in (0, 1]")
    n = len(sigmas) - 1
    start = n - max(1, round(strength * n))
    sub = sigmas[start:]
    x = x_init + (noise or gaussian)(x_init, generator) * sub[0]
    return sample(denoiser, x, sub, method, cond=cond, noise=noise, generator=generator, **options)


# ---- score distillation --------------------------------------------------------------------------------------


def sds_loss(denoiser: Denoiser, x: Tensor, schedule, *, cond: Any = None, t_range: tuple[float, float] = (0.02, 0.98),
             t: Tensor | None = None, weighting: str = "dreamfusion", generator: torch.Generator | None = None) -> Tensor:
    """Score distillation sampling (Poole et al. 2022) as a loss on a differentiable rendering ``x``.

    Draws t ~ U(t_range) per sample (or takes ``t``), noises x to x_t, and returns a surrogate whose gradient in x is
    w(t) (eps_hat - eps), with DreamFusion's w(t) = sigma_t^2 = 1 - alpha_bar_t (``weighting="dreamfusion"``) or
    ``"uniform"``. The denoiser is not differentiated (the U-Net Jacobian is dropped, as in the paper).
    """
    n = x.shape[0]
    if t is None:
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=draw_device(generator, "cpu")).cpu()
        t = t_range[0] + (t_range[1] - t_range[0]) * u
    t = torch.as_tensor(t, dtype=torch.float64).expand(n)
    sigma = schedule.frame_sigma(t).to(x.device, torch.float32)
    eps = gaussian(x.detach(), generator)
    with torch.no_grad():
        xs = x.detach() + rows(sigma, x) * eps
        eps_hat = (xs - denoiser(xs, sigma, cond)) / rows(sigma, x)
        w = schedule.sigma(t).to(x.device, torch.float32) ** 2 if weighting == "dreamfusion" else torch.ones_like(sigma)
        grad = rows(w, x) * (eps_hat - eps)
    target = (x - grad).detach()
    return 0.5 * ((x - target) ** 2).sum() / n


def sjc_loss(denoiser: Denoiser, x: Tensor, *, sigma_range: tuple[float, float] = (0.01, 80.0), cond: Any = None,
             sigma: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Score Jacobian chaining (Wang et al. 2023) with perturb-and-average scoring (PAAS) as a loss on ``x``.

    Draws sigma log-uniformly per sample, evaluates D at x + sigma n, and returns a surrogate whose gradient in x is
    -(D(x + sigma n, sigma) - x), i.e. sigma^2 times the PAAS score estimate, pointing toward denoised renderings.
    """
    n = x.shape[0]
    if sigma is None:
        lo, hi = torch.log(torch.tensor(sigma_range, dtype=torch.float64))
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=draw_device(generator, "cpu")).cpu()
        sigma = (lo + (hi - lo) * u).exp()
    sigma = per_row(torch.as_tensor(sigma, dtype=torch.float32), x).to(x.device)
    with torch.no_grad():
        xs = x.detach() + rows(sigma, x) * gaussian(x.detach(), generator)
        grad = -(denoiser(xs, sigma, cond) - x.detach())
    target = (x - grad).detach()
    return 0.5 * ((x - target) ** 2).sum() / n
