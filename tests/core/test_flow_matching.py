"""Flow matching for grouped (ragged) and set data: one sigma per sample, the domain's noise, couplings that stay inside
a sample, each sample counted once; the ungrouped path is unchanged."""
import itertools

import pytest
import torch

from polydiff.core.broadcast import rows
from polydiff.core.couplings import (COUPLINGS, independent, minibatch_ot, resolve_coupling, within_groups_index,
                                     within_sets_ot)
from polydiff.core.losses import flow_matching_loss, weight
from polydiff.core.noise import gaussian, zero_mean
from polydiff.core.schedules import RectifiedFlow

# Three molecules of 3, 2 and 4 atoms, interleaved so that no code may assume contiguous groups.
GROUP = torch.tensor([0, 1, 2, 0, 2, 1, 2, 0, 2])


class Recorder:
    """A denoiser stub that remembers the (x, sigma) it was called with and predicts x / (1 + sigma)."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, sigma, cond=None):
        self.calls.append((x.clone(), sigma.clone()))
        return x / (1 + rows(sigma, x))


class FixedSigma:
    """A schedule stub whose training sigmas are given."""

    def __init__(self, sigma):
        self.sigma = torch.as_tensor(sigma, dtype=torch.float32)

    def sample_sigma(self, n, generator=None, device="cpu"):
        assert n == len(self.sigma)
        return self.sigma.to(device)


def used_noise(rec, x0):
    """The noise the loss paired with x0, recovered from the recorded input: (x - x0) / sigma."""
    x, sigma = rec.calls[-1]
    return (x - x0) / rows(sigma, x0)


def group_means(z, group):
    n = int(group.max()) + 1
    sums = torch.zeros(n, z.shape[1], dtype=z.dtype).index_add_(0, group, z)
    return sums / torch.bincount(group)[:, None].to(z.dtype)


def assert_row_permutation_within(a, b, group):
    """Rows of ``a`` are the rows of ``b`` permuted within each group."""
    for g in group.unique():
        ra, rb = a[group == g], b[group == g]
        dist = torch.cdist(ra, rb)
        assert (dist.min(1).values < 1e-9).all(), f"group {int(g)} holds a row from another group"
        assert len(set(dist.argmin(1).tolist())) == len(ra)


def old_flow_matching_loss(denoiser, x0, *, coupling="independent", schedule=None, cond=None, generator=None):
    """The loss as it was before grouped data (commit 4b8722c), kept as the regression reference."""
    from scipy.optimize import linear_sum_assignment

    schedule = schedule or RectifiedFlow()
    eps = gaussian(x0, generator)
    if coupling == "ot":
        cost = torch.cdist(x0.flatten(1).double(), eps.flatten(1).double()) ** 2
        eps = eps[torch.as_tensor(linear_sum_assignment(cost.numpy())[1])]
    sigma = schedule.sample_sigma(x0.shape[0], generator, x0.device)
    x = x0 + rows(sigma, x0) * eps
    err = ((denoiser(x, sigma, cond).float() - x0.float()) ** 2).reshape(x0.shape[0], -1).mean(1)
    return (weight("flow", sigma.float()) * err).mean()


@pytest.mark.parametrize("coupling", ["independent", "ot", "ot_within"])
def test_grouped_data_gets_one_sigma_per_molecule(coupling):
    rec = Recorder()
    x0 = torch.randn(9, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    flow_matching_loss(rec, x0, coupling=coupling, group=GROUP, generator=torch.Generator().manual_seed(1))
    _, sigma = rec.calls[-1]
    assert sigma.shape == (9,)
    per_molecule = [sigma[GROUP == g].unique() for g in range(3)]
    assert all(len(s) == 1 for s in per_molecule)
    assert len(torch.cat(per_molecule).unique()) == 3


@pytest.mark.parametrize("coupling", ["independent", "ot", "ot_within"])
def test_zero_mean_noise_stays_zero_centre_per_molecule(coupling):
    """A permutation within a molecule keeps its noise mean: zero_mean(group) noise stays centred after coupling."""
    rec = Recorder()
    x0 = torch.randn(9, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    noise = zero_mean(GROUP)
    flow_matching_loss(rec, x0, coupling=coupling, group=GROUP, noise=noise, generator=torch.Generator().manual_seed(1))
    eps = used_noise(rec, x0)
    torch.testing.assert_close(group_means(eps, GROUP), torch.zeros(3, 3, dtype=torch.float64), atol=1e-9, rtol=0)
    drawn = noise(x0, torch.Generator().manual_seed(1))
    assert_row_permutation_within(eps, drawn, GROUP)
    if coupling == "independent":
        torch.testing.assert_close(eps, drawn, atol=1e-9, rtol=0)
    else:
        torch.testing.assert_close(eps, drawn[within_groups_index(x0, drawn, GROUP)], atol=1e-9, rtol=0)


def brute_force_cost(a, b):
    return min(float(((a - b[list(p)]) ** 2).sum()) for p in itertools.permutations(range(len(a))))


def test_within_group_ot_never_mixes_molecules_and_is_optimal():
    g = torch.Generator().manual_seed(3)
    group = torch.tensor([2, 0, 1, 3, 0, 2, 1, 0, 2, 0, 2, 1, 0, 2])  # sizes 5, 3, 5, 1
    x0, eps = torch.randn(2, len(group), 3, generator=g, dtype=torch.float64)
    idx = within_groups_index(x0, eps, group)
    assert sorted(idx.tolist()) == list(range(len(group)))
    assert torch.equal(group[idx], group)
    for k in group.unique():
        m = group == k
        cost = float(((x0[m] - eps[idx][m]) ** 2).sum())
        assert cost == pytest.approx(brute_force_cost(x0[m], eps[m]), rel=1e-12)
    assert torch.equal(minibatch_ot(x0, eps, group), eps[idx])
    assert torch.equal(COUPLINGS["ot_within"](x0, eps, group), eps[idx])


def test_set_coupling_permutes_points_within_each_set_only():
    g = torch.Generator().manual_seed(4)
    x0, eps = torch.randn(2, 4, 5, 3, generator=g, dtype=torch.float64)
    paired = within_sets_ot(x0, eps)
    assert paired.shape == eps.shape
    for b in range(4):
        assert_row_permutation_within(paired[b], eps[b], torch.zeros(5, dtype=torch.long))
        cost = float(((x0[b] - paired[b]) ** 2).sum())
        assert cost == pytest.approx(brute_force_cost(x0[b], eps[b]), rel=1e-12)
    with pytest.raises(ValueError, match="ot_within"):
        within_sets_ot(x0[:, 0], eps[:, 0])


def test_minibatch_ot_on_sets_moves_whole_sets():
    g = torch.Generator().manual_seed(5)
    x0, eps = torch.randn(2, 6, 4, 3, generator=g, dtype=torch.float64)
    paired = minibatch_ot(x0, eps)
    order = [int(torch.cdist(paired[b].flatten()[None], eps.flatten(1)).argmin()) for b in range(6)]
    assert sorted(order) == list(range(6))
    assert torch.equal(paired, eps[order])


def test_points_shaped_batches_get_one_sigma_per_set_and_within_set_coupling():
    rec = Recorder()
    x0 = torch.randn(3, 6, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    loss = flow_matching_loss(rec, x0, coupling="ot_within", generator=torch.Generator().manual_seed(7))
    _, sigma = rec.calls[-1]
    assert sigma.shape == (3,) and torch.isfinite(loss)
    eps = used_noise(rec, x0)
    drawn = gaussian(x0, torch.Generator().manual_seed(7))
    for b in range(3):
        assert_row_permutation_within(eps[b], drawn[b], torch.zeros(6, dtype=torch.long))
    assert float(((eps - x0) ** 2).sum()) < float(((drawn - x0) ** 2).sum())


def test_grouped_loss_equals_the_hand_computed_value():
    """Each molecule counts once: mean over molecules of w(sigma_m) times the mean squared error over its atoms."""
    x0 = torch.randn(9, 3, generator=torch.Generator().manual_seed(8))
    fixed = torch.randn(9, 3, generator=torch.Generator().manual_seed(9))
    sigmas = [0.5, 2.0, 4.0]
    loss = flow_matching_loss(Recorder(), x0, schedule=FixedSigma(sigmas), group=GROUP, noise=lambda like, g: fixed)
    terms = []
    for m, s in enumerate(sigmas):
        atoms = [i for i in range(9) if GROUP[i] == m]
        sq = [float(((x0[i] + s * fixed[i]) / (1 + s) - x0[i]).pow(2).mean()) for i in atoms]
        terms.append(((1 + s) / s) ** 2 * sum(sq) / len(sq))
    assert float(loss) == pytest.approx(sum(terms) / 3, rel=1e-5)


def test_batched_loss_equals_the_hand_computed_value():
    x0 = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(10))
    fixed = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(11))
    sigmas = [0.1, 1.0, 3.0, 9.0]
    loss = flow_matching_loss(Recorder(), x0, schedule=FixedSigma(sigmas), noise=lambda like, g: fixed)
    terms = [((1 + s) / s) ** 2 * float(((x0[b] + s * fixed[b]) / (1 + s) - x0[b]).pow(2).mean())
             for b, s in enumerate(sigmas)]
    assert float(loss) == pytest.approx(sum(terms) / 4, rel=1e-5)


@pytest.mark.parametrize("shape", [(16, 2), (8, 5, 3)])
@pytest.mark.parametrize("coupling", ["independent", "ot"])
@pytest.mark.parametrize("logit_normal", [False, True])
def test_ungrouped_path_matches_the_old_loss(shape, coupling, logit_normal):
    x0 = torch.randn(*shape, generator=torch.Generator().manual_seed(12))
    schedule = RectifiedFlow(logit_normal=logit_normal)
    new = flow_matching_loss(Recorder(), x0, coupling=coupling, schedule=schedule,
                             generator=torch.Generator().manual_seed(13))
    old = old_flow_matching_loss(Recorder(), x0, coupling=coupling, schedule=schedule,
                                 generator=torch.Generator().manual_seed(13))
    assert torch.equal(new, old)


def test_couplings_resolve_by_name_and_accept_callables():
    assert set(COUPLINGS) == {"independent", "ot", "ot_within"}
    assert resolve_coupling("independent") is independent
    custom = lambda x0, eps: eps.flip(0)  # noqa: E731 - a two-argument coupling still works on ungrouped data
    assert resolve_coupling(custom) is custom
    x0 = torch.randn(4, 2, generator=torch.Generator().manual_seed(14))
    rec = Recorder()
    flow_matching_loss(rec, x0, coupling=custom, generator=torch.Generator().manual_seed(15))
    drawn = gaussian(x0, torch.Generator().manual_seed(15))
    torch.testing.assert_close(used_noise(rec, x0), drawn.flip(0))
    with pytest.raises(ValueError, match="known: independent, ot, ot_within"):
        resolve_coupling("sinkhorn")
