"""diffusers and k-diffusion interop, checked with tiny random-weight UNets built here (nothing is downloaded)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from polydiff.core import interop
from polydiff.core.samplers import euler
from polydiff.core.schedules import karras_sigmas

SD_BETAS = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
HIDDEN = 16


def _diffusers():
    return pytest.importorskip("diffusers")


def _unet(seed: int = 0):
    """A tiny unconditional ``UNet2DModel``."""
    torch.manual_seed(seed)
    return _diffusers().UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(16, 32),
                                    layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8).eval()


def _cond_unet(seed: int = 0):
    """A tiny text-conditioned ``UNet2DConditionModel``."""
    torch.manual_seed(seed)
    return _diffusers().UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=HIDDEN, attention_head_dim=4, norm_num_groups=8).eval()


def _x0_by_scheduler(unet, scheduler, x_sigma, t: int, **kwargs) -> torch.Tensor:
    """x0 as diffusers computes it: the UNet at timestep t on x_t = sqrt(abar_t) x, then the scheduler's step."""
    abar = scheduler.alphas_cumprod[t]
    x_t = abar.sqrt() * x_sigma
    out = unet(x_t, torch.tensor(t), **kwargs).sample
    return scheduler.step(out, t, x_t).pred_original_sample


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_denoiser_is_the_schedulers_own_conversion(kind: str, tmp_path) -> None:
    diffusers = _diffusers()
    sched = diffusers.DDPMScheduler(prediction_type=kind, clip_sample=False, **SD_BETAS)
    sched.set_timesteps(1000)
    unet = _unet()
    sched.save_config(tmp_path)
    config = json.loads((tmp_path / "scheduler_config.json").read_text())
    specs = (sched, config, tmp_path / "scheduler_config.json", tmp_path)
    x = torch.randn(3, 3, 8, 8)
    for t in (20, 350, 800):
        sigma = ((1 - sched.alphas_cumprod[t]) / sched.alphas_cumprod[t]).sqrt()
        xs = x * sigma
        with torch.no_grad():
            expected = _x0_by_scheduler(unet, sched, xs, t)
            for spec in specs:
                got = interop.diffusers_denoiser(unet, spec)(xs, sigma.expand(3))
                torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_text_conditioned_unet_at_fractional_timesteps() -> None:
    """Between knots the UNet sees the timestep interpolated linearly in log sigma (or the nearest one)."""
    diffusers = _diffusers()
    sched = diffusers.DDIMScheduler(**SD_BETAS)
    unet = _cond_unet()
    ls = interop.log_sigmas(sched.alphas_cumprod.double())
    k, frac = torch.tensor([100, 700]), torch.tensor([0.3, 0.75])
    sigma = (ls[k] + frac * (ls[k + 1] - ls[k])).exp().float()
    x, h = torch.randn(2, 4, 8, 8), torch.randn(2, 5, HIDDEN)
    s = sigma[:, None, None, None]
    with torch.no_grad():
        for mode, t in (("interpolate", k + frac), ("nearest", k + frac.round())):
            eps = unet(x / (1 + s**2).sqrt(), t.float(), encoder_hidden_states=h).sample
            for cond in (h, {"encoder_hidden_states": h}):
                got = interop.diffusers_denoiser(unet, sched, timesteps=mode)(x, sigma, cond)
                torch.testing.assert_close(got, x - s * eps, rtol=1e-5, atol=1e-5)


def test_continuous_timesteps_feed_log_sigma_over_four() -> None:
    diffusers = _diffusers()
    sched = diffusers.EulerDiscreteScheduler(timestep_type="continuous", prediction_type="v_prediction")
    seen = []

    def unet(x_t, t):
        seen.append(t)
        return torch.zeros_like(x_t)

    sigma = torch.tensor([0.5, 3.0])
    x = torch.randn(2, 3, 4, 4)
    got = interop.diffusers_denoiser(unet, sched)(x, sigma)
    torch.testing.assert_close(seen[0], sigma.log() / 4)
    torch.testing.assert_close(got, x / (1 + sigma**2)[:, None, None, None])  # v = 0: x0 = x / (1 + sigma^2)


def _table_sigmas(sched, timesteps: torch.Tensor) -> torch.Tensor:
    ab = sched.alphas_cumprod.double()[timesteps.long()]
    return ((1 - ab) / ab).sqrt()


@pytest.mark.parametrize("name, options", [("DDPMScheduler", {}),
                                           ("DDIMScheduler", {"steps_offset": 1, "timestep_spacing": "leading"}),
                                           ("PNDMScheduler", {"steps_offset": 1, "skip_prk_steps": True}),
                                           ("DPMSolverMultistepScheduler", {}),
                                           ("DPMSolverMultistepScheduler", {"final_sigmas_type": "sigma_min"})])
def test_sigma_grid_is_the_schedulers_timesteps(name: str, options: dict) -> None:
    sched = getattr(_diffusers(), name)(**SD_BETAS, **options)
    grid = interop.scheduler_sigmas(sched, 10)
    assert not hasattr(sched, "num_inference_steps") or sched.num_inference_steps is None  # the caller's is untouched
    sched.set_timesteps(10)
    steps = sched.timesteps.unique_consecutive()
    assert grid.shape == (11,) and grid[-1] == 0 and bool((grid[:-1] > grid[1:]).all())
    torch.testing.assert_close(grid[:-1].double(), _table_sigmas(sched, steps), rtol=1e-6, atol=0)


