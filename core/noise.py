"""Noise for samplers and losses: ``noise(like, generator) -> Tensor`` shaped like ``like``.

A domain supplies its own when plain Gaussian noise is wrong for it (zero centre of mass for molecules, masks).
Stochastic samplers also take a ``noise_sampler(sigma, sigma_next) -> Tensor`` (k-diffusion's convention) that sees
the step interval; ``brownian_tree_noise`` builds one whose draws are increments of one Brownian path per seed.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

Tensor = torch.Tensor
NoiseFn = Callable[[Tensor, "torch.Generator | None"], Tensor]
NoiseSampler = Callable[[Tensor, Tensor], Tensor]
Projection = Callable[[Tensor], Tensor]


def draw_device(generator: torch.Generator | None, device: torch.device | str) -> torch.device:
    """Where a draw from ``generator`` must happen: torch draws only on a generator's own device (else ``device``)."""
    return generator.device if generator is not None else torch.device(device)


def gaussian(like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal noise shaped like ``like``, drawn from ``generator`` (on the generator's device)."""
    device = draw_device(generator, like.device)
    return torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def centre_groups(index: Tensor, n_groups: int | None = None) -> Projection:
    """The projection that subtracts each group's mean row (``index[i]`` = group of row i), e.g. per molecule.

    It is linear and orthogonal, so it maps isotropic Gaussian noise (or a Brownian path) to isotropic noise (a
    Brownian path) in the subspace of centred configurations.
    """

    def project(z: Tensor) -> Tensor:
        groups = int(index.max()) + 1 if n_groups is None else n_groups
        flat = z.reshape(z.shape[0], -1)
        sums = torch.zeros(groups, flat.shape[1], dtype=z.dtype, device=z.device).index_add_(0, index, flat)
        counts = torch.bincount(index, minlength=groups).clamp(min=1).to(z.dtype)[:, None]
        return (flat - (sums / counts)[index]).reshape(z.shape)

    return project


def zero_mean(index: Tensor, n_groups: int | None = None) -> NoiseFn:
    """Gaussian noise with zero mean within each group of rows (``index[i]`` = group of row i), e.g. per molecule.

    The projection keeps the noise isotropic in the (n-1)-dimensional subspace of centred configurations.
    """
    project = centre_groups(index, n_groups)

    def noise(like: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return project(gaussian(like, generator))

    return noise


def brownian_tree_noise(x: Tensor, sigma_min: float, sigma_max: float, seed: int | Sequence[int] | None = None, *,
                        project: Projection | None = None, tol: float = 1e-6) -> NoiseSampler:
    """A ``noise_sampler(sigma, sigma_next)`` giving the normalised increment of a Brownian path W over the step:
    (W(sigma_next) - W(sigma)) / sqrt(|sigma_next - sigma|), unit variance, shaped like ``x``.

    The path is fixed by ``seed`` alone (torchsde's ``BrownianInterval`` as a dyadic tree), so the same seed gives
    the same noise on any grid, and finer grids refine the same path: samples stay close as the step count changes.
    ``seed`` may be one int per row of ``x`` so each sample's noise does not depend on the batch it is in. The path
    spans [sigma_min, sigma_max]; a step reaching outside it uses the part inside (a final step to sigma = 0 reads
    down to sigma_min, and gets zeros when nothing of it is left). The path is Gaussian and knows nothing of a
    domain's noise: a domain whose noise is a projection (zero centre of mass: ``centre_groups``) passes it as
    ``project``, which maps the increments onto its subspace; other domain noises cannot be combined with it.
    Queries run on the CPU in Python (torchsde), so a sampler given this does not trace under ``torch.compile``.
    """
    try:
        from torchsde import BrownianInterval
    except ImportError as exc:
        raise ImportError("brownian_tree_noise needs torchsde (pip install torchsde)") from exc
    if not 0 < tol < 1:
        raise ValueError(f"need 0 < tol < 1, got {tol}")
    digits = -int(math.log10(tol))  # the tree resolves times to tol: it is built and queried on rounded times
    lo, hi = round(float(sigma_min), digits), round(float(sigma_max), digits)
    if not 0 <= lo < hi:
        raise ValueError(f"need 0 <= sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    per_row = isinstance(seed, Sequence)
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()))
    seeds = list(seed) if per_row else [seed]
    if per_row and len(seeds) != x.shape[0]:
        raise ValueError(f"got {len(seeds)} seeds for {x.shape[0]} rows")
    shape = tuple(x.shape[1:]) if per_row else tuple(x.shape)
    trees = [BrownianInterval(t0=lo, t1=hi, size=shape, dtype=dtype, device="cpu", entropy=int(s), tol=tol,
                              pool_size=24, halfway_tree=True) for s in seeds]

    def noise_sampler(sigma: Tensor, sigma_next: Tensor) -> Tensor:
        a, b = (round(min(max(float(s), lo), hi), digits) for s in (sigma, sigma_next))
        start, end = min(a, b), max(a, b)
        if end == start:
            w = torch.zeros(x.shape, dtype=dtype)
        else:
            w = torch.stack([tree(start, end) for tree in trees]) if per_row else trees[0](start, end)
            w = w * ((1.0 if b > a else -1.0) / (end - start) ** 0.5)
        w = w.to(device=x.device, dtype=x.dtype)
        return project(w) if project is not None else w

    return noise_sampler
