"""Inversion and editing (core/inversion.py) on the 8-Gaussian mixture's exact denoiser.

Round-trip errors |regenerate(invert(x0)) - x0| are bounded at about twice the figures measured in
``core/inversion.py``'s docstring (median and 99th percentile of 512 mixture samples).
"""
from __future__ import annotations

import math

import pytest
import torch

from polydiff.core.guidance import sdedit
from polydiff.core.inversion import classify, ddpm_noise_maps, edit, invert, regenerate, replay, strength_grid
from polydiff.core.samplers import sample
from polydiff.core.mixtures import GaussianMixture, eight_gaussians
from polydiff.core.schedules import karras_sigmas

RADIUS, STD, SIGMA_MAX = 2.0, 0.1, 80.0


class LabelledMixture:
    """The exact class-conditional denoiser of a mixture: label k is component k, a negative label the mixture."""

    def __init__(self, mixture: GaussianMixture) -> None:
        self.mixture = mixture
        k = len(mixture.weights)
        self.parts = [mixture.restricted(torch.arange(k) == i) for i in range(k)]

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        out = self.mixture(x, sigma)
        if cond is None:
            return out
        out = out.clone()
        for k in cond.unique().tolist():
            if k >= 0:
                rows = cond == k
                out[rows] = self.parts[k](x[rows], sigma[rows])
        return out


@pytest.fixture(scope="module")
def mixture() -> GaussianMixture:
    return eight_gaussians(RADIUS, STD)


@pytest.fixture(scope="module")
def x0(mixture) -> torch.Tensor:
    return mixture.sample(512, torch.Generator().manual_seed(1))[0].double()


def grid(n: int) -> torch.Tensor:
    return karras_sigmas(n, 0.002, SIGMA_MAX).double()


def round_trip(denoiser, x0: torch.Tensor, n: int, method: str, refine: int = 0) -> torch.Tensor:
    """Per-sample error of invert-then-regenerate on an n-step grid."""
    sigmas = grid(n)
    x_t = invert(denoiser, x0, sigmas, method, refine=refine)
    return (regenerate(denoiser, x_t, sigmas, method) - x0).norm(dim=1)


@pytest.mark.parametrize("method, refine, bounds", [
    ("euler", 0, {50: (6e-2, None), 100: (3e-2, 2e-1)}),
    ("ddim", 0, {100: (3e-2, 2e-1)}),
    ("heun", 0, {25: (8e-3, 4e-2), 50: (1e-3, 2.5e-2), 100: (2e-4, 5e-3)}),
    ("heun", 2, {50: (2e-5, 1e-2), 100: (1e-6, 1e-3)}),
    ("dpmpp_2m", 0, {50: (2e-3, 4e-2), 100: (3e-4, 8e-3)}),
])
def test_round_trip_within_the_stated_tolerance_that_falls_with_steps(mixture, x0, method, refine, bounds):
    medians = []
    for n, (median, p99) in bounds.items():
        err = round_trip(mixture, x0, n, method, refine)
        medians.append(float(err.median()))
        assert err.median() < median, (n, float(err.median()))
        if p99 is not None:
            assert err.quantile(0.99) < p99, (n, float(err.quantile(0.99)))
    assert medians == sorted(medians, reverse=True)


def test_refine_never_makes_a_step_worse(mixture, x0):
    for n in (10, 25, 50):
        plain = round_trip(mixture, x0, n, "heun")
        refined = round_trip(mixture, x0, n, "heun", refine=2)
        assert refined.median() <= plain.median()


def test_inverted_noise_has_the_scale_of_sigma_max(mixture, x0):
    x_t = invert(mixture, x0, grid(50), "heun")
    assert abs(float(x_t.std()) / SIGMA_MAX - 1) < 0.15


def test_float32_round_trip_matches_float64(mixture, x0):
    err = round_trip(mixture, x0.float(), 50, "heun")
    assert err.median() < 1e-3


def test_unknown_or_stochastic_methods_are_refused(mixture, x0):
    with pytest.raises(ValueError, match="cannot invert"):
        invert(mixture, x0, grid(10), "euler_maruyama")
    with pytest.raises(ValueError, match="one-step"):
        invert(mixture, x0, grid(10), "dpmpp_2m", refine=1)
    with pytest.raises(ValueError, match="grid"):
        invert(mixture, x0, grid(10)[:-1], "euler")


def test_partial_inversion_on_a_tail_of_the_grid(mixture, x0):
    sigmas = strength_grid(grid(50), 0.5)
    assert len(sigmas) == 26 and float(sigmas[-1]) == 0
    x_t = invert(mixture, x0, sigmas, "heun", refine=2)
    assert (regenerate(mixture, x_t, sigmas, "heun") - x0).norm(dim=1).median() < 1e-5


