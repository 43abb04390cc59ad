"""The prior's network: cross-attention to token states (null token, padding, start at zero), the patch stem, and the
conditions the prior is trained and guided with."""
import pytest
import torch

from polydiff.domains.common.unet import CrossAttention, UNet
from polydiff.domains.text3d.prior import build_prior_network, collate_renders, drop_embeddings, null_condition


def _cond(b: int, t: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[0, t // 2:] = False
    return {"embedding": torch.randn(b, 384, generator=gen), "tokens": torch.randn(b, t, 384, generator=gen),
            "token_mask": mask}


def _randomise_cross_attention(net: torch.nn.Module, gen: torch.Generator) -> None:
    for m in net.modules():
        if isinstance(m, CrossAttention):
            with torch.no_grad():
                m.attn.out_proj.weight.copy_(torch.randn(m.attn.out_proj.weight.shape, generator=gen) * 0.2)
                m.null.copy_(torch.randn(m.null.shape, generator=gen))


def test_cross_attention_starts_at_zero_so_tokens_change_nothing_at_initialisation():
    gen = torch.Generator().manual_seed(0)
    net = build_prior_network(size=16, base=8, mults=(1, 2), attn_levels=(1,), tokens=True).eval()
    for m in net.modules():  # a network whose head is not zero, so its output depends on its input
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.1, generator=gen)
    x, c = torch.randn(3, 3, 16, 16, generator=gen), torch.zeros(3)
    cond = _cond(3, 5, gen)
    with torch.no_grad():
        a = net(x, c, cond)
        b = net(x, c, {"embedding": cond["embedding"]})
    assert a.abs().max() > 1e-3 and torch.allclose(a, b, atol=1e-6)


def test_padding_and_the_null_token_are_exact():
    gen = torch.Generator().manual_seed(1)
    net = build_prior_network(size=16, base=8, mults=(1, 2), attn_levels=(1,), tokens=True).eval()
    _randomise_cross_attention(net, gen)
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.1, generator=gen)
    x, c = torch.randn(2, 3, 16, 16, generator=gen), torch.full((2,), 0.3)
    cond = _cond(2, 6, gen)
    padded = {**cond, "tokens": torch.cat([cond["tokens"], torch.randn(2, 4, 384, generator=gen)], 1),
              "token_mask": torch.cat([cond["token_mask"], torch.zeros(2, 4, dtype=torch.bool)], 1)}
    with torch.no_grad():
        base, pad = net(x, c, cond), net(x, c, padded)
        null = net(x, c, null_condition(cond))
        absent = net(x, c, {"embedding": torch.zeros(2, 384)})
        other = net(x, c, {**cond, "tokens": torch.randn(2, 6, 384, generator=gen)})
    assert torch.allclose(base, pad, atol=1e-5)  # padding beyond the mask is invisible
    assert torch.allclose(null, absent, atol=1e-5)  # an all-False mask is the null token alone
    assert (base - other).abs().max() > 1e-3  # and the tokens do matter once trained


def test_patch_stem_folds_pixels_and_keeps_the_shape():
    gen = torch.Generator().manual_seed(2)
    net = build_prior_network(size=32, base=8, mults=(1, 2), attn_levels=(1,), patch=2)
    assert net.stem.in_channels == 12 and net.head[-1].out_channels == 12
    x = torch.randn(2, 3, 32, 32, generator=gen)
    assert net(x, torch.zeros(2), {"embedding": torch.zeros(2, 384)}).shape == x.shape
    assert len(net.features(x, torch.zeros(2))) == len(net.feature_channels())
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 3, 30, 30), torch.zeros(1))
    with pytest.raises(ValueError, match="divisible by 8"):
        build_prior_network(size=20, base=8, mults=(1, 2, 2), patch=2)
    with pytest.raises(ValueError, match="patch"):
        UNet(1, base=8, mults=(1, 2), dims=1, patch=2)


def test_dropping_every_condition_is_the_null_condition_and_it_stacks():
    gen = torch.Generator().manual_seed(3)
    items = [(torch.randn(3, 8, 8, generator=gen), {"embedding": torch.randn(384, generator=gen),
                                                    "tokens": torch.randn(5, 384, generator=gen),
                                                    "token_mask": torch.tensor([True] * 3 + [False] * 2)})
             for _ in range(4)]
    batch = collate_renders(items)
    cond = batch.cond
    assert cond["tokens"].shape == (4, 5, 384) and cond["token_mask"].shape == (4, 5)
    dropped, null = drop_embeddings(cond, 1.0, gen), null_condition(cond)
    assert all(torch.equal(dropped[k], null[k]) for k in null)
    assert not null["token_mask"].any() and not null["embedding"].any()
    kept = drop_embeddings(cond, 0.0, gen)
    assert all(torch.equal(kept[k], cond[k]) for k in cond)
    assert all(null[k].shape == cond[k].shape for k in cond)  # so guidance can stack both branches
