"""Optional adapter: a local diffusers Stable-Diffusion-style UNet as a polydiff denoiser, usable as the SDS prior.

A discrete VP model (``UNet2DConditionModel`` + the ``alphas_cumprod`` of its ``DDPMScheduler``) becomes a denoiser
``D(x, sigma, cond) -> x0_hat`` in the sigma frame ``x = x0 + sigma * eps``: the UNet sees ``x / sqrt(1 + sigma^2)``
at the timestep whose ``sigma_t = sqrt((1 - abar_t) / abar_t)`` matches ``sigma`` (interpolated in log-sigma, or the
nearest one), and its eps (or v) prediction is turned into x0 exactly (``x0 = x - sigma * eps``). It is
``polydiff.core.interop.diffusers_denoiser`` (a ``Denoiser`` with ``sigma_data=1`` and this timestep map as
``c_noise``) with this domain's conditioning rule: ``cond`` is the text encoder's hidden states ``[B, L, C]`` (the
UNet's ``encoder_hidden_states``), as a tensor or as ``{"encoder_hidden_states": tensor}``.

Stable Diffusion works in the latent space of its VAE, so renders must be encoded before the loss: this module does
implement that step (``StableDiffusionPrior.encode_renders``: ``vae.encode(x).latent_dist.mean * scaling_factor``,
differentiable, so the SDS gradient flows through the encoder into the field). A pixel-space UNet (3 input channels,
e.g. DeepFloyd IF stage I, whose learned-variance half of the output is dropped) needs no VAE. Text-to-3D with a
local Stable Diffusion 1.x/2.x folder (weights you already have; nothing is downloaded)::

    import torch
    from polydiff.domains.text3d.diffusers_prior import load_local_stable_diffusion
    from polydiff.domains.text3d.distill import DistillConfig, distill

    prior = load_local_stable_diffusion("/models/stable-diffusion-v1-5", device="cuda", dtype=torch.float16)
    result = distill(prior.denoiser, prior.condition("a red mug"), DistillConfig(size=512, guidance_scale=100),
                     null=prior.null_condition(), schedule=prior.schedule, encode=prior.encode_renders, device="cuda")

(renders of 512 px give SD's 64x64 latents; this needs a GPU.) SDXL (two text encoders, extra conditioning) is not
covered.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polydiff.core import interop
from polydiff.core.denoisers import Denoiser
from polydiff.core.interop import PREDICTION_TYPES, DiscreteSchedule, SigmaToTimestep, UNetNetwork

from .prior import view_prompts

__all__ = ["DiscreteSchedule", "PREDICTION_TYPES", "SigmaToTimestep", "StableDiffusionPrior", "UNetNetwork",
           "diffusers_denoiser", "encoder_hidden_states", "load_local_stable_diffusion", "vae_encoder"]

Tensor = torch.Tensor
PREDICTION_NAMES = {v: k for k, v in PREDICTION_TYPES.items()}


def encoder_hidden_states(cond: Any, batch: int) -> Tensor:
    """The UNet's ``encoder_hidden_states`` from ``cond`` (a [B or 1, L, C] tensor or a dict holding one)."""
    hidden = cond.get("encoder_hidden_states") if isinstance(cond, dict) else cond
    if not isinstance(hidden, Tensor) or hidden.ndim != 3:
        raise ValueError("the diffusers prior's cond must be text encoder hidden states [B, L, C] (a tensor or "
                         "{'encoder_hidden_states': tensor}); use StableDiffusionPrior.encode_prompt")
    if hidden.shape[0] == batch:
        return hidden
    if hidden.shape[0] == 1:
        return hidden.expand(batch, -1, -1)
    raise ValueError(f"cond holds {hidden.shape[0]} hidden states for a batch of {batch}")


def hidden_state_kwargs(cond: Any, batch: int) -> dict[str, Tensor]:
    """The text-conditioned UNet's keyword arguments: only the (checked, broadcast) ``encoder_hidden_states``."""
    return {"encoder_hidden_states": encoder_hidden_states(cond, batch)}


def diffusers_denoiser(unet: nn.Module, scheduler: Any, *, timesteps: str = "interpolate",
                       parameterization: str | None = None) -> Denoiser:
    """Wrap ``unet`` (eps/v/x0-predicting) and its scheduler (or its ``alphas_cumprod``) as ``D(x, sigma, cond)``.

    ``polydiff.core.interop.diffusers_denoiser`` with ``cond`` read as text encoder hidden states. ``timesteps``:
    ``interpolate`` (fractional timestep, linear in log-sigma, as k-diffusion) or ``nearest``; ``parameterization``
    (``eps``, ``v``, ``x0``) overrides the scheduler's prediction type.
    """
    if parameterization is not None and parameterization not in PREDICTION_NAMES:
        raise ValueError(f"unknown parameterization {parameterization!r}; known: {', '.join(PREDICTION_NAMES)}")
    kind = None if parameterization is None else PREDICTION_NAMES[parameterization]
    return interop.diffusers_denoiser(unet, scheduler, timesteps=timesteps, prediction_type=kind,
                                      cond_kwargs=hidden_state_kwargs)


