"""Samplers against exact answers: a Gaussian mixture's closed-form denoiser, convergence order, DDIM = Euler,
DDPM = the seeds' Algorithm 2, determinism, no host-device syncs (they trace under torch.compile), and methods given
as functions. Churn, s_noise and the Brownian-tree noise sampler: test_samplers_stochastic.py."""
import pytest
import torch

from polydiff.core.mixtures import GaussianMixture, eight_gaussians, energy_distance
from polydiff.core.samplers import BUILTIN, SAMPLERS, STOCHASTIC, heun, nfe, sample, steps_for_nfe
from polydiff.core.schedules import LinearBeta, ddpm_sigmas, karras_sigmas

N = 3000


@pytest.fixture(scope="module")
def mixture():
    gm = GaussianMixture(torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]]),
                         torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.1, 0.0], [0.0, 0.4]], [[0.2, -0.05], [-0.05, 0.1]]]),
                         torch.tensor([0.5, 0.3, 0.2]))
    g = torch.Generator().manual_seed(123)
    ref, _ = gm.sample(N, g)
    ref2, _ = gm.sample(N, g)
    return gm, ref, float(energy_distance(ref, ref2))


RECOVERY = [(m, {}) for m in sorted(BUILTIN)] + [
    ("euler", {"s_churn": 40.0}),  # EDM churn: gamma = sqrt(2) - 1 at every level
    ("heun", {"s_churn": 10.0, "s_tmin": 0.05, "s_tmax": 50.0}),  # churn inside a window only
    ("ddim", {"eta": 1.0}),
    ("euler_ancestral", {"eta": 0.5, "s_noise": 1.003}),
    ("dpmpp_3m_sde", {"eta": 0.0}),
]


@pytest.mark.parametrize("method,options", RECOVERY, ids=lambda v: v if isinstance(v, str) else
                         ",".join(f"{k}={x}" for k, x in v.items()) or "default")
def test_every_sampler_recovers_the_mixture(mixture, method, options):
    gm, ref, floor = mixture
    steps = 200 if method in STOCHASTIC or options.get("s_churn") or options.get("eta") else 30
    g = torch.Generator().manual_seed(7)
    sigmas = karras_sigmas(steps, 0.002, 80.0)
    x = torch.randn(N, 2, generator=g) * sigmas[0]
    out = sample(gm, x, sigmas, method, generator=g, **options)
    weights = torch.bincount(gm.responsibilities(out).argmax(1), minlength=3) / N
    assert (weights - gm.weights.float()).abs().max() < 0.03
    assert float(energy_distance(out, ref)) < floor + 0.01


