"""Progressive and guided distillation against exact answers: the target makes the teacher's two steps one DDIM step,
students of an exact Gaussian-mixture teacher halve the steps (the error against the exact teacher's trajectories
falls as they train), a 4-step student recovers the mixture's weights where the teacher's own 4 steps do not, a
guidance-conditioned student matches the guided teacher's class balance at scales 1 and 3, and ragged batches keep
one level per sample and zero centre of mass."""
import copy

import pytest
import torch
from torch import nn

from polydiff.core import distillation as dist
from polydiff.core.denoisers import Denoiser
from polydiff.core.guidance import cfg
from polydiff.core.mixtures import GaussianMixture
from polydiff.core.noise import zero_mean
from polydiff.core.samplers import sample
from polydiff.core.schedules import exponential_sigmas, karras_sigmas

N_EVAL = 20000
GRID = karras_sigmas(16, 0.002, 10.0)
MEANS = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]])
COVS = torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.1, 0.0], [0.0, 0.4]], [[0.2, -0.05], [-0.05, 0.1]]])
WEIGHTS = torch.tensor([0.5, 0.3, 0.2])
CLASS_GIVEN_COMPONENT = torch.tensor([[0.8, 0.5, 0.2], [0.2, 0.5, 0.8]])


@pytest.fixture(scope="module")
def mixture():
    return GaussianMixture(MEANS, COVS, WEIGHTS)


def noise_start(sigmas: torch.Tensor, n: int = N_EVAL, seed: int = 7) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)) * sigmas[0]


def component_weights(gm: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    return torch.bincount(gm.responsibilities(x).argmax(1), minlength=len(gm.weights)) / len(x)


class Residual(nn.Module):
    """A student D(x, sigma) = exact denoiser + a small MLP whose last layer starts at zero: at first the teacher."""

    def __init__(self, gm: GaussianMixture, width: int = 64) -> None:
        super().__init__()
        self.gm = gm
        self.mlp = nn.Sequential(nn.Linear(3, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, 2))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x, sigma, cond=None):
        s = torch.as_tensor(sigma, dtype=x.dtype).expand(x.shape[0])[:, None]
        scale = (s**2 + 1).sqrt()
        return self.gm(x, s[:, 0]) + s / scale * self.mlp(torch.cat([x / scale, s.log() / 4], 1))


def train_round(student, teacher, data, grid, steps, generator, *, merge=2, labels=None, scale_range=None,
                every=None, probe=None):
    """Adam on the distillation loss; ``probe(student)`` is recorded every ``every`` steps (and at step 0)."""
    opt = torch.optim.Adam(student.parameters(), lr=3e-3)
    seen = [probe(student)] if probe else []
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(data), (512,), generator=generator)
        cond = None
        if labels is not None:
            cond = labels[idx].clone()
            cond[torch.rand(512, generator=generator) < 0.1] = -1
        loss = dist.distillation_loss(student, teacher, data[idx], grid, merge=merge, cond=cond,
                                      scale_range=scale_range, generator=generator)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if probe and step % every == 0:
            seen.append(probe(student))
    return seen


# ---- the target and the grids ------------------------------------------------------------------------------------

def two_steps(denoiser, x, grid, method):
    """Where the core sampler walking ``grid`` to its end is after two steps (Heun's last step is Euler)."""
    seen = {}
    out = sample(denoiser, x, grid, method, callback=lambda info: seen.setdefault(info["i"], info["x"]))
    return seen.get(2, out)