def vae_encoder(vae: nn.Module) -> Callable[[Tensor], Tensor]:
    """Renders in [-1, 1] [B, 3, H, W] -> scaled VAE latents (posterior mean times ``scaling_factor``), differentiably."""
    scale = float(getattr(vae.config, "scaling_factor", 1.0))

    def encode(x: Tensor) -> Tensor:
        dtype = next(vae.parameters()).dtype
        return (vae.encode(x.to(dtype)).latent_dist.mean * scale).to(x.dtype)

    return encode


@dataclass
class StableDiffusionPrior:
    """A loaded diffusers model as an SDS prior: the denoiser, its schedule and how to encode prompts and renders."""

    denoiser: Denoiser
    schedule: DiscreteSchedule
    vae: nn.Module | None = None
    tokenizer: Any = None
    text_encoder: nn.Module | None = None
    _cache: dict[str, Tensor] = field(default_factory=dict, repr=False)

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> Tensor:
        """Text encoder hidden states [B, L, C] of ``prompts`` (padded to the tokenizer's length; cached per prompt)."""
        if self.tokenizer is None or self.text_encoder is None:
            raise ValueError("this prior has no tokenizer/ and text_encoder/: pass encoder hidden states as cond yourself")
        todo = sorted({p for p in prompts if p not in self._cache})
        if todo:
            ids = self.tokenizer(todo, padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids
            device = next(self.text_encoder.parameters()).device
            hidden = self.text_encoder(ids.to(device))[0]
            self._cache.update(zip(todo, hidden))
        return torch.stack([self._cache[p] for p in prompts])

    def encode_renders(self, x: Tensor) -> Tensor:
        """What the UNet denoises for renders ``x`` in [-1, 1]: VAE latents, or ``x`` itself for a pixel-space UNet."""
        return vae_encoder(self.vae)(x) if self.vae is not None else x

    def condition(self, prompt: str) -> Callable[[Any], dict[str, Tensor]]:
        """``cams -> cond`` for ``distill``: hidden states of the view-dependent prompts ("<prompt>, front view")."""
        return lambda cams: {"encoder_hidden_states": self.encode_prompt(view_prompts(prompt, cams))}

    def null_condition(self) -> Callable[[Any], dict[str, Tensor]]:
        """``cams -> cond`` of the empty prompt: the unconditional branch of classifier-free guidance."""
        return lambda cams: {"encoder_hidden_states": self.encode_prompt([""] * len(cams))}


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"the diffusers prior needs {module}: pip install diffusers transformers") from None


def load_local_stable_diffusion(path: str | Path, device: torch.device | str = "cpu",
                                dtype: torch.dtype = torch.float32, timesteps: str = "interpolate") -> StableDiffusionPrior:
    """Load a diffusers model folder (``unet/``, ``scheduler/``; ``vae/``, ``text_encoder/``, ``tokenizer/`` when
    present) from local files only, frozen, in eval mode, as a ``StableDiffusionPrior``."""
    diffusers = _require("diffusers")
    path = Path(path)
    for sub in ("unet", "scheduler"):
        if not (path / sub).is_dir():
            raise FileNotFoundError(f"{path} has no {sub}/ folder: give a local diffusers model folder "
                                    "(unet/, scheduler/, and vae/, text_encoder/, tokenizer/ for Stable Diffusion)")
    local = {"local_files_only": True}
    unet = diffusers.UNet2DConditionModel.from_pretrained(path, subfolder="unet", torch_dtype=dtype, **local)
    scheduler = diffusers.DDPMScheduler.from_pretrained(path, subfolder="scheduler", **local)
    vae = None
    if (path / "vae").is_dir():
        vae = diffusers.AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=dtype, **local)
        if vae.config.latent_channels != unet.config.in_channels:
            raise ValueError(f"the VAE has {vae.config.latent_channels} latent channels but the UNet takes "
                             f"{unet.config.in_channels}")
    elif unet.config.in_channels != 3:
        raise FileNotFoundError(f"{path} has no vae/ but its UNet takes {unet.config.in_channels}-channel latents")
    tokenizer = text_encoder = None
    if (path / "text_encoder").is_dir() and (path / "tokenizer").is_dir():
        transformers = _require("transformers")
        tokenizer = transformers.CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", **local)
        text_encoder = transformers.CLIPTextModel.from_pretrained(path, subfolder="text_encoder", torch_dtype=dtype,
                                                                  **local)
    modules = [m for m in (unet, vae, text_encoder) if m is not None]
    for m in modules:
        m.to(device).eval().requires_grad_(False)
    denoiser = diffusers_denoiser(unet, scheduler, timesteps=timesteps).to(device)
    return StableDiffusionPrior(denoiser, DiscreteSchedule(scheduler.alphas_cumprod), vae, tokenizer, text_encoder)