@pytest.fixture(scope="module")
def ode_reference():
    """A fine Heun solution of the probability-flow ODE from sigma 10 to 0.05 (the final jump to 0 is left out, so
    the error measured is the ODE solver's own)."""
    gm = eight_gaussians()
    x = torch.randn(128, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 10
    return gm, x, sample(gm, x, karras_sigmas(800, 0.05, 10.0)[:-1].double(), "heun")


@pytest.mark.parametrize("method,order", [("euler", 1), ("heun", 2)])
def test_convergence_order(ode_reference, method, order):
    gm, x, ref = ode_reference

    def error(steps):
        out = sample(gm, x, karras_sigmas(steps, 0.05, 10.0)[:-1].double(), method)
        return (out - ref).norm(dim=1).mean().item()

    e1, e2, e3 = (error(n) for n in (10, 20, 40))
    ratios = (e1 / e2, e2 / e3)
    expected = 2**order
    assert all(0.6 * expected < r < 1.5 * expected for r in ratios), ratios


def test_ddim_eta0_equals_euler(mixture):
    gm, _, _ = mixture
    sigmas = karras_sigmas(15, 0.002, 80.0)
    x = torch.randn(100, 2, generator=torch.Generator().manual_seed(0)) * 80
    torch.testing.assert_close(sample(gm, x, sigmas, "ddim", eta=0.0), sample(gm, x, sigmas, "euler"),
                               rtol=1e-5, atol=1e-5)


def test_ddpm_reproduces_algorithm_2(mixture):
    """Ho et al. (2020) Algorithm 2 written out in VP variables with sigma_t^2 = beta_t, the exact eps-model."""
    gm, _, _ = mixture
    sched = LinearBeta(T=200)
    betas, ab = sched.betas, sched.alphas_cumprod
    n = 64
    g = torch.Generator().manual_seed(5)
    x_T = torch.randn(n, 2, generator=g, dtype=torch.float64)
    # ours, in the sigma frame
    g_ours = torch.Generator().manual_seed(9)
    sigmas = ddpm_sigmas(sched, dtype=torch.float64)
    ours = sample(gm, x_T / ab[-1].sqrt(), sigmas, "ddpm", generator=g_ours, variance="beta")
    # theirs
    g_alg = torch.Generator().manual_seed(9)
    x = x_T.clone()
    for k in reversed(range(sched.T)):
        z = torch.randn(n, 2, generator=g_alg, dtype=torch.float64)
        if k == 0:
            z = torch.zeros_like(z)
        s = ((1 - ab[k]) / ab[k]).sqrt()
        eps = (x / ab[k].sqrt() - gm(x / ab[k].sqrt(), s)) / s
        x = (x - betas[k] / (1 - ab[k]).sqrt() * eps) / (1 - betas[k]).sqrt() + betas[k].sqrt() * z
    torch.testing.assert_close(ours, x, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", sorted(STOCHASTIC))
def test_deterministic_under_a_generator(mixture, method):
    gm, _, _ = mixture
    sigmas = karras_sigmas(8, 0.002, 80.0)
    x = torch.randn(50, 2) * 80
    a = sample(gm, x, sigmas, method, generator=torch.Generator().manual_seed(1))
    b = sample(gm, x, sigmas, method, generator=torch.Generator().manual_seed(1))
    c = sample(gm, x, sigmas, method, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


def test_custom_noise_is_used():
    """A domain's noise (here zero-mean per group of rows) reaches every stochastic step."""
    from polydiff.core.noise import zero_mean

    group = torch.tensor([0, 0, 0, 1, 1])
    seen = []
    base = zero_mean(group)

    def noise(like, generator=None):
        z = base(like, generator)
        seen.append(z)
        return z

    den = lambda x, s, c=None: x * 0  # noqa: E731 - x0 = 0 for every input
    sample(den, torch.zeros(5, 3), karras_sigmas(4, 0.01, 1.0), "ddpm", noise=noise,
           generator=torch.Generator().manual_seed(0))
    assert len(seen) == 4
    for z in seen:
        torch.testing.assert_close(z[:3].mean(0), torch.zeros(3), atol=1e-6, rtol=0)
        torch.testing.assert_close(z[3:].mean(0), torch.zeros(3), atol=1e-6, rtol=0)


COMPILED = [(m, {}) for m in sorted(BUILTIN)] + [
    ("euler", {"s_churn": 3.0, "s_tmin": 0.05, "s_tmax": 5.0}),
    ("heun", {"s_churn": 3.0, "s_noise": 1.007}),
    ("ddim", {"eta": 1.0, "s_noise": 0.9}),
    ("dpmpp_3m_sde", {"eta": 0.5, "noise_sampler": lambda s, s_next: torch.cos(3 * s + s_next).expand(16, 2)}),
]


@pytest.mark.parametrize("method,options", COMPILED, ids=lambda v: v if isinstance(v, str) else ",".join(v) or "-")
def test_runs_under_torch_compile_without_graph_breaks(method, options):
    """fullgraph=True fails on any data-dependent Python branch or host sync inside the loop. The noise is a
    deterministic stand-in so that compiled and eager runs can be compared value for value."""
    torch._dynamo.reset()
    den = lambda x, s, c=None: x / (1 + s[:, None] ** 2)  # noqa: E731 - exact denoiser of N(0, I) data
    noise = lambda like, g=None: torch.sin(7 * like + 1)  # noqa: E731
    sigmas = karras_sigmas(6, 0.01, 10.0)
    x = torch.randn(16, 2)
    fn = SAMPLERS[method]
    compiled = torch.compile(lambda x, s: fn(den, x, s, noise=noise, **options), fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x, sigmas), fn(den, x, sigmas, noise=noise, **options), rtol=1e-5, atol=1e-5)


def test_unknown_sampler_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown sampler 'nope'"):
        sample(lambda x, s, c=None: x, torch.zeros(2, 2), karras_sigmas(2, 0.1, 1.0), "nope")


def test_a_sampler_function_is_a_method(mixture):
    """``sample`` takes a sampler function as well as a built-in name (how the plugin manager passes its own), with
    options and the progress bar; nothing is registered in core by doing so."""
    gm, _, _ = mixture
    sigmas = karras_sigmas(10, 0.002, 80.0)
    x = torch.randn(100, 2, generator=torch.Generator().manual_seed(0)) * 80
    assert torch.equal(sample(gm, x, sigmas, heun), sample(gm, x, sigmas, "heun"))
    seen = {}

    def halfway(denoiser, x, sigmas, *, cond=None, noise=None, callback=None, generator=None, scale=1.0):
        seen.update(scale=scale, steps=len(sigmas) - 1)
        return denoiser(x, sigmas[0].expand(x.shape[0]), cond) * scale

    out = sample(gm, x, sigmas, halfway, scale=0.5, progress=True)
    torch.testing.assert_close(out, gm(x, sigmas[0]) * 0.5)
    assert seen == {"scale": 0.5, "steps": 10}
    assert halfway not in SAMPLERS.values() and "halfway" not in SAMPLERS
    with pytest.raises(TypeError):
        SAMPLERS["halfway"] = halfway  # the built-in table is fixed: plugins register with the plugin manager


def test_nfe_counts_for_names_and_functions():
    assert [nfe(m, 10) for m in ("euler", "heun", "euler_ancestral", "dpmpp_3m_sde", "langevin_pc")] == [10, 19, 10,
                                                                                                         10, 19]
    assert nfe(heun, 10) == 19 and steps_for_nfe(heun, 19) == 10 and steps_for_nfe("dpmpp_3m_sde", 19) == 19
    assert BUILTIN >= STOCHASTIC >= {"euler_ancestral", "dpmpp_3m_sde"}


@pytest.mark.gpu
@pytest.mark.parametrize("method,options", [("dpmpp_2m", {}), ("euler_ancestral", {}), ("dpmpp_3m_sde", {}),
                                            ("heun", {"s_churn": 10.0, "s_tmin": 0.05, "s_tmax": 50.0})])
def test_samplers_on_cuda_bf16(method, options):
    gm = eight_gaussians()
    sigmas = karras_sigmas(20, 0.002, 80.0, device="cuda")
    x = torch.randn(1000, 2, device="cuda") * 80
    den = lambda x, s, c=None: gm(x.float(), s.float()).to(x.dtype)  # noqa: E731
    out = sample(den, x.bfloat16(), sigmas, method, **options)
    assert out.dtype == torch.bfloat16 and out.isfinite().all()
