"""Guidance wrappers checked on a Gaussian mixture, where conditionals are known exactly."""
import math

import pytest
import torch

from polydiff.core import guidance
from polydiff.core.mixtures import GaussianMixture, eight_gaussians
from polydiff.core.samplers import sample
from polydiff.core.schedules import Cosine, karras_sigmas

GM = eight_gaussians()


def conditional(gm: GaussianMixture):
    """cond = a set of component indices (a restricted mixture) or None (the whole mixture)."""

    def den(x, sigma, cond=None):
        if cond is None:
            return gm(x, sigma)
        keep = torch.zeros(len(gm.weights), dtype=torch.bool)
        keep[list(cond)] = True
        return gm.restricted(keep)(x, sigma)

    return den


def draw(den, n=2000, steps=30, seed=0, method="heun", cond=None):
    g = torch.Generator().manual_seed(seed)
    sigmas = karras_sigmas(steps, 0.002, 80.0)
    return sample(den, torch.randn(n, 2, generator=g) * 80, sigmas, method, cond=cond, generator=g)


def components(x):
    return GM.responsibilities(x).argmax(1)


def test_cfg_scale_one_is_the_conditional_model():
    den = conditional(GM)
    x = torch.randn(50, 2) * 3
    s = torch.full((50,), 0.7)
    torch.testing.assert_close(guidance.cfg(den, 1.0)(x, s, (1, 2)), den(x, s, (1, 2)))
    torch.testing.assert_close(guidance.cfg(den, 0.0)(x, s, (1, 2)), den(x, s, None))
    # a larger scale extrapolates along D_c - D_u
    d3 = guidance.cfg(den, 3.0)(x, s, (1, 2))
    torch.testing.assert_close(d3, den(x, s, None) + 3 * (den(x, s, (1, 2)) - den(x, s, None)))


def test_classifier_guidance_with_the_exact_classifier_is_the_exact_conditional():
    """D(x | y) = D(x) + sigma^2 grad log p(y | x) when p(y | x) is the mixture's own responsibility."""
    den = conditional(GM)

    def log_p_y(x, sigma):
        return torch.log(GM.responsibilities(x, sigma)[:, 3]).float()

    x = torch.randn(64, 2) * 2
    s = torch.full((64,), 0.9)
    guided = guidance.classifier_guidance(den, log_p_y, scale=1.0)
    torch.testing.assert_close(guided(x, s), den(x, s, (3,)), rtol=1e-4, atol=1e-4)


def test_dps_with_a_masking_operator_lands_on_consistent_components():
    """Observing x = sqrt(2) leaves components 1 and 7 (prior mass 1/4) as the exact posterior. DPS's Gaussian
    approximation of p(y | x) puts most samples there, never on the far side, and splits them evenly; a minority is
    pulled off component 0 (x = 2), the approximation's known bias."""
    y = torch.full((1500, 1), math.sqrt(2.0))
    den = guidance.dps(GM, lambda x0: x0[:, :1], y, scale=1.0, noise_std=0.05)
    out = draw(den, n=1500, steps=100, method="euler_maruyama")
    k = components(out)
    counts = torch.bincount(k, minlength=8).float() / len(k)
    assert counts[1] + counts[7] > 0.75
    assert counts[2:7].sum() < 0.03
    assert (counts[1] - counts[7]).abs() < 0.1
    assert (out[:, 0] - math.sqrt(2.0)).abs().median() < 0.1


def test_inpainting_keeps_the_known_part_and_conditions_the_rest():
    """Observed y = 2 leaves component 2 (prior mass 1/8) as the exact posterior. Replacement keeps y exactly and
    pulls most samples there; RePaint's resampling harmonises more of the rest."""
    n = 1500
    known = torch.zeros(n, 2)
    known[:, 1] = 2.0
    mask = torch.tensor([0.0, 1.0]).expand(n, 2)
    out = draw(guidance.inpaint(GM, known, mask), n=n, steps=50, method="euler_maruyama")
    torch.testing.assert_close(out[:, 1], known[:, 1])
    replaced = (components(out) == 2).float().mean()
    assert replaced > 0.3
    g = torch.Generator().manual_seed(0)
    sigmas = karras_sigmas(30, 0.002, 80.0)
    out = guidance.repaint(GM, torch.randn(n, 2, generator=g) * 80, sigmas, known, mask, resample=10, generator=g)
    torch.testing.assert_close(out[:, 1], known[:, 1])
    assert (components(out) == 2).float().mean() > replaced + 0.15


