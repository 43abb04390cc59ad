"""Score distillation with an exact prior: a denoiser that returns the ground-truth render of the sampled cameras.

Then the SDS gradient is w(t) (x - target) / sigma, a pull toward the target images, so the field must come to render
the target object; SJC likewise. The prior network and its conditioning helpers are checked too.
"""
import math

import pytest
import torch

from polydiff.domains.text3d.cameras import orbit_cameras
from polydiff.domains.text3d.distill import DistillConfig, distill, t_max_at
from polydiff.domains.text3d.fields import SphereField
from polydiff.domains.text3d.prior import build_prior_network, drop_embeddings, null_condition, view_prompts
from polydiff.domains.text3d.render import render


def _setup():
    target_field = SphereField(0.5, 20.0, rgb=(0.9, 0.1, 0.1))
    def condition(cams):
        with torch.no_grad():
            tgt = render(target_field, cams, 16, n_samples=64, stratified=False, shading="albedo")["rgb"] * 2 - 1
        return {"embedding": torch.ones(len(cams), 4), "target": tgt}
    def exact_denoiser(x, sigma, cond):
        return cond["target"]
    return target_field, condition, exact_denoiser


@pytest.mark.parametrize("method", ["sds", "sjc"])
def test_distillation_with_an_exact_prior_recovers_the_object(method):
    target_field, condition, den = _setup()
    cfg = DistillConfig(steps=40, batch=2, size=16, n_samples=24, resolution=16, lr=0.1, guidance_scale=1.0,
                        method=method, seed=0)
    cams = orbit_cameras(torch.tensor([20.0, 20.0]), torch.tensor([30.0, 200.0]), 3.3)

    def err(field):
        with torch.no_grad():
            a = render(field, cams, 16, n_samples=64, stratified=False, shading="albedo")["rgb"]
            b = render(target_field, cams, 16, n_samples=64, stratified=False, shading="albedo")["rgb"]
        return float(((a - b) ** 2).mean())

    from polydiff.domains.text3d.distill import make_field
    before = err(make_field(cfg))
    res = distill(den, condition, cfg)
    after = err(res.field)
    assert len(res.losses) == 40 and all(torch.isfinite(torch.tensor(res.losses)))
    assert after < 0.4 * before
    with torch.no_grad():
        _, rgb = res.field(torch.zeros(1, 3))
    assert rgb[0, 0] > 0.6 and rgb[0, 1] < 0.4  # the centre turned red


def test_annealing_and_config_errors():
    cfg = DistillConfig(steps=11, t_range=(0.02, 0.98), t_anneal_to=0.5)
    assert t_max_at(cfg, 0) == pytest.approx(0.98) and t_max_at(cfg, 10) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="sds or sjc"):
        DistillConfig(method="vsd")
    with pytest.raises(ValueError, match="unknown distillation setting"):
        DistillConfig.from_dict({"stepz": 3})


def test_prior_network_and_conditioning():
    net = build_prior_network(size=16, base=8, mults=(1, 2), attn_levels=(1,))
    x = torch.randn(3, 3, 16, 16)
    cond = {"embedding": torch.randn(3, 384)}
    assert net(x, torch.zeros(3), cond).shape == x.shape
    with pytest.raises(ValueError, match="divisible"):
        build_prior_network(size=18, mults=(1, 2, 2))
    g = torch.Generator().manual_seed(0)
    assert torch.equal(drop_embeddings(cond, 1.0, g)["embedding"], torch.zeros(3, 384))
    assert torch.equal(drop_embeddings(cond, 0.0, g)["embedding"], cond["embedding"])
    assert torch.equal(null_condition(cond)["embedding"], torch.zeros(3, 384))
    cams = orbit_cameras(torch.tensor([10.0, 10.0, 80.0]), torch.tensor([0.0, 180.0, 0.0]), 3.0)
    assert view_prompts("a red mug.", cams) == ["a red mug, front view", "a red mug, back view", "a red mug, overhead view"]
    with pytest.raises(ValueError, match="empty"):
        view_prompts("  ", cams)


def test_geometry_penalty_terms():
    from polydiff.domains.text3d.distill import geometry_penalty

    out = {"opacity": torch.tensor([0.0, 1.0, 0.5, 0.5]).reshape(1, 1, 2, 2),
           "orientation": torch.tensor([0.0, 0.2, 0.0, 0.2]).reshape(1, 1, 2, 2)}
    assert geometry_penalty(out, DistillConfig()) == 0.0
    ent = float(geometry_penalty(out, DistillConfig(opacity_entropy=2.0)))
    assert abs(ent - 2.0 * 0.5 * math.log(2.0)) < 1e-3  # half the pixels at 0.5: log 2 each; 0 and 1 clamped
    assert abs(float(geometry_penalty(out, DistillConfig(orientation=10.0, sparsity=1.0))) - (1.0 + 0.5)) < 1e-6
    with pytest.raises(ValueError, match="fine_resolution"):
        DistillConfig(resolution=32, fine_resolution=32)
    with pytest.raises(ValueError, match="weights"):
        DistillConfig(orientation=-1.0)


def test_coarse_to_fine_distillation_ends_on_the_fine_grid():
    target_field, condition, den = _setup()
    cfg = DistillConfig(steps=6, batch=1, size=16, n_samples=16, resolution=8, fine_resolution=16, lr=0.1,
                        guidance_scale=1.0, orientation=0.1, opacity_entropy=0.01)
    result = distill(den, condition, cfg)
    assert result.field.resolution == 16 and len(result.losses) == 6
