"""Schedules: the identities of the seeds and of the sigma frame, and the grids."""
import math

import pytest
import torch

from polydiff.core.schedules import (EDM, Cosine, LinearBeta, RectifiedFlow, Shifted, Sigmoid, ddpm_sigmas,
                                     exponential_sigmas, karras_sigmas, make_grid, schedule_sigmas)

ALL = [LinearBeta(), Cosine(), Sigmoid(), EDM(), RectifiedFlow(), Shifted(Cosine(), 2.0)]


@pytest.mark.parametrize("s", ALL, ids=lambda s: type(s).__name__)
def test_frame_and_log_snr_agree(s):
    t = torch.linspace(s.t_min, s.t_max, 50, dtype=torch.float64)
    lam = s.log_snr(t)
    torch.testing.assert_close(s.frame_sigma(t), torch.exp(-lam / 2), rtol=1e-9, atol=0)
    torch.testing.assert_close(s.frame_sigma(t), s.sigma(t) / s.alpha(t), rtol=1e-9, atol=0)
    assert (lam[1:] < lam[:-1]).all(), "log-SNR must decrease with t"


@pytest.mark.parametrize("s", ALL, ids=lambda s: type(s).__name__)
def test_t_from_sigma_inverts(s):
    t = torch.linspace(s.t_min + 1e-3 * (s.t_max - s.t_min), s.t_max, 40, dtype=torch.float64)
    torch.testing.assert_close(s.t_from_sigma(s.frame_sigma(t)), t, rtol=1e-6, atol=1e-7)


def test_variance_preserving_schedules():
    for s in (LinearBeta(), Cosine(), Sigmoid()):
        t = torch.linspace(s.t_min, s.t_max, 20, dtype=torch.float64)
        torch.testing.assert_close(s.alpha(t) ** 2 + s.sigma(t) ** 2, torch.ones_like(t))


def test_linear_beta_matches_ddpm_paper():
    s = LinearBeta()
    betas = s.betas
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02) and len(betas) == 1000
    # alpha_bar is the product of (1 - beta): check a few against an explicit loop
    ab, prod = s.alphas_cumprod, 1.0
    for k in range(1000):
        prod *= 1 - float(betas[k])
        if k in (0, 9, 499, 999):
            assert float(ab[k]) == pytest.approx(prod, rel=1e-12)
    # the continuous-time schedule is the discrete chain at t = k/T
    t = torch.tensor([0.1, 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(torch.sigmoid(s.log_snr(t)), ab[[99, 499, 999]], rtol=1e-10, atol=0)
    assert float(ab[-1]) == pytest.approx(4.04e-5, rel=0.02)  # the well-known terminal alpha_bar of DDPM


def test_rectified_flow_frame():
    s = RectifiedFlow()
    t = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    torch.testing.assert_close(s.frame_sigma(t), t / (1 - t))


def test_shift_multiplies_sigma_and_matches_sd3():
    base = RectifiedFlow()
    shifted = Shifted(base, 3.0)
    t = torch.linspace(0.05, 0.95, 10, dtype=torch.float64)
    torch.testing.assert_close(shifted.frame_sigma(t), 3 * base.frame_sigma(t))
    # SD3: t' = f t / (1 + (f - 1) t) has frame sigma f t/(1-t)
    tp = 3 * t / (1 + 2 * t)
    torch.testing.assert_close(base.frame_sigma(tp), shifted.frame_sigma(t))
    torch.testing.assert_close(shifted.log_snr(t), base.log_snr(t) - 2 * math.log(3))


def test_karras_grid():
    g = karras_sigmas(10, 0.002, 80.0, rho=7)
    assert len(g) == 11 and g[-1] == 0
    assert g[0].item() == pytest.approx(80.0) and g[-2].item() == pytest.approx(0.002, rel=1e-5)
    assert (g[1:] < g[:-1]).all()
    inner = g[:-1].double() ** (1 / 7)
    torch.testing.assert_close(inner[1:] - inner[:-1], (inner[1] - inner[0]).expand(9), rtol=1e-4, atol=1e-6)


def test_other_grids():
    e = exponential_sigmas(5, 0.01, 10.0)
    torch.testing.assert_close(e[:-1].log().diff(), torch.full((4,), math.log(0.001) / 4), rtol=1e-5, atol=1e-6)
    u = schedule_sigmas(Cosine(), 8)
    assert len(u) == 9 and u[-1] == 0 and (u[1:] < u[:-1]).all()
    d = ddpm_sigmas(LinearBeta())
    assert len(d) == 1001 and d[-1] == 0
    torch.testing.assert_close(d[:-1].flip(0).double(), LinearBeta().discrete_sigmas(), rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="unknown grid"):
        make_grid("nope", 5, 0.1, 1.0)


def test_training_sigma_distributions():
    g = torch.Generator().manual_seed(0)
    edm = EDM().sample_sigma(200_000, g).log()
    assert edm.mean().item() == pytest.approx(-1.2, abs=0.01) and edm.std().item() == pytest.approx(1.2, abs=0.01)
    lin = LinearBeta().sample_sigma(10_000, g)
    assert torch.isin(lin.double(), LinearBeta().discrete_sigmas().float().double()).all()


@pytest.mark.gpu
@pytest.mark.parametrize("s", ALL + [RectifiedFlow(logit_normal=True)], ids=lambda s: type(s).__name__)
def test_training_sigmas_come_from_a_cuda_generator(s):
    """The trainer's generator lives on the training device: a CUDA generator gives the same law as a CPU one."""
    g = torch.Generator(device="cuda").manual_seed(0)
    sigma = s.sample_sigma(4096, g, "cuda")
    cpu = s.sample_sigma(4096, torch.Generator().manual_seed(0))
    assert sigma.device.type == "cuda" and sigma.isfinite().all()
    assert sigma.log().median().item() == pytest.approx(cpu.log().median().item(), abs=0.25)
