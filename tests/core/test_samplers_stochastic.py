"""The stochastic options k-diffusion users expect: EDM churn (exactly the plain sampler when off), s_noise, a noise
sampler that sees the step interval, and the Brownian-tree noise sampler built on torchsde."""
import importlib.util
import math
import sys

import pytest
import torch

from polydiff.core.mixtures import GaussianMixture, energy_distance
from polydiff.core.noise import brownian_tree_noise, centre_groups, zero_mean
from polydiff.core.samplers import STOCHASTIC, sample
from polydiff.core.schedules import karras_sigmas

N = 2000
ETA_METHODS = {"ddim": {"eta": 1.0}, "euler_ancestral": {}, "ddpm": {}, "euler_maruyama": {}, "dpmpp_2m_sde": {},
               "dpmpp_3m_sde": {}}


@pytest.fixture(scope="module")
def mixture():
    gm = GaussianMixture(torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]]), torch.tensor([0.2, 0.1, 0.15]) ** 2,
                         torch.tensor([0.5, 0.3, 0.2]))
    g = torch.Generator().manual_seed(11)
    ref, _ = gm.sample(N, g)
    ref2, _ = gm.sample(N, g)
    return gm, ref, float(energy_distance(ref, ref2))


def start(n: int = 64, seed: int = 0, sigma_max: float = 80.0) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)) * sigma_max


