"""ControlNet (core/control.py) and the residual-features protocol of the toy MLP, the shared U-Net, the audio
mel U-Net (both layouts, controlled over time) and the points transformer: at initialisation a controlled denoiser equals its base to 1e-6, the base is frozen and the branch is
the base's encoder, the control rides in the condition through batched guidance, and guidance on the control."""
from __future__ import annotations

import pytest
import torch

from polydiff.core.control import (Controllable, ControlGuided, ControlNet, GridControlEncoder, SetControlEncoder,
                                   VectorControlEncoder, add_hint, control_encoder, drop_control, encoder_kind,
                                   with_control)
from polydiff.core.guidance import cfg
from polydiff.core.denoisers import Denoiser
from polydiff.domains.audio.network import MelUNet, NetConfig
from polydiff.domains.common.unet import UNet
from polydiff.domains.points.network import PointSetTransformer
from polydiff.domains.toy.network import ToyMLP


def _randomised(net: torch.nn.Module) -> torch.nn.Module:
    """Every weight given a value (output layers and gates start at zero, which would hide a wrong residual)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)
    return net.eval()


CASES = {
    "toy": (lambda: ToyMLP(width=32, depth=2, num_classes=2), (6, 2), torch.tensor([0, 1, -1, 0, 1, 1]), (1,)),
    "unet2d": (lambda: UNet(2, base=16, mults=(1, 2), num_res=1, attn_levels=(1,), num_classes=3), (2, 2, 8, 8),
               {"label": torch.tensor([0, 2])}, (1, 8, 8)),
    "unet1d": (lambda: UNet(3, base=16, mults=(1, 2), num_res=1, attn_levels=(), dims=1), (2, 3, 16), None, (4,)),
    "mel1d": (lambda: MelUNet(NetConfig(base=16, mults=(1, 2), attn_levels=(), layout="1d", n_mels=8,
                                        pos_channels=4)), (2, 1, 8, 16), {"label": torch.tensor([3, -1])}, (1, 16)),
    "mel2d": (lambda: MelUNet(NetConfig(base=16, mults=(1, 2), attn_levels=(), layout="2d", n_mels=8,
                                        pos_channels=2)), (2, 1, 8, 16), {"label": torch.tensor([0, 9])}, (1, 16)),
    "points": (lambda: PointSetTransformer(dim=32, depth=2, latents=8, heads=4, num_classes=2, fourier=8),
               (2, 20, 3), {"label": torch.tensor([1, 0])}, (7, 3)),
}


def _case(name: str):
    make, shape, cond, control_shape = CASES[name]
    base = _randomised(make())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, generator=g)
    sigma = torch.rand(shape[0], generator=g) * 5 + 0.1
    control = torch.randn(shape[0], *control_shape, generator=g)
    return base, x, sigma, cond, control


@pytest.mark.parametrize("name", list(CASES))
def test_at_initialisation_the_controlled_denoiser_is_the_base(name) -> None:
    base, x, sigma, cond, control = _case(name)
    assert isinstance(base, Controllable)
    feats = base.features(x * 0.3, sigma.log() / 4, cond)
    assert [f.shape[base.feature_axis] for f in feats] == base.feature_channels()
    kind = encoder_kind(control.shape[1:], base.feature_axis)
    encoder = control_encoder(kind, control.shape[1:], base.feature_channels()[0])
    controlled = Denoiser(ControlNet(base, encoder), sigma_data=0.5)
    reference = Denoiser(base, sigma_data=0.5)
    with torch.no_grad():
        expected = reference(x, sigma, cond)
        got = controlled(x, sigma, with_control(cond, control))
        uncontrolled = controlled(x, sigma, cond)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(uncontrolled, expected, rtol=0, atol=0)


def test_the_base_is_frozen_the_branch_trains_and_the_unet_branch_is_its_encoder() -> None:
    base, x, sigma, cond, control = _case("unet2d")
    net = ControlNet(base, GridControlEncoder(1, base.feature_channels()[0], dims=2))
    assert not any(p.requires_grad for p in net.base.parameters())
    assert all(p.requires_grad for p in net.branch.parameters())
    assert len(net.branch.up) == 0 and not any(k.startswith(("up.", "head.")) for k in net.branch.state_dict())
    net.train()
    assert net.branch.training and not net.base.training
    Denoiser(net)(x, sigma, with_control(cond, control)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.projections.parameters() if p.ndim == 2)
    assert all(p.grad is None for p in net.base.parameters())
    with pytest.raises(TypeError, match="residual features"):
        ControlNet(torch.nn.Linear(2, 2), VectorControlEncoder(1, 2))


def _trained(name: str, learned_null: bool = False):
    """A ControlNet whose zero projections (and null hint) were given values, as after training."""
    base, x, sigma, cond, control = _case(name)
    axis = base.feature_axis
    encoder = control_encoder(encoder_kind(control.shape[1:], axis), control.shape[1:], base.feature_channels()[0])
    net = ControlNet(base, encoder, learned_null=learned_null)
    with torch.no_grad():
        for p in [*net.projections.parameters(), *([net.null_hint] if learned_null else [])]:
            p.normal_(0, 0.1)
    return net.eval(), x, sigma, cond, control


def test_the_control_changes_the_output_and_stays_with_its_rows_under_batched_guidance() -> None:
    net, x, sigma, cond, control = _trained("toy")
    den = Denoiser(net)
    null = torch.full_like(cond, -1)
    with torch.no_grad():
        plain = Denoiser(net.base)(x, sigma, cond)
        on = den(x, sigma, with_control(cond, control))
        assert (on - plain).abs().max() > 1e-3
        torch.testing.assert_close(den(x, sigma, drop_control(with_control(cond, control))), plain)
        guided = cfg(den, 2.0, with_control(null, control))(x, sigma, with_control(cond, control))  # one stacked call
        off = den(x, sigma, with_control(null, control))
    torch.testing.assert_close(guided, off + 2.0 * (on - off), rtol=1e-5, atol=1e-5)


def test_the_control_follows_its_cloud_through_anchored_point_sets() -> None:
    """The points domain denoises big clouds in sets, repeating each cloud's condition over its sets."""
    from polydiff.domains.points.anchored import anchored

    net, _, _, _, _ = _trained("points")
    den = Denoiser(net)
    g = torch.Generator().manual_seed(3)
    x, sigma = torch.randn(2, 40, 3, generator=g), torch.tensor([0.7, 2.0])
    cond, control = {"label": torch.tensor([1, 0])}, torch.randn(2, 7, 3, generator=g)
    sets = anchored(den, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        both = sets(x, sigma, with_control(cond, control))
        second = sets(x[1:], sigma[1:], with_control({"label": cond["label"][1:]}, control[1:]))
        assert (both - sets(x, sigma, cond)).abs().max() > 1e-3
    torch.testing.assert_close(both[1:], second, rtol=1e-4, atol=1e-5)


def test_dropped_rows_get_the_learned_null_and_guidance_on_the_control() -> None:
    net, x, sigma, cond, control = _trained("toy", learned_null=True)
    den = Denoiser(net)
    keep = torch.tensor([True, False, True, False, True, False])
    with torch.no_grad():
        mixed = den(x, sigma, with_control(cond, control, keep))
        on = den(x, sigma, with_control(cond, control))
        off = den(x, sigma, drop_control(with_control(cond, control)))
        torch.testing.assert_close(mixed[keep], on[keep])
        torch.testing.assert_close(mixed[~keep], off[~keep])
        assert (off - Denoiser(net.base)(x, sigma, cond)).abs().max() > 1e-3
        torch.testing.assert_close(ControlGuided(den, 1.0)(x, sigma, with_control(cond, control)), on)
        torch.testing.assert_close(ControlGuided(den, 3.0)(x, sigma, with_control(cond, control)), off + 3 * (on - off))
        torch.testing.assert_close(ControlGuided(den, 3.0)(x, sigma, cond), den(x, sigma, cond))
    plain, *_ = _trained("toy")
    with pytest.raises(ValueError, match="learned_null"):
        Denoiser(plain)(x, sigma, with_control(cond, control, keep))


def test_hints_broadcast_and_resize_to_the_first_feature() -> None:
    h = torch.zeros(2, 4, 6, 8)
    assert torch.equal(add_hint(h, torch.ones(2, 4), 1), torch.ones(2, 4, 6, 8))
    time = torch.arange(4.0).repeat(2, 4, 1)  # [B, C, 4] over the last axis of [B, C, 6, 8]
    out = add_hint(h, time, 1)
    assert out.shape == h.shape and torch.equal(out[0, 0, 3], torch.arange(4.0).repeat_interleave(2))
    assert add_hint(torch.zeros(2, 5, 4), torch.ones(2, 4), -1).shape == (2, 5, 4)


def test_generic_encoders_by_control_shape() -> None:
    assert encoder_kind((1,), -1) == "vector" and encoder_kind((5, 3), -1) == "set"
    assert encoder_kind((1, 8, 8), 1) == "grid" and encoder_kind((16,), 1) == "vector"
    assert SetControlEncoder(3, 8)(torch.randn(2, 5, 3)).shape == (2, 8)
    assert GridControlEncoder(1, 8, dims=1)(torch.randn(2, 1, 16)).shape == (2, 8, 16)


@pytest.mark.parametrize("name", ["toy", "points", "audio", "text3d"])
def test_shipped_checkpoints_load_unchanged(name, load_shipped) -> None:
    """The protocol added methods only: every shipped network loads its weights strictly, as before."""
    run = load_shipped(name)
    assert sum(p.numel() for p in run.denoiser.parameters()) > 0