def _cluster(mixture: GaussianMixture, k: int, n: int = 256) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return mixture.means[k] + STD * torch.randn(n, 2, generator=g, dtype=torch.float64)


def test_edit_moves_class_a_to_b_and_keeps_the_offset_within_the_cluster(mixture):
    a, b = 0, 2
    x0 = _cluster(mixture, a)
    den = LabelledMixture(mixture)
    src, tgt = torch.full((len(x0),), a), torch.full((len(x0),), b)
    y = edit(den, x0, grid(50), src, tgt, "heun")
    assert bool((mixture.responsibilities(y)[:, b] > 0.999).all())
    offset_error = ((y - mixture.means[b]) - (x0 - mixture.means[a])).norm(dim=1)
    # exact flow of one Gaussian: the offset scales by sqrt(s^2 + sigma^2) / s up and back, and the change of mean
    # leaves (mu_a - mu_b) s / sqrt(s^2 + sigma_max^2) behind: 3.5e-3 here
    floor = float((mixture.means[a] - mixture.means[b]).norm()) * STD / math.hypot(STD, SIGMA_MAX)
    assert offset_error.max() < floor + 1e-3
    sdedited = sdedit(den, x0, grid(50), 1.0, "heun", cond=tgt, generator=torch.Generator().manual_seed(0))
    sd_error = ((sdedited - mixture.means[b]) - (x0 - mixture.means[a])).norm(dim=1)
    assert sd_error.median() > 20 * offset_error.median()  # SDEdit forgets where in the cluster the input was


def test_edit_to_its_own_class_returns_the_input(mixture):
    x0 = _cluster(mixture, 5)
    den, src = LabelledMixture(mixture), torch.full((len(x0),), 5)
    assert (edit(den, x0, grid(50), src, src, "heun", refine=2) - x0).abs().max() < 1e-4


def test_edit_with_guidance_lands_in_the_target_class(mixture):
    x0 = _cluster(mixture, 1)
    n = len(x0)
    den = LabelledMixture(mixture)
    y = edit(den, x0, grid(50), torch.full((n,), 1), torch.full((n,), 4), "heun", guidance_scale=2.0,
             uncond=torch.full((n,), -1))
    assert bool((mixture.responsibilities(y)[:, 4] > 0.99).all())
    with pytest.raises(ValueError, match="uncond"):
        edit(den, x0, grid(10), 1, 4, "heun", guidance_scale=2.0)


def test_diffusion_classifier_finds_each_samples_component(mixture):
    x, labels = mixture.sample(256, torch.Generator().manual_seed(9))
    den = LabelledMixture(mixture)
    conds = [torch.full((len(x),), k) for k in range(8)]
    guess = classify(den, x.double(), conds, grid(50)[:-1][::6], generator=torch.Generator().manual_seed(0))
    assert (guess == labels).float().mean() > 0.99


def test_ddpm_noise_maps_replay_to_the_input_and_edit_keeping_more_than_sdedit(mixture):
    """Edit-friendly DDPM inversion: replaying the maps under the source returns x0 up to the last step's
    D(x0, sigma_min) - x0 (exactly what a sampler's last step from x0 gives); under another class the samples land
    there and keep their place in the cluster, which SDEdit (same sampler, same grid, fresh noise) forgets."""
    a, b = 0, 2
    x0 = _cluster(mixture, a)
    den, n = LabelledMixture(mixture), len(x0)
    src, tgt = torch.full((n,), a), torch.full((n,), b)
    sigmas = grid(50)
    x_t, maps = ddpm_noise_maps(den, x0, sigmas, cond=src, generator=torch.Generator().manual_seed(0))
    assert maps.shape == (50, n, 2) and bool((maps[-1] == 0).all())  # the last step adds no noise
    again = sample(den, x_t, sigmas, "euler_ancestral", cond=src, noise_sampler=replay(maps))
    last = den(x0, sigmas[-2].expand(n), src)  # what every sampler's last step returns from x0 at sigma_min
    assert (again - last).abs().max() < 1e-9 and (again - x0).norm(dim=1).max() < 3e-4
    moved = sample(den, x_t, sigmas, "euler_ancestral", cond=tgt, noise_sampler=replay(maps))
    assert bool((mixture.responsibilities(moved)[:, b] > 0.999).all())
    kept = ((moved - mixture.means[b]) - (x0 - mixture.means[a])).norm(dim=1)
    sdedited = sdedit(den, x0, sigmas, 1.0, "euler_ancestral", cond=tgt, generator=torch.Generator().manual_seed(0))
    forgot = ((sdedited - mixture.means[b]) - (x0 - mixture.means[a])).norm(dim=1)
    assert kept.max() < 1e-3 and forgot.median() > 0.05  # measured: 4.7e-5 (median) vs 0.155
