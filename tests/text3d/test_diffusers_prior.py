"""The diffusers adapter: a tiny random UNet2DConditionModel as a sigma-frame denoiser, checked against hand-computed
diffusers calls, through SDS, samplers, a VAE-latent distillation, and loading from a local folder."""
from __future__ import annotations

import json
import sys

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from polydiff.core.guidance import cfg, sds_loss  # noqa: E402
from polydiff.core.samplers import sample  # noqa: E402
from polydiff.core.schedules import LinearBeta, karras_sigmas  # noqa: E402
from polydiff.domains.text3d.cameras import random_cameras  # noqa: E402
from polydiff.domains.text3d.diffusers_prior import (DiscreteSchedule, SigmaToTimestep, StableDiffusionPrior,  # noqa: E402
                                                     diffusers_denoiser, load_local_stable_diffusion, vae_encoder)
from polydiff.domains.text3d.distill import DistillConfig, distill, make_field  # noqa: E402

HIDDEN = 32


def _unet(in_channels: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    return diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=in_channels, out_channels=in_channels, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=HIDDEN, attention_head_dim=8, norm_num_groups=8).eval()


def _scheduler(**kw):
    return diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, **kw)


def _vae():
    torch.manual_seed(1)
    return diffusers.AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                                   up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
                                   latent_channels=4, norm_num_groups=4, layers_per_block=1, sample_size=16).eval()


@pytest.fixture(scope="module")
def unet():
    return _unet()


def _log_sigmas(scheduler) -> torch.Tensor:
    ab = scheduler.alphas_cumprod.double()
    return 0.5 * torch.log((1 - ab) / ab)


def test_discrete_schedule_is_the_schedulers_chain() -> None:
    sd = _scheduler()
    sched = DiscreteSchedule(sd.alphas_cumprod)
    k = torch.tensor([1, 10, 500, 1000])
    expected = _log_sigmas(sd).exp()[k - 1]
    assert torch.allclose(sched.frame_sigma(k.double() / 1000), expected, rtol=1e-9)
    assert torch.allclose(sched.sigma(k.double() / 1000) ** 2, 1 - sd.alphas_cumprod.double()[k - 1], rtol=1e-9)
    t = torch.rand(64, dtype=torch.float64)  # diffusers' linear betas are polydiff's LinearBeta (float32 round-off)
    lin = DiscreteSchedule(diffusers.DDPMScheduler(beta_schedule="linear").alphas_cumprod)
    assert torch.allclose(lin.frame_sigma(t), LinearBeta().frame_sigma(t), rtol=1e-4)
    with pytest.raises(ValueError, match="decreasing"):
        DiscreteSchedule(torch.tensor([0.5, 0.9]))


def test_sigma_to_timestep_interpolates_in_log_sigma() -> None:
    sd = _scheduler()
    ls = _log_sigmas(sd)
    k = torch.tensor([0, 3, 499, 998])
    knots = ls[k].exp().float()
    mid = ((ls[k] + ls[k + 1]) / 2).exp().float()
    interp, nearest = SigmaToTimestep(sd.alphas_cumprod), SigmaToTimestep(sd.alphas_cumprod, "nearest")
    assert torch.allclose(interp(knots), k.float(), atol=1e-3) and torch.equal(nearest(knots), k.float())
    assert torch.allclose(interp(mid), k + 0.5, atol=1e-3)
    off = ((0.8 * ls[k] + 0.2 * ls[k + 1])).exp().float()  # a fifth of the way up: nearest is k
    assert torch.equal(nearest(off), k.float())
    ends = torch.tensor([0.0, 1e-6, 1e4])
    assert interp(ends).tolist() == [0.0, 0.0, 999.0] and nearest(ends).tolist() == [0.0, 0.0, 999.0]


def test_zero_output_unet_gives_the_exact_eps_and_v_identities() -> None:
    net = _unet()
    torch.nn.init.zeros_(net.conv_out.weight)
    torch.nn.init.zeros_(net.conv_out.bias)
    x, h = torch.randn(3, 4, 8, 8), torch.randn(3, 5, HIDDEN)
    sigma = torch.tensor([0.0, 0.7, 12.0])
    with torch.no_grad():
        for mode in ("interpolate", "nearest"):
            assert torch.equal(diffusers_denoiser(net, _scheduler(), timesteps=mode)(x, sigma, h), x)  # eps = 0
        d_v = diffusers_denoiser(net, _scheduler(prediction_type="v_prediction"))(x, sigma, {"encoder_hidden_states": h})
    assert torch.allclose(d_v, x / (1 + sigma**2)[:, None, None, None], atol=1e-6)  # v = 0: x0 = alpha^2 x


def test_denoiser_is_the_hand_computed_diffusers_call(unet) -> None:
    sd = _scheduler()
    ls = _log_sigmas(sd)
    x, h = torch.randn(2, 4, 8, 8), torch.randn(2, 5, HIDDEN)
    k = torch.tensor([100, 700])
    frac = torch.tensor([0.3, 0.75])
    for mode in ("interpolate", "nearest"):
        den = diffusers_denoiser(unet, sd, timesteps=mode)
        for sigma, t in ((ls[k].exp().float(), k.float()),
                         ((ls[k] + frac * (ls[k + 1] - ls[k])).exp().float(),
                          k + frac if mode == "interpolate" else k + frac.round())):
            s = sigma[:, None, None, None]
            with torch.no_grad():
                eps = unet(x / (1 + s**2).sqrt(), t.float(), encoder_hidden_states=h).sample
                got = den(x, sigma, h)
            assert torch.allclose(got, x - s * eps, atol=2e-4), (mode, (got - (x - s * eps)).abs().max())
    with pytest.raises(ValueError, match="hidden states"):
        diffusers_denoiser(unet, sd)(x, torch.ones(2), None)