@pytest.mark.parametrize("method", ["ddim", "heun"])
def test_target_makes_two_teacher_steps_one_ddim_step(mixture, method):
    """Per row a different level (including the last pair, which ends at 0): one DDIM step with the target lands
    where the core sampler's two teacher steps land."""
    grid = GRID.double()
    idx = torch.tensor([0, 2, 6, 10, 14])
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * grid[idx, None]
    levels = [grid[idx + j] for j in range(3)]
    target = dist.distillation_target(mixture, x, levels, method=method).double()
    for row, i in enumerate(idx.tolist()):
        two = two_steps(mixture, x[row:row + 1], grid[i:], method)
        one = sample(lambda *_: target[row:row + 1], x[row:row + 1], grid[i:i + 3:2], "ddim")
        torch.testing.assert_close(one, two, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(target[-1:], two_steps(mixture, x[-1:], grid[14:], method), rtol=1e-5, atol=1e-5)


def test_one_step_target_is_the_teachers_estimate(mixture):
    x = noise_start(GRID, 8)
    sigma = GRID[[0, 3, 5, 7, 9, 11, 13, 15]]
    target = dist.distillation_target(mixture, x, [sigma, GRID[[1, 4, 6, 8, 10, 12, 14, 16]]])
    torch.testing.assert_close(target, mixture(x, sigma))


@pytest.mark.parametrize("make", [karras_sigmas, exponential_sigmas])
def test_student_grid_is_the_same_kind_of_grid(make):
    teacher = make(32, 0.002, 80.0)
    for rounds in (1, 2, 3):
        steps, sigma_min = dist.student_grid(teacher, rounds)
        assert steps == 32 // 2**rounds
        torch.testing.assert_close(make(steps, sigma_min, 80.0), dist.student_sigmas(teacher, rounds), rtol=1e-5,
                                   atol=0)
    with pytest.raises(ValueError, match="cannot be halved"):
        dist.student_sigmas(make(6, 0.002, 80.0), 2)


def test_weights_are_truncated_snr():
    sigma = torch.tensor([0.1, 1.0, 4.0])
    torch.testing.assert_close(dist.distillation_weight(sigma), torch.tensor([100.0, 1.0, 1.0]))
    torch.testing.assert_close(dist.distillation_weight(sigma, "snr+1", sigma_data=0.5),
                               torch.tensor([26.0, 1.25, 1 + 0.25 / 16]))


# ---- progressive distillation of an exact teacher -----------------------------------------------------------------

@pytest.fixture(scope="module")
def progressive(mixture):
    """Two rounds (16 -> 8 -> 4 steps) from the exact teacher; round 1 probed against the teacher's trajectories."""
    g = torch.Generator().manual_seed(0)
    data, _ = mixture.sample(50000, torch.Generator().manual_seed(2))
    x = noise_start(GRID, 2000, seed=11)
    exact_16 = sample(mixture, x, GRID, "ddim")
    grid_8 = dist.student_sigmas(GRID, 1)

    def error(student):
        return float(((sample(student, x, grid_8, "ddim") - exact_16) ** 2).sum(1).mean())

    student = Residual(mixture)
    errors = train_round(student, mixture, data, GRID, 200, g, every=100, probe=error)
    teacher = copy.deepcopy(student).requires_grad_(False)
    train_round(student, teacher, data, grid_8, 200, g)
    return errors, student


def test_one_round_halves_the_steps_with_a_falling_error(progressive):
    errors, _ = progressive
    assert errors[2] < errors[1] < errors[0] and errors[2] < 0.5 * errors[0], errors


def test_four_step_student_recovers_the_weights(mixture, progressive):
    _, student = progressive
    grid_4 = dist.student_sigmas(GRID, 2)
    student_err = (component_weights(mixture, sample(student, noise_start(grid_4), grid_4, "ddim")) - WEIGHTS).abs()
    teacher_err = (component_weights(mixture, sample(mixture, noise_start(grid_4), grid_4, "ddim")) - WEIGHTS).abs()
    assert student_err.max() < 0.03, student_err
    assert teacher_err.max() > 0.08, teacher_err


# ---- guided distillation -------------------------------------------------------------------------------------------

def conditional_mixture(gm: GaussianMixture):
    """The exact D(x, sigma, label) of the mixture with classes drawn per component (label -1: unconditional)."""
    per_class = [GaussianMixture(MEANS, COVS, WEIGHTS * p) for p in CLASS_GIVEN_COMPONENT]

    def denoise(x, sigma, cond=None):
        out = gm(x, sigma)
        if cond is None:
            return out
        for c, part in enumerate(per_class):
            out = torch.where((cond == c)[:, None], part(x, sigma), out)
        return out

    return denoise


class GuidedNet(nn.Module):
    """A network F(x_in, c_noise, label) (x0-parameterised, sigma_data 1): the exact conditional denoiser plus a
    residual MLP fed by a noise embedding that ``GuidanceConditioned`` finds through ``noise_embedding``."""

    noise_embedding = "noise_emb"

    def __init__(self, exact, width: int = 64) -> None:
        super().__init__()
        self.exact = exact
        self.noise_emb = nn.Sequential(nn.Linear(1, width), nn.SiLU(), nn.Linear(width, width))
        self.label_emb = nn.Embedding(3, width)
        self.inp, self.mid, self.out = nn.Linear(2, width), nn.Linear(width, width), nn.Linear(width, 2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x_in, c_noise, cond=None):
        sigma = (4 * c_noise).exp()[:, None]
        labels = torch.zeros(len(x_in), dtype=torch.long) if cond is None else cond + 1
        h = nn.functional.silu(self.inp(x_in) + self.noise_emb(c_noise[:, None]) + self.label_emb(labels))
        h = nn.functional.silu(self.mid(h))
        x = x_in * (sigma**2 + 1).sqrt()
        return self.exact(x, sigma[:, 0], cond) + sigma / (1 + sigma**2).sqrt() * self.out(h)


@pytest.fixture(scope="module")
def guided(mixture):
    """Stage 1 (the guided teacher's estimate, w in [1, 4]) on 16 levels, then one round to 8 steps."""
    exact = conditional_mixture(mixture)
    teacher = dist.guided_by_scale(exact, lambda c: torch.full_like(c, -1))
    data, component = mixture.sample(50000, torch.Generator().manual_seed(2))
    labels = torch.bernoulli(CLASS_GIVEN_COMPONENT[1][component], generator=torch.Generator().manual_seed(3)).long()
    student = Denoiser(dist.GuidanceConditioned(GuidedNet(exact)), parameterization="x0")
    g = torch.Generator().manual_seed(0)
    train_round(student, teacher, data, GRID, 300, g, merge=1, labels=labels, scale_range=(1.0, 4.0))
    stage_1 = copy.deepcopy(student).requires_grad_(False)
    train_round(student, stage_1, data, GRID, 300, g, labels=labels, scale_range=(1.0, 4.0))
    return exact, student


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_guided_student_matches_the_guided_teachers_class_balance(mixture, guided, scale):
    """The 8-step student, one pass per step at ``scale``, against the guided teacher on its 16-step grid (two passes
    per step); the teacher's own 8 steps are further off at scale 3."""
    exact, student = guided
    label = torch.zeros(N_EVAL, dtype=torch.long)
    null = torch.full_like(label, -1)
    grid_8 = dist.student_sigmas(GRID, 1)
    want = component_weights(mixture, sample(cfg(exact, scale, null), noise_start(GRID), GRID, "ddim", cond=label))
    got = component_weights(mixture, sample(dist.scale_conditioned(student, scale), noise_start(grid_8), grid_8,
                                            "ddim", cond=label))
    assert (got - want).abs().max() < 0.03, (got, want)
    if scale == 3.0:
        plain = component_weights(mixture, sample(cfg(exact, scale, null), noise_start(grid_8), grid_8, "ddim",
                                                  cond=label))
        assert (plain - want).abs().max() > (got - want).abs().max()


def test_guided_student_follows_the_scale(mixture, guided):
    _, student = guided
    label = torch.zeros(4000, dtype=torch.long)
    grid_8 = dist.student_sigmas(GRID, 1)
    first = [component_weights(mixture, sample(dist.scale_conditioned(student, w), noise_start(grid_8, 4000), grid_8,
                                               "ddim", cond=label))[0] for w in (1.0, 3.0)]
    assert first[1] > first[0] + 0.08, first


# ---- the guidance scale as a condition ---------------------------------------------------------------------------

class NoiseEmbedding(nn.Module):
    """Named like polydiff's shared embedding, so ``GuidanceConditioned`` finds it without a declaration."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise):
        return self.mlp(c_noise[:, None])


class TinyNet(nn.Module):
    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.emb = NoiseEmbedding(dim)
        self.inp, self.out = nn.Linear(3, dim), nn.Linear(dim, 3)

    def forward(self, x_in, c_noise, cond=None):
        return self.out(torch.tanh(self.inp(x_in) + self.emb(c_noise)))


class NativeNet(TinyNet):
    """The native protocol: the network embeds the guidance scale itself."""

    accepts_guidance_scale = True

    def forward(self, x_in, c_noise, cond=None, guidance_scale=None):
        self.seen = guidance_scale
        return super().forward(x_in, c_noise, cond) * guidance_scale[:, None]


def test_adapter_starts_as_the_network_and_learns_the_scale():
    net = TinyNet()
    wrapped = dist.GuidanceConditioned(net)
    assert wrapped.site == "emb" and wrapped.spec()["dim"] == 16
    x, c = torch.randn(6, 3), torch.randn(6)
    cond = dist.ScaledCond(None, torch.linspace(1, 4, 6))
    torch.testing.assert_close(wrapped(x, c, cond), net(x, c))
    opt = torch.optim.Adam(wrapped.scale_emb.parameters(), lr=1e-2)
    for _ in range(2):
        loss = (wrapped(x, c, cond) - torch.linspace(0, 1, 6)[:, None]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not torch.allclose(wrapped(x, c, cond), net(x, c))
    torch.testing.assert_close(wrapped(x, c, None), wrapped(x, c, dist.ScaledCond(None, torch.ones(6))))
    assert not net.emb._forward_hooks  # the hook lives for one call only


def test_adapter_is_rebuilt_from_its_spec():
    wrapped = dist.GuidanceConditioned(TinyNet(), frequencies=8)
    rebuilt = dist.guidance_conditioned(TinyNet(), wrapped.spec())
    rebuilt.load_state_dict(wrapped.state_dict())
    assert rebuilt.spec() == wrapped.spec()


def test_native_protocol_gets_one_scale_per_row():
    net = NativeNet()
    wrapped = dist.GuidanceConditioned(net)
    assert wrapped.scale_emb is None and wrapped.spec() == {"native": True, "default_scale": 1.0}
    x, c = torch.randn(4, 3), torch.randn(4)
    out = wrapped(x, c, dist.ScaledCond("label", torch.tensor(2.0)))
    torch.testing.assert_close(net.seen, torch.full((4,), 2.0))
    torch.testing.assert_close(out, 2 * TinyNet.forward(net, x, c))


def test_a_network_without_a_noise_embedding_is_refused():
    class Plain(nn.Module):
        def forward(self, x_in, c_noise, cond=None):
            return x_in

    assert not dist.takes_guidance_scale(Plain())
    assert dist.takes_guidance_scale(TinyNet()) and dist.takes_guidance_scale(NativeNet())
    with pytest.raises(ValueError, match="noise_embedding"):
        dist.GuidanceConditioned(Plain())


def test_scale_helpers(mixture):
    exact = conditional_mixture(mixture)
    null = lambda c: torch.full_like(c, -1)  # noqa: E731
    x, sigma, label = torch.randn(5, 2), torch.full((5,), 0.7), torch.zeros(5, dtype=torch.long)
    guided = dist.guided_by_scale(exact, null)
    torch.testing.assert_close(guided(x, sigma, dist.ScaledCond(label, torch.full((5,), 2.5))),
                               cfg(exact, 2.5, null(label))(x, sigma, label))
    torch.testing.assert_close(guided(x, sigma, None), exact(x, sigma))
    seen = {}
    dist.scale_conditioned(lambda x, s, c: seen.setdefault("c", c), 3.0)(x, sigma, label)
    assert seen["c"].cond is label and seen["c"].scale.tolist() == [3.0] * 5


# ---- ragged data -------------------------------------------------------------------------------------------------

def test_grouped_data_keeps_one_level_per_sample_and_zero_centre_of_mass():
    """Point sets of sizes 3, 5 and 2 (rows grouped): a level and a scale per set, shared by its rows; noise, the
    teacher's steps and the targets centred per set; each set counts once in the loss."""
    group = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 2, 2])
    centre = zero_mean(group)
    x0 = centre(torch.randn(10, 3), torch.Generator().manual_seed(0))
    grid = karras_sigmas(8, 0.01, 5.0)

    def shrink(x, sigma, cond=None):  # the exact denoiser of centred unit Gaussians (times w): keeps the centre at 0
        teacher_inputs.append(x)
        return x / (1 + sigma**2)[:, None] * cond.scale[:, None]

    def student(x, sigma, cond):
        seen.update(x=x, sigma=sigma, scale=cond.scale)
        return torch.zeros_like(x)

    seen, teacher_inputs = {}, []
    loss = dist.distillation_loss(student, shrink, x0, grid, cond=None, scale_range=(1, 3), noise=centre,
                                  group=group, generator=torch.Generator().manual_seed(1))
    for values in (seen["sigma"], seen["scale"]):
        assert all(values[group == g].unique().numel() == 1 for g in range(3))
    idx = (grid[None] == seen["sigma"][:, None]).float().argmax(1)
    target = dist.distillation_target(shrink, seen["x"], [grid[idx + j] for j in range(3)],
                                      dist.ScaledCond(None, seen["scale"]))
    for tensor in (seen["x"], target, *teacher_inputs):
        torch.testing.assert_close(torch.zeros(3, 3).index_add_(0, group, tensor), torch.zeros(3, 3), atol=1e-5,
                                   rtol=0)
    per_row = dist.distillation_weight(seen["sigma"]) * target.pow(2).mean(1)
    per_set = torch.zeros(3).index_add_(0, group, per_row) / torch.tensor([3.0, 5.0, 2.0])
    torch.testing.assert_close(loss, per_set.mean())
