"""The mel U-Net under the denoiser contract, conditioning, and the inpainting mask over mel frames."""
import pytest
import torch

from polydiff.core.guidance import inpaint
from polydiff.core.samplers import sample
from polydiff.core.schedules import karras_sigmas
from polydiff.domains.audio.features import MelConfig
from polydiff.domains.audio.inpainting import frame_span, inpaint_mask, parse_span
from polydiff.domains.audio.network import MelUNet, NetConfig, build_denoiser, label_cond, position_channels

SMALL = NetConfig(base=8, mults=(1, 2), num_res=1, attn_levels=(1,), num_classes=10)


def test_network_contract_shapes_and_label_effect():
    torch.manual_seed(0)
    net = MelUNet(SMALL)
    for p in net.parameters():  # the U-Net zero-initialises its output: perturb so labels can matter
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(3, 1, 64, 64)
    c = torch.full((3,), 0.1)
    out_a = net(x, c, label_cond([1, 2, 3], 3, 10))
    out_b = net(x, c, label_cond([4, 5, 6], 3, 10))
    out_null = net(x, c, label_cond(None, 3, 10))
    assert out_a.shape == x.shape
    assert not torch.allclose(out_a, out_b) and not torch.allclose(out_a, out_null)


@pytest.mark.parametrize("layout", ["2d", "1d"])
def test_rows_are_independent(layout):
    torch.manual_seed(0)
    den = build_denoiser(NetConfig(**{**SMALL.to_dict(), "layout": layout})).eval()
    for p in den.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(2, 1, 64, 64)
    sigma = torch.tensor([0.5, 3.0])
    cond = label_cond([1, 7], 2, 10)
    both = den(x, sigma, cond)
    first = den(x[:1], sigma[:1], {"label": cond["label"][:1]})
    assert torch.allclose(both[:1], first, atol=1e-5)


def test_1d_layout_reads_mel_bins_as_channels():
    torch.manual_seed(0)
    net = MelUNet(NetConfig(base=16, mults=(1, 2), num_res=1, attn_levels=(1,), num_classes=10, layout="1d", n_mels=32))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x, c = torch.randn(2, 1, 32, 16), torch.full((2,), 0.1)
    out = net(x, c, label_cond([1, 2], 2, 10))
    assert out.shape == x.shape and not torch.allclose(out, net(x, c, label_cond([3, 4], 2, 10)))
    with pytest.raises(ValueError, match=r"\[B, 1, 32, frames\]"):
        net(torch.randn(2, 1, 64, 16), c)
    with pytest.raises(ValueError, match="layout"):
        MelUNet(NetConfig(layout="3d"))


@pytest.mark.parametrize("layout", ["1d", "2d"])
def test_position_channels_tell_the_network_where_it_is(layout):
    """A constant input gives a constant output away from the edges unless position channels are appended."""
    torch.manual_seed(0)
    interior = {}
    for k in (0, 8):
        net = MelUNet(NetConfig(base=8, mults=(1, 2), num_res=1, attn_levels=(), num_classes=0, layout=layout,
                                n_mels=16, pos_channels=k))
        for p in net.parameters():
            torch.nn.init.normal_(p, std=0.05)
        out = net(torch.zeros(1, 1, 16, 256), torch.zeros(1))
        interior[k] = out[..., 96:160].std(-1).max().item()
    assert interior[0] < 1e-5 and interior[8] > 1e-3


def test_position_channels_values():
    pos = position_channels(64, 8)
    assert pos.shape == (8, 64) and pos.abs().max() <= 1
    assert torch.cdist(pos.T, pos.T).add(torch.eye(64)).min() > 0.05  # every frame has its own code
    assert torch.all(pos[0, 1:] < pos[0, :-1])  # the longest wavelength is monotone over the clip
    with pytest.raises(ValueError, match="pos_channels"):
        MelUNet(NetConfig(pos_channels=3))


def test_label_cond_validation():
    assert label_cond(3, 4, 10)["label"].tolist() == [3, 3, 3, 3]
    assert label_cond(None, 2, 10)["label"].tolist() == [-1, -1]
    assert label_cond(None, 2, 0) is None
    with pytest.raises(ValueError, match="0..9"):
        label_cond(10, 2, 10)
    with pytest.raises(ValueError, match="unconditional"):
        label_cond(1, 2, 0)
    net = MelUNet(NetConfig(base=8, mults=(1, 2), num_res=1, attn_levels=(), num_classes=0))
    with pytest.raises(ValueError, match="unconditional"):
        net(torch.zeros(1, 1, 64, 64), torch.zeros(1), {"label": torch.tensor([1])})


def test_frame_span_and_mask():
    cfg = MelConfig()
    assert frame_span(0.0, 1.0, cfg) == (0, 63)
    first, last = frame_span(0.25, 0.5, cfg)
    assert (first, last) == (16, 32)  # frame i is centred at i * 256 / 16000 s
    known = torch.randn(2, 1, 64, 64)
    k, mask = inpaint_mask(known, 0.25, 0.5, cfg)
    assert torch.equal(k, known)
    assert mask[..., 16:32].sum() == 0 and mask[..., :16].min() == 1 and mask[..., 32:].min() == 1
    assert parse_span("0.3:0.6") == (0.3, 0.6)
    for bad in ("0.6:0.3", "0:2", "abc"):
        with pytest.raises(ValueError, match="span|START:END"):
            frame_span(*parse_span(bad), cfg)


def test_inpainting_keeps_known_frames_exactly():
    torch.manual_seed(0)
    den = build_denoiser(SMALL).eval()
    known = torch.randn(1, 1, 64, 64)
    _, mask = inpaint_mask(known, 0.25, 0.5)
    sigmas = karras_sigmas(4, 0.01, 10.0)
    out = sample(inpaint(den, known, mask), torch.randn(1, 1, 64, 64) * sigmas[0], sigmas, "euler",
                 cond=label_cond(None, 1, 10))
    assert torch.allclose(out * mask, known * mask, atol=1e-5)
    assert not torch.allclose(out, known)