def test_composition_concentrates_where_both_conditions_hold():
    den = conditional(GM)
    both = guidance.compose(den, [((0, 1, 2), 1.0), ((2, 3, 4), 1.0)], uncond=None)
    out = draw(both, n=1500, method="euler_maruyama", steps=100)
    assert (components(out) == 2).float().mean() > 0.8
    alone = draw(den, n=1500, cond=(0, 1, 2))
    assert (components(alone) == 2).float().mean() < 0.5


def test_negative_weight_avoids_a_condition():
    den = conditional(GM)
    avoid = guidance.compose(den, [((0, 1, 2), 1.0), ((0,), -1.0)], uncond=None)
    out = draw(avoid, n=1500, method="euler_maruyama", steps=100)
    assert (components(out) == 0).float().mean() < 0.05


def test_sdedit_strength():
    x_init = torch.full((1000, 2), 0.0) + torch.tensor([2.0, 0.05])
    sigmas = karras_sigmas(40, 0.002, 80.0)
    gentle = guidance.sdedit(GM, x_init, sigmas, 0.2, "heun", generator=torch.Generator().manual_seed(0))
    assert (gentle - x_init).norm(dim=1).median() < 0.3
    full = guidance.sdedit(GM, x_init, sigmas, 1.0, "heun", generator=torch.Generator().manual_seed(0))
    assert len(torch.unique(components(full))) == 8


