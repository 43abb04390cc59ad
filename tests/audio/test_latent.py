"""Latent diffusion of the audio domain (``domains/audio/latent.py``): the mel autoencoder's shapes and compression, a
tiny latent run of the spoken digits trained a few steps that samples clips through its decoder, and the shipped
latent checkpoint (FSDD) loading and sampling with its bundled autoencoder."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polydiff.domains.audio.latent import LatentMelUNet, build_autoencoder, build_latent_network
from polydiff.domains.audio.plugin import make_domain
from polydiff.plugins.latent import RECONSTRUCTION, latent_train, load_autoencoder, train_autoencoder
from polydiff.plugins.runs import load_run, resolve_config

SHIPPED = Path(__file__).parents[2] / "domains" / "audio" / "checkpoints" / "fsdd-latent"
DATA = {"n_voices": 5, "valid_fraction": 0.0, "test_fraction": 0.2}
TRAIN = {"steps": 2, "batch_size": 4, "log_every": 1, "ckpt_every": 2, "progress": False, "warmup": 0}
AE = {"data": DATA, "train": TRAIN, "autoencoder": {"latent_channels": 4, "args": {"base": 4}}}
RUN = {"data": DATA, "network": {"base": 8, "mults": [1, 2], "num_res": 1, "attn_levels": [], "pos_channels": 4},
       "train": TRAIN, "sample": {"steps": 2, "sampler": "euler", "gl_iters": 2}}


def test_the_mel_autoencoder_is_four_times_smaller_per_axis() -> None:
    torch.manual_seed(0)
    cfg = {"autoencoder": {"latent_channels": 4, "args": {"base": 4}}}
    ae = build_autoencoder(cfg).eval()
    x = torch.randn(2, 1, 64, 64)
    z = ae.encode(x)
    assert z.shape == (2, 4, 16, 16) and x.numel() / z.numel() == 4.0
    assert ae.decode(z).shape == x.shape
    with pytest.raises(ValueError, match="args"):
        build_autoencoder({"autoencoder": {"latent_channels": 4, "args": {"width": 3}}})


def test_the_latent_network_is_the_mel_unet_over_latent_frames() -> None:
    from polydiff.domains.audio.network import NetConfig

    net = LatentMelUNet((4, 16, 16), NetConfig(base=8, mults=(1, 2), attn_levels=(), num_classes=10, pos_channels=4))
    z = torch.randn(3, 4, 16, 16)
    out = net(z, torch.zeros(3), {"label": torch.tensor([0, 5, -1])})
    assert out.shape == z.shape and net.unet.config.n_mels == 64 and net.unet.config.layout == "1d"
    with pytest.raises(ValueError, match="latents"):
        net(torch.randn(1, 4, 8, 16), torch.zeros(1))


def test_the_fsdd_latent_preset_is_the_fsdd_recipe_with_a_smaller_unet() -> None:
    domain = make_domain()
    fsdd, latent = resolve_config(domain, "fsdd"), resolve_config(domain, "fsdd-latent")
    assert latent["data"] == fsdd["data"] and latent["diffusion"] == fsdd["diffusion"]
    assert latent["network"] == {**fsdd["network"], "base": 64}
    assert (latent["train"]["steps"], latent["train"]["decay_from"]) == (20000, 12000)


@pytest.fixture(scope="module")
def tiny_latent(tmp_path_factory, tiny_train):
    domain, root = make_domain(), tmp_path_factory.mktemp("audio-latent")
    torch.manual_seed(0)
    ae = train_autoencoder(domain, root / "ae", override=AE, domain_metric=False)
    run = latent_train(domain, ae, resolve_config(domain, "quick", RUN), root / "latent")
    return domain, ae, run


def test_a_tiny_latent_run_trains_and_samples_decoded_clips(tiny_latent) -> None:
    domain, ae, run = tiny_latent
    a = ae.config["autoencoder"]
    assert (a["data_shape"], a["latent_shape"]) == ([1, 64, 64], [4, 16, 16]) and a["scale"] > 0
    recon = (ae.path / RECONSTRUCTION).read_text()
    assert '"compression": 4.0' in recon
    assert isinstance(run.denoiser.net, LatentMelUNet) and run.config["diffusion"]["sigma_data"] == 1.0
    out = run.sample(2, label=3, seed=0)
    assert out["x"].shape == (2, 1, 64, 64) and out["waves"].shape[0] == 2 and out["labels"] == [3, 3]
    again = load_run(domain, run.path)
    assert isinstance(again.denoiser.net, LatentMelUNet)
    assert torch.allclose(again.sample(2, label=3, seed=0)["x"], out["x"], atol=1e-5)
    assert isinstance(load_autoencoder(domain, ae.path).autoencoder, type(build_autoencoder(ae.config)))


def test_the_latent_network_reads_the_run_config(tiny_latent) -> None:
    _, _, run = tiny_latent
    net = build_latent_network(run.config)
    assert net.shape == (4, 16, 16) and net.unet.config.base == 8 and net.unet.config.num_classes == 10


@pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="the shipped latent checkpoint is not there")
def test_the_shipped_latent_model_samples_a_digit_with_its_bundled_autoencoder() -> None:
    import polydiff

    run = polydiff.load("audio", SHIPPED)
    assert run.config["latent"]["autoencoder"] == str((SHIPPED / "autoencoder").resolve())
    out = run.sample(1, label=3, seed=0, steps=4)
    assert out["waves"].shape == (1, 8000) and bool(out["waves"].abs().amax() > 1e-3)
