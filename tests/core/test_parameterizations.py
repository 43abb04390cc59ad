"""Exact conversions between eps, x0, v, score and flow, and the denoiser wrapper's preconditioning."""
import itertools

import pytest
import torch

from polydiff.core.broadcast import rows
from polydiff.core.denoisers import Denoiser
from polydiff.core.parameterizations import FROM_X0, TO_X0, convert, x0_to_eps, x0_to_score
from polydiff.core.schedules import Cosine

NAMES = list(TO_X0)


@pytest.mark.parametrize("src,dst", list(itertools.permutations(NAMES, 2)))
def test_round_trip(src, dst):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 3, 4, generator=g, dtype=torch.float64)
    sigma = rows(torch.rand(7, generator=g, dtype=torch.float64) * 5 + 0.05, x)
    value = torch.randn(7, 3, 4, generator=g, dtype=torch.float64)
    back = convert(x, sigma, convert(x, sigma, value, src, dst), dst, src)
    torch.testing.assert_close(back, value, rtol=1e-10, atol=1e-10)


def test_v_matches_salimans_definition():
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(2, 5, 5, generator=g, dtype=torch.float64)
    sigma = torch.tensor(0.7, dtype=torch.float64)
    alpha_t, sigma_t = 1 / (1 + sigma**2).sqrt(), sigma / (1 + sigma**2).sqrt()
    x = x0 + sigma * eps
    torch.testing.assert_close(FROM_X0["v"](x, sigma, x0), alpha_t * eps - sigma_t * x0)
    t = sigma / (1 + sigma)
    torch.testing.assert_close((1 - t) * x0 + t * eps, x / (1 + sigma))  # the flow's x_t is x / (1 + sigma)
    torch.testing.assert_close(FROM_X0["flow"](x, sigma, x0), eps - x0)


def test_tweedie_links_eps_and_score():
    x, x0 = torch.randn(2, 4, 3, dtype=torch.float64)
    sigma = torch.tensor(1.3, dtype=torch.float64)
    torch.testing.assert_close(x0_to_score(x, sigma, x0), -x0_to_eps(x, sigma, x0) / sigma)


class Linear(torch.nn.Module):
    """A network whose output we can predict: F(x_in, c_noise) = 2 x_in + c_noise."""

    def forward(self, x, c_noise, cond=None):
        return 2 * x + rows(c_noise, x)


@pytest.mark.parametrize("param", ["edm", "eps", "x0", "v", "score", "flow"])
def test_denoiser_applies_its_preconditioning(param):
    torch.manual_seed(0)
    x = torch.randn(4, 2, 3)
    sigma = torch.tensor([0.1, 0.5, 2.0, 10.0])
    sd = 0.5
    D = Denoiser(Linear(), param, sigma_data=sd)
    s = rows(sigma, x)
    c_in = 1 / (1 + s) if param == "flow" else 1 / (s**2 + sd**2).sqrt()
    F = 2 * c_in * x + rows(sigma.log() / 4, x)
    if param == "edm":
        expected = sd**2 / (s**2 + sd**2) * x + s * sd / (s**2 + sd**2).sqrt() * F
    else:
        expected = TO_X0[param](x, s, F)
    torch.testing.assert_close(D(x, sigma), expected, rtol=1e-5, atol=1e-5)


def test_scalar_sigma_and_time_conditioning():
    sched = Cosine()
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, x, c_noise, cond=None):
            seen["c"] = c_noise
            return torch.zeros_like(x)

    D = Denoiser(Probe(), "eps", c_noise="t", schedule=sched, c_noise_scale=1000)
    x = torch.randn(3, 2)
    out = D(x, torch.tensor(1.0))
    torch.testing.assert_close(out, x)  # eps = 0 means x0 = x
    assert seen["c"].shape == (3,)
    torch.testing.assert_close(seen["c"], (sched.t_from_sigma(torch.tensor(1.0)) * 1000).expand(3))
    with pytest.raises(ValueError, match="unknown parameterization"):
        Denoiser(Probe(), "nope")