def test_sds_gradient_through_the_adapter_is_exact(unet) -> None:
    sd = _scheduler()
    sched = DiscreteSchedule(sd.alphas_cumprod)
    den = diffusers_denoiser(unet, sd)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    h = torch.randn(2, 5, HIDDEN)
    k = torch.tensor([200, 800])  # t = k/T: the diffusers timestep is k - 1
    sds_loss(den, x, sched, cond=h, t=k.double() / 1000, generator=torch.Generator().manual_seed(3)).backward()
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    ab = sd.alphas_cumprod[k - 1][:, None, None, None]
    s = ((1 - ab) / ab).sqrt()
    with torch.no_grad():
        eps_hat = unet((x + s * eps) * ab.sqrt(), (k - 1).float(), encoder_hidden_states=h).sample
    assert torch.allclose(x.grad, (1 - ab) * (eps_hat - eps) / x.shape[0], atol=2e-4)  # the loss averages over rows


@pytest.mark.parametrize("method", ["ddim", "euler"])
def test_samplers_run_through_the_guided_adapter(unet, method: str) -> None:
    sched = DiscreteSchedule(_scheduler().alphas_cumprod)
    den = cfg(diffusers_denoiser(unet, _scheduler()), 3.0, torch.zeros(1, 5, HIDDEN))
    sigmas = karras_sigmas(3, sched.sigma_min, sched.sigma_max)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    with torch.no_grad():
        out = sample(den, x, sigmas, method, cond=torch.randn(1, 5, HIDDEN))
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("method", ["sds", "sjc"])
def test_distillation_through_vae_latents(unet, method: str) -> None:
    vae = _vae()
    x = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_()
    z = vae_encoder(vae)(x)
    assert torch.allclose(z, vae.encode(x).latent_dist.mean * vae.config.scaling_factor, atol=1e-6)
    assert z.shape == (2, 4, 8, 8)
    z.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # differentiable: SDS reaches the renders

    sd = _scheduler()
    prior = StableDiffusionPrior(diffusers_denoiser(unet, sd), DiscreteSchedule(sd.alphas_cumprod), vae)
    text, empty = torch.randn(1, 5, HIDDEN), torch.zeros(1, 5, HIDDEN)
    dcfg = DistillConfig(steps=2, batch=1, size=16, n_samples=16, resolution=16, method=method, guidance_scale=7.5)
    res = distill(prior.denoiser, lambda cams: {"encoder_hidden_states": text.expand(len(cams), -1, -1)}, dcfg,
                  null=lambda cams: {"encoder_hidden_states": empty.expand(len(cams), -1, -1)},
                  schedule=prior.schedule, encode=prior.encode_renders)
    assert len(res.losses) == 2 and all(torch.isfinite(torch.tensor(res.losses)))
    fresh = make_field(dcfg).state_dict()
    moved = max((res.field.state_dict()[name] - v).abs().max().item() for name, v in fresh.items())
    assert moved > 1e-4  # the latent-space gradient reached the field's parameters
    with pytest.raises(ValueError, match="pass null="):  # hidden states have no 'embedding' to zero
        distill(prior.denoiser, lambda cams: {"encoder_hidden_states": text}, dcfg, encode=prior.encode_renders)


def _tiny_clip(folder):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz,":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    (folder / "tok").mkdir()
    (folder / "tok" / "vocab.json").write_text(json.dumps(vocab))
    (folder / "tok" / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "tok" / "vocab.json"), str(folder / "tok" / "merges.txt"), model_max_length=24)
    torch.manual_seed(2)
    enc = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=HIDDEN, intermediate_size=37,
                                       num_hidden_layers=1, num_attention_heads=4, max_position_embeddings=24,
                                       bos_token_id=0, eos_token_id=1, pad_token_id=1)).eval()
    return tok, enc


def test_load_local_folder_and_encode_prompts(unet, tmp_path) -> None:
    tok, enc = _tiny_clip(tmp_path)
    model = tmp_path / "sd"
    unet.save_pretrained(model / "unet")
    _scheduler().save_pretrained(model / "scheduler")
    _vae().save_pretrained(model / "vae")
    tok.save_pretrained(model / "tokenizer")
    enc.save_pretrained(model / "text_encoder")
    prior = load_local_stable_diffusion(model)
    x, h = torch.randn(2, 4, 8, 8), torch.randn(2, 5, HIDDEN)
    sigma = torch.tensor([0.3, 5.0])
    with torch.no_grad():
        assert torch.allclose(prior.denoiser(x, sigma, h), diffusers_denoiser(unet, _scheduler())(x, sigma, h), atol=1e-6)
    assert not any(p.requires_grad for p in prior.denoiser.parameters())

    ids = tok(["a red mug, front view"], padding="max_length", max_length=24, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = enc(ids)[0]
    assert torch.allclose(prior.encode_prompt(["a red mug, front view"]), expected, atol=1e-6)
    cams = random_cameras(3, torch.Generator().manual_seed(0))
    cond, null = prior.condition("a red mug")(cams), prior.null_condition()(cams)
    assert cond["encoder_hidden_states"].shape == null["encoder_hidden_states"].shape == (3, 24, HIDDEN)
    assert not torch.allclose(cond["encoder_hidden_states"], null["encoder_hidden_states"])
    assert prior.encode_renders(torch.zeros(1, 3, 16, 16)).shape == (1, 4, 8, 8)


def test_loader_errors_are_one_clear_line(tmp_path, monkeypatch) -> None:
    with pytest.raises(FileNotFoundError, match="has no unet/ folder"):
        load_local_stable_diffusion(tmp_path)
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(ImportError, match="pip install diffusers transformers"):
        load_local_stable_diffusion(tmp_path)
