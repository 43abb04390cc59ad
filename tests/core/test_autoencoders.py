"""The autoencoder contract (core/autoencoders.py): generic autoencoders by data shape, the KL-regularised loss, the
fitted latent normalisation and the generic denoiser networks over latents."""
from __future__ import annotations

import pytest
import torch

from polydiff.core.autoencoders import (Autoencoder, ConvAutoencoder, LatentCodec, LatentConvNet, LatentMLP,
                                        MLPAutoencoder, autoencoder_loss, fit_latent_norm, generic_autoencoder,
                                        kl_divergence, latent_network)


@pytest.mark.parametrize("shape, latent", [((2,), (3,)), ((3, 16), (4, 8)), ((1, 8, 12), (4, 4, 6))])
def test_generic_autoencoders_follow_the_contract(shape, latent) -> None:
    ae = generic_autoencoder(shape, latent_dim=3, latent_channels=4, width=16, base=8, mults=(1, 2))
    assert isinstance(ae, Autoencoder)
    x = torch.randn(5, *shape)
    mean, logvar = ae.posterior(x)
    assert mean.shape == logvar.shape == (5, *latent) and ae.latent_shape(shape) == latent
    z = ae.encode(x, cond=torch.zeros(5))
    assert torch.equal(z, mean) and ae.decode(z).shape == x.shape and ae(x).shape == x.shape


def test_generic_choice_by_shape_and_clear_errors() -> None:
    assert isinstance(generic_autoencoder((7,)), MLPAutoencoder)
    assert isinstance(generic_autoencoder((1, 8)), ConvAutoencoder)
    with pytest.raises(ValueError, match="no generic autoencoder"):
        generic_autoencoder((1, 2, 3, 4))
    with pytest.raises(ValueError, match="divisible by 2"):
        ConvAutoencoder(1, mults=(1, 2), dims=1).encode(torch.randn(2, 1, 7))


def test_kl_is_zero_at_the_prior_and_the_loss_trains() -> None:
    assert float(kl_divergence(torch.zeros(4, 3), torch.zeros(4, 3))) == 0.0
    assert float(kl_divergence(torch.ones(4, 3), torch.zeros(4, 3))) == pytest.approx(1.5)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 2, generator=g) * torch.tensor([2.0, 0.5])
    ae = MLPAutoencoder(2, 2, width=32)
    opt = torch.optim.Adam(ae.parameters(), 1e-2)
    first = None
    for _ in range(200):
        loss, parts = autoencoder_loss(ae, x, None, g, kl_weight=1e-4)
        first = first if first is not None else float(parts["mse"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert set(parts) == {"mse", "kl"} and float(parts["mse"]) < 0.05 * first


def test_fitted_normalisation_gives_unit_variance_and_the_codec_inverts_it() -> None:
    ae = MLPAutoencoder(2, 2, width=16)
    x = torch.randn(512, 2) * 3 + 1
    shift, scale = fit_latent_norm(ae, [(x[:256], None), (x[256:], None)])
    codec = LatentCodec(ae, shift, scale)
    with torch.no_grad():
        z = codec.encode(x)
        back, direct = codec.decode(z), ae.decode(ae.encode(x))
    assert abs(float(z.mean())) < 1e-4 and float(z.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    torch.testing.assert_close(back, direct, rtol=1e-5, atol=1e-5)


def test_latent_networks_take_labels_and_the_null_class() -> None:
    for shape, cls in (((4,), LatentMLP), ((4, 8), LatentConvNet), ((4, 4, 4), LatentConvNet)):
        net = latent_network(shape, num_classes=3, width=16, depth=2)
        assert isinstance(net, cls)
        z, c = torch.randn(2, *shape), torch.randn(2)
        out = net(z, c, torch.tensor([0, 2]))
        assert out.shape == z.shape
        torch.testing.assert_close(net(z, c, None), net(z, c, {"label": torch.tensor([-1, 3])}))