def test_sds_gradient_and_mode_seeking():
    sched = Cosine()
    x = torch.tensor([[0.3, 0.2]], requires_grad=True)
    t = torch.tensor([0.5], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    loss = guidance.sds_loss(GM, x, sched, t=t, generator=g)
    loss.backward()
    g = torch.Generator().manual_seed(0)
    sigma = sched.frame_sigma(t).float()
    eps = torch.randn(1, 2, generator=g)
    xs = x.detach() + sigma * eps
    expected = sched.sigma(t).float() ** 2 * ((xs - GM(xs, sigma)) / sigma - eps)
    torch.testing.assert_close(x.grad, expected, rtol=1e-5, atol=1e-6)

    for loss_fn in (lambda p, gen: guidance.sds_loss(GM, p, sched, generator=gen, t_range=(0.02, 0.5)),
                    lambda p, gen: guidance.sjc_loss(GM, p, sigma_range=(0.01, 1.0), generator=gen)):
        p = torch.tensor([[0.4, 0.3]] * 16, requires_grad=True)
        opt = torch.optim.Adam([p], lr=0.05)
        gen = torch.Generator().manual_seed(1)
        for _ in range(300):
            opt.zero_grad()
            loss_fn(p, gen).backward()
            opt.step()
        d = torch.cdist(p.detach().double(), GM.means).min(1).values
        assert d.median() < 0.5, d  # from 1.5 at the start: the particles seek the modes


def masked(gm: GaussianMixture):
    """The exact denoiser of each row's own sub-mixture: cond = {"keep": bool [B or 1, K]} (batchable when B)."""

    def den(x, sigma, cond):
        s = torch.as_tensor(sigma).expand(x.shape[0])
        keep = cond["keep"].expand(x.shape[0], -1)
        out = torch.empty_like(x)
        for m in keep.unique(dim=0):
            sel = (keep == m).all(1)
            out[sel] = gm.restricted(m)(x[sel], s[sel])
        return out

    return den


class Counting:
    """A denoiser that records the batch size of each call."""

    def __init__(self, den):
        self.den, self.calls = den, []

    def __call__(self, x, sigma, cond=None):
        self.calls.append(x.shape[0])
        return self.den(x, sigma, cond)


def _keep(n: int, *components: int) -> torch.Tensor:
    keep = torch.zeros(n, 8, dtype=torch.bool)
    keep[:, list(components)] = True
    return keep


def test_cfg_batched_equals_two_calls_on_the_exact_mixture():
    n = 40
    x = torch.randn(n, 2) * 2
    sigma = torch.full((n,), 0.8)
    cond = {"keep": _keep(n, 1, 2)}
    cond["keep"][::3] = _keep(1, 5)[0]  # rows with different conditions
    uncond = {"keep": torch.ones(n, 8, dtype=torch.bool)}
    one, two = Counting(masked(GM)), Counting(masked(GM))
    batched = guidance.cfg(one, 3.0, uncond)(x, sigma, cond)
    separate = guidance.cfg(two, 3.0, uncond, batched=False)(x, sigma, cond)
    assert one.calls == [2 * n] and two.calls == [n, n]
    torch.testing.assert_close(batched, separate, rtol=1e-5, atol=1e-5)
    exact = masked(GM)(x, sigma, uncond) + 3.0 * (masked(GM)(x, sigma, cond) - masked(GM)(x, sigma, uncond))
    torch.testing.assert_close(batched, exact, rtol=1e-5, atol=1e-5)
    scalar_sigma = guidance.cfg(masked(GM), 3.0, uncond)(x, torch.tensor(0.8), cond)  # a 0-d sigma is per row too
    torch.testing.assert_close(scalar_sigma, batched, rtol=1e-5, atol=1e-5)


class LabelNet(torch.nn.Module):
    """A small class-conditional conv net as an EDM denoiser (label 10 is the null class)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(11, 16)
        self.inp = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.out = torch.nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, x, sigma, cond):
        s = torch.as_tensor(sigma, dtype=x.dtype).expand(x.shape[0])[:, None, None, None]
        h = self.inp(x / (1 + s**2).sqrt()) + self.embed(cond["label"])[:, :, None, None] + s.log()
        return x / (1 + s**2) + s / (1 + s**2).sqrt() * self.out(torch.nn.functional.silu(h))


def test_cfg_and_compose_batched_equal_two_calls_on_a_small_network():
    net = LabelNet().eval()
    x = torch.randn(6, 3, 8, 8)
    sigma = torch.linspace(0.1, 5, 6)
    cond = {"label": torch.arange(6), "scale": 1.0}
    uncond = {"label": torch.full((6,), 10), "scale": 1.0}
    with torch.no_grad():
        for wrap in (lambda b: guidance.cfg(net, 4.0, uncond, batched=b),
                     lambda b: guidance.compose(net, [(cond, 2.0), ({**cond, "label": cond["label"].flip(0)}, -0.5)],
                                                uncond, batched=b)):
            torch.testing.assert_close(wrap(True)(x, sigma, cond), wrap(False)(x, sigma, cond), rtol=1e-5, atol=1e-5)


def test_unstackable_conditions_take_the_two_call_path():
    n = 30
    x = torch.randn(n, 2)
    sigma = torch.full((n,), 0.5)
    for cond, uncond in (((1, 2), None),  # component tuples: no batch layout
                         ({"keep": _keep(1, 1, 2)}, {"keep": torch.ones(1, 8, dtype=torch.bool)}),  # one row, not n
                         ({"keep": _keep(n, 1), "names": ["a"] * n}, {"keep": _keep(n, 2), "names": ["a"] * n})):
        den = Counting(conditional(GM) if isinstance(cond, tuple) else masked(GM))
        guidance.cfg(den, 2.0, uncond)(x, sigma, cond)
        assert den.calls == [n, n], cond
        with pytest.raises(guidance.Unbatchable):
            guidance.cfg(den, 2.0, uncond, batched=True)(x, sigma, cond)
    den = Counting(conditional(GM))
    guidance.compose(den, [((0, 1, 2), 1.0), ((2, 3, 4), 1.0)])(x, sigma)
    assert den.calls == [n, n, n]
    graph = {"pos": torch.zeros(n, 3), "ptr": torch.tensor([0, 10, n])}  # ragged: a per-molecule tensor
    with pytest.raises(guidance.Unbatchable):
        guidance.stack_conds([graph, graph.copy()], n)


def test_stack_conds_layout():
    a, b = torch.zeros(4, 3), torch.ones(4, 3)
    got = guidance.stack_conds([{"h": a, "mask": None, "mode": "x", "extra": [a]},
                                {"h": b, "mask": None, "mode": "x", "extra": [b]}], 4)
    assert torch.equal(got["h"], torch.cat([a, b])) and got["mask"] is None and got["mode"] == "x"
    assert torch.equal(got["extra"][0], torch.cat([a, b]))
    for bad in ([a, b[:3]], [a, b.long()], [{"h": a}, {"g": b}], [{"mode": "x"}, {"mode": "y"}], [object(), object()]):
        with pytest.raises(guidance.Unbatchable):
            guidance.stack_conds(bad, 4)
    same = Counting(conditional(GM))
    guidance.cfg(same, 2.0, None)(torch.randn(5, 2), torch.ones(5), None)  # one object for both: one call
    assert same.calls == [5]