@pytest.mark.parametrize("name, options", [("EulerDiscreteScheduler", {}),
                                           ("EulerDiscreteScheduler", {"use_karras_sigmas": True}),
                                           ("HeunDiscreteScheduler", {})])
def test_sigma_grid_of_sigma_schedulers(name: str, options: dict) -> None:
    sched = getattr(_diffusers(), name)(**SD_BETAS, **options)
    grid = interop.scheduler_sigmas({**sched.config, "_class_name": name}, 6)  # a config names its class
    sched.set_timesteps(6)
    torch.testing.assert_close(grid, sched.sigmas.unique_consecutive().float())
    knots = sched.timesteps.unique_consecutive()
    whole = knots == knots.round()  # at integer timesteps the grid is the alphas_cumprod table's sigma
    torch.testing.assert_close(grid[:-1][whole].double(), _table_sigmas(sched, knots[whole]), rtol=1e-5, atol=0)


def test_unsupported_schedulers_and_configs_are_one_clear_line(tmp_path) -> None:
    diffusers = _diffusers()
    with pytest.raises(ValueError, match="only DDPM-family"):
        interop.diffusers_denoiser(lambda x, t: x, diffusers.FlowMatchEulerDiscreteScheduler())
    with pytest.raises(ValueError, match="no scheduler class"):
        interop.load_scheduler({"_class_name": "NoSuchScheduler"})
    with pytest.raises(FileNotFoundError, match="no scheduler config"):
        interop.load_scheduler(tmp_path)
    with pytest.raises(ValueError, match="unsupported prediction_type"):
        interop.diffusers_denoiser(lambda x, t: x, {"prediction_type": "flow"})
    assert isinstance(interop.load_scheduler({}), diffusers.DDPMScheduler)


def test_interop_imports_neither_library() -> None:
    code = ("import sys; sys.modules['diffusers'] = sys.modules['k_diffusion'] = None; "
            "import polydiff.core.interop as i, torch; "
            "print(i.from_k_diffusion(i.to_k_diffusion(lambda x, s, c: x * 0))(torch.ones(2, 3), 1.0).sum().item())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "0.0", out.stderr
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "diffusers", None)
        with pytest.raises(ImportError, match="pip install diffusers"):
            interop.load_scheduler({"prediction_type": "epsilon"})


# ---- k-diffusion ---------------------------------------------------------------------------------------------


class Toy(torch.nn.Module):
    """A small conditional denoiser: a conv net whose cond is a per-row vector or a dict with one."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x, sigma, cond=None):
        s = torch.as_tensor(sigma, dtype=x.dtype).expand(x.shape[0])[:, None, None, None]
        c = cond["c"] if isinstance(cond, dict) else cond
        shift = 0 if c is None else c[:, :, None, None]
        return x / (1 + s**2) + self.conv(x / (1 + s**2).sqrt()) * s / (1 + s**2).sqrt() + shift


def test_k_diffusion_adapters_round_trip_under_a_polydiff_sampler() -> None:
    den = Toy()
    x = torch.randn(4, 3, 8, 8) * 10
    sigmas = karras_sigmas(8, 0.01, 10.0)
    for cond in (None, torch.randn(4, 3), {"c": torch.randn(4, 3)}):
        wrapped = interop.from_k_diffusion(interop.to_k_diffusion(den))
        torch.testing.assert_close(euler(wrapped, x, sigmas, cond=cond), euler(den, x, sigmas, cond=cond),
                                   rtol=1e-5, atol=1e-5)
    model = interop.to_k_diffusion(den)
    assert list(model.parameters()) and model(x, torch.ones(4), cond=torch.zeros(4, 3)).shape == x.shape
    assert interop.extra_args({"c": 1}) == {"c": 1} and interop.cond_of({"c": 1}) == {"c": 1}


def test_k_diffusion_sampler_on_a_polydiff_denoiser_matches_ours() -> None:
    sampling = pytest.importorskip("k_diffusion.sampling")
    den = Toy()
    x = torch.randn(4, 3, 8, 8) * 10
    cond = torch.randn(4, 3)
    sigmas = karras_sigmas(8, 0.01, 10.0)
    theirs = sampling.sample_euler(interop.to_k_diffusion(den), x, sigmas, extra_args={"cond": cond}, disable=True)
    torch.testing.assert_close(theirs, euler(den, x, sigmas, cond=cond), rtol=1e-5, atol=1e-5)


def test_k_diffusion_wrapper_of_a_diffusers_unet_matches_ours() -> None:
    """k-diffusion's DiscreteEpsDDPMDenoiser around the same UNet is our diffusers denoiser."""
    external = pytest.importorskip("k_diffusion.external")
    sched = _diffusers().DDPMScheduler(**SD_BETAS)
    unet = _cond_unet()
    theirs = external.DiscreteEpsDDPMDenoiser(lambda x, t, cond: unet(x, t, encoder_hidden_states=cond).sample,
                                              sched.alphas_cumprod, quantize=False)
    ours = interop.diffusers_denoiser(unet, sched)
    x, h = torch.randn(2, 4, 8, 8) * 3, torch.randn(2, 5, HIDDEN)
    sigma = torch.tensor([0.37, 3.0])
    with torch.no_grad():
        torch.testing.assert_close(interop.from_k_diffusion(theirs)(x, sigma, h), ours(x, sigma, h),
                                   rtol=1e-5, atol=1e-5)