def run(gm, method: str, seed: int = 1, steps: int = 12, x: torch.Tensor | None = None, **options) -> torch.Tensor:
    return sample(gm, start() if x is None else x, karras_sigmas(steps, 0.002, 80.0), method,
                  generator=torch.Generator().manual_seed(seed), **options)


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_churn_off_is_exactly_the_plain_sampler(mixture, method):
    """s_churn = 0 (whatever the other churn options) and a churn window that no sigma falls in change no bit."""
    gm, _, _ = mixture
    plain = run(gm, method)
    assert torch.equal(run(gm, method, s_churn=0.0, s_tmin=0.1, s_tmax=10.0, s_noise=1.5), plain)
    assert torch.equal(run(gm, method, s_churn=30.0, s_tmin=100.0), plain)
    assert not torch.equal(run(gm, method, s_churn=30.0), plain)


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_churn_follows_algorithm_2(method):
    """For data at a point (D = 0) every step is linear: x_hat = x + sqrt(sigma_hat^2 - sigma^2) s_noise z, and the
    step ends at x_hat sigma_next / sigma_hat, with sigma_hat = (1 + gamma) sigma inside [s_tmin, s_tmax] only."""
    den = lambda x, s, c=None: torch.zeros_like(x)  # noqa: E731
    sigmas = karras_sigmas(6, 0.01, 10.0).double()
    x0 = torch.randn(5, 3, dtype=torch.float64)
    s_churn, s_tmin, s_tmax, s_noise = 1.2, 0.1, 5.0, 0.8
    out = sample(den, x0, sigmas, method, generator=torch.Generator().manual_seed(4), s_churn=s_churn, s_tmin=s_tmin,
                 s_tmax=s_tmax, s_noise=s_noise)
    g = torch.Generator().manual_seed(4)
    x, gamma = x0, min(s_churn / 6, math.sqrt(2) - 1)
    for i in range(6):
        s = float(sigmas[i])
        s_hat = s * (1 + gamma) if s_tmin <= s <= s_tmax else s
        z = torch.randn(x.shape, generator=g, dtype=torch.float64)
        x = (x + math.sqrt(s_hat**2 - s**2) * s_noise * z) * float(sigmas[i + 1]) / s_hat
    torch.testing.assert_close(out, x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", sorted(STOCHASTIC))
def test_s_noise_one_is_the_default(mixture, method):
    gm, _, _ = mixture
    options = ETA_METHODS.get(method, {})
    assert torch.equal(run(gm, method, s_noise=1.0, **options), run(gm, method, **options))


@pytest.mark.parametrize("method", sorted(ETA_METHODS))
def test_s_noise_scales_the_step_noise(mixture, method):
    """s_noise = 0 leaves the deterministic part (the generator no longer matters); other values change the result."""
    gm, _, _ = mixture
    options = ETA_METHODS[method]
    assert torch.equal(run(gm, method, seed=1, s_noise=0.0, **options), run(gm, method, seed=2, s_noise=0.0, **options))
    assert not torch.equal(run(gm, method, s_noise=0.5, **options), run(gm, method, **options))


@pytest.mark.parametrize("method", sorted(STOCHASTIC))
def test_noise_sampler_sees_each_step_interval(method):
    """A given noise_sampler supplies the step noise in place of ``noise``, called with (sigma_i, sigma_{i+1})."""
    sigmas = karras_sigmas(5, 0.01, 10.0)
    calls = []

    def noise_sampler(sigma, sigma_next):
        calls.append((float(sigma), float(sigma_next)))
        return torch.zeros(8, 2)

    den = lambda x, s, c=None: x / (1 + s[:, None] ** 2)  # noqa: E731
    sample(den, torch.randn(8, 2) * 10, sigmas, method, noise_sampler=noise_sampler, **ETA_METHODS.get(method, {}))
    steps = [(float(a), float(b)) for a, b in zip(sigmas[:-1], sigmas[1:])]
    assert calls and all(c in steps for c in calls) and calls == sorted(calls, reverse=True)


def test_new_samplers_keep_a_domains_noise():
    """Without a noise sampler, euler_ancestral, dpmpp_3m_sde and churn draw every step's noise from ``noise``."""
    group = torch.tensor([0, 0, 0, 1, 1])
    project = centre_groups(group)
    den = lambda x, s, c=None: project(x) / (1 + s[:, None, None] ** 2)  # noqa: E731 - keeps x centred
    x = project(torch.randn(5, 4, 3))
    for method, options in [("euler_ancestral", {}), ("dpmpp_3m_sde", {}), ("heun", {"s_churn": 5.0})]:
        out = sample(den, x, karras_sigmas(6, 0.01, 1.0)[:-1], method, noise=zero_mean(group),
                     generator=torch.Generator().manual_seed(0), **options)
        torch.testing.assert_close(project(out), out, atol=1e-6, rtol=0)


needs_torchsde = pytest.mark.skipif(importlib.util.find_spec("torchsde") is None, reason="needs torchsde")


@needs_torchsde
def test_brownian_tree_increments_are_unit_normal_and_add_up():
    x = torch.zeros(40_000)
    ns = brownian_tree_noise(x, 0.002, 80.0, seed=3)
    for a, b in [(80.0, 40.0), (1.0, 0.5), (0.01, 0.0095), (0.004, 0.0)]:  # the last reaches past sigma_min
        z = ns(torch.tensor(a), torch.tensor(b))
        assert z.shape == x.shape and abs(float(z.std()) - 1) < 0.02 and abs(float(z.mean())) < 0.02, (a, b)
    a, b, c = 2.0, 1.3, 0.7  # one path: the increment over [c, a] is the sum of those over [c, b] and [b, a]
    inc = lambda s, t: ns(torch.tensor(s), torch.tensor(t)) * math.sqrt(s - t)  # noqa: E731
    torch.testing.assert_close(inc(a, c), inc(a, b) + inc(b, c), atol=1e-5, rtol=0)
    torch.testing.assert_close(ns(torch.tensor(0.7), torch.tensor(1.3)), -ns(torch.tensor(1.3), torch.tensor(0.7)))
    assert not ns(torch.tensor(0.002), torch.tensor(0.0)).any()  # nothing of the path is left below sigma_min


@needs_torchsde
def test_brownian_tree_is_fixed_by_its_seed():
    x = torch.zeros(4, 3)
    s, t = torch.tensor(1.0), torch.tensor(0.5)
    draw = lambda seed: brownian_tree_noise(x, 0.01, 10.0, seed=seed)(s, t)  # noqa: E731
    assert torch.equal(draw(5), draw(5)) and not torch.equal(draw(5), draw(6))
    rows = brownian_tree_noise(x, 0.01, 10.0, seed=[1, 2, 3, 4])(s, t)
    torch.testing.assert_close(rows[2:], brownian_tree_noise(x[:2], 0.01, 10.0, seed=[3, 4])(s, t), rtol=0, atol=0)
    with pytest.raises(ValueError, match="3 seeds for 4 rows"):
        brownian_tree_noise(x, 0.01, 10.0, seed=[1, 2, 3])


@needs_torchsde
@pytest.mark.parametrize("method", ["dpmpp_2m_sde", "dpmpp_3m_sde", "euler_ancestral"])
def test_samplers_with_a_brownian_tree(mixture, method):
    """Same seed, same samples; other seed, other samples; and a grid twice as fine reads the same path, so the
    samples move little, unlike with fresh noise."""
    gm, ref, floor = mixture
    x = start(N, seed=7)

    def brownian(seed, steps=60):
        return run(gm, method, steps=steps, x=x, noise_sampler=brownian_tree_noise(x, 0.002, 80.0, seed=seed))

    a = brownian(1)
    assert torch.equal(a, brownian(1)) and not torch.equal(a, brownian(2))
    assert float(energy_distance(a, ref)) < floor + 0.01
    moved = (brownian(1, 120) - a).norm(dim=1).median()
    fresh = (run(gm, method, steps=120, x=x) - run(gm, method, steps=60, x=x)).norm(dim=1).median()
    assert moved < 0.05 * fresh, (moved, fresh)


@needs_torchsde
def test_brownian_tree_takes_a_domains_projection():
    group = torch.tensor([0, 0, 0, 1, 1])
    ns = brownian_tree_noise(torch.zeros(5, 3), 0.01, 10.0, seed=0, project=centre_groups(group))
    z = ns(torch.tensor(2.0), torch.tensor(1.0))
    torch.testing.assert_close(z[:3].mean(0), torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(z[3:].mean(0), torch.zeros(3), atol=1e-6, rtol=0)


def test_brownian_tree_without_torchsde_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchsde", None)
    with pytest.raises(ImportError, match="needs torchsde"):
        brownian_tree_noise(torch.zeros(2), 0.01, 1.0, seed=0)
