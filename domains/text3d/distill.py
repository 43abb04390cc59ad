"""Text-to-3D by score distillation: optimise a radiance field so that its renders look like the prior's images.

Each step renders a few random views, makes the prompt view-dependent, and backpropagates the SDS (DreamFusion) or
SJC loss of ``polydiff.core.guidance`` through the volume renderer into the field. The maximum diffusion time is
annealed (DreamFusion / threestudio) from ``t_range[1]`` to ``t_anneal_to``; classifier-free guidance with the zero
embedding as the null prompt sharpens the gradient. Any denoiser ``D(x, sigma, cond)`` on [B, 3, S, S] images in
[-1, 1] can be the prior, and with ``encode`` (e.g. a VAE encoder) one that works on latents of the renders
(``diffusers_prior`` plugs in a local Stable Diffusion this way).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from polydiff.core.guidance import cfg as cfg_guidance
from polydiff.core.guidance import sds_loss, sjc_loss
from polydiff.core.schedules import LinearBeta, Schedule

from .cameras import random_cameras
from .data import BACKGROUND
from .fields import MLPField, VoxelField
from .render import random_light, render
from .sections import DistillConfig

Tensor = torch.Tensor
Condition = Callable[[Any], dict[str, Tensor]]


@dataclass
class DistillResult:
    """The optimised field, the loss of every step and the wall time."""

    field: torch.nn.Module
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)


def make_field(cfg: DistillConfig) -> torch.nn.Module:
    """A fresh field with the blob initialisation of ``cfg``."""
    if cfg.field == "voxel":
        f = VoxelField(cfg.resolution, blob_density=cfg.blob_density, blob_radius=cfg.blob_radius)
        f.refresh_occupancy()
        return f
    return MLPField(blob_density=cfg.blob_density, blob_radius=cfg.blob_radius)


def zero_embedding(cond: Any) -> dict[str, Tensor]:
    """The default null condition of classifier-free guidance: ``cond`` with its ``embedding`` zeroed."""
    if not isinstance(cond, dict) or "embedding" not in cond:
        raise ValueError("the prior's condition has no 'embedding' to zero for guidance; pass null=(cams -> "
                         "unconditional cond) to distill")
    return {**cond, "embedding": torch.zeros_like(cond["embedding"])}


def t_max_at(cfg: DistillConfig, step: int) -> float:
    """The annealed upper end of the diffusion-time range at ``step`` (linear from t_range[1] to t_anneal_to)."""
    frac = step / max(1, cfg.steps - 1)
    return cfg.t_range[1] + (cfg.t_anneal_to - cfg.t_range[1]) * frac


def distill(denoiser: Callable[..., Tensor], condition: Condition, cfg: DistillConfig | None = None, *,
            null: Condition | None = None, progress: bool = False, callback: Callable[[int, float], None] | None = None,
            device: torch.device | str = "cpu", schedule: Schedule | None = None,
            encode: Callable[[Tensor], Tensor] | None = None) -> DistillResult:
    """Optimise a field against ``denoiser`` with SDS or SJC.

    ``condition(cams) -> cond`` gives the prior's condition for the sampled cameras (e.g. view-dependent prompt
    embeddings); ``null(cams)`` the unconditional one (default: zeroed ``embedding``) used by classifier-free guidance.
    ``schedule`` maps SDS times to noise levels (default: DDPM's linear betas); ``encode`` maps renders in [-1, 1] to
    what the prior denoises (e.g. VAE latents), differentiably; default: the renders themselves.
    """
    cfg = cfg or DistillConfig()
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    fld = make_field(cfg).to(device)
    opt = torch.optim.Adam(fld.parameters(), lr=cfg.lr, betas=(0.9, 0.99), eps=1e-15)
    schedule = schedule or LinearBeta()
    bg = torch.tensor(BACKGROUND, device=device)
    losses: list[float] = []
    steps = range(cfg.steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"text-to-3D ({cfg.method})")
    t0 = time.time()
    for step in steps:
        if cfg.fine_resolution and step == cfg.steps // 2:
            fld = fld.upsampled(cfg.fine_resolution)
            opt = torch.optim.Adam(fld.parameters(), lr=cfg.lr, betas=(0.9, 0.99), eps=1e-15)
        elif isinstance(fld, VoxelField) and step % cfg.refresh_every == 0 and step > 0:
            fld.refresh_occupancy()
        cams = random_cameras(cfg.batch, gen)
        cams.rotation, cams.position = cams.rotation.to(device), cams.position.to(device)
        out = render(fld, cams, cfg.size, n_samples=cfg.n_samples, light=random_light(cams, gen), generator=gen,
                     background=bg)
        x = out["rgb"] * 2 - 1
        if encode is not None:
            x = encode(x)
        cond = condition(cams)
        uncond = null(cams) if null is not None else zero_embedding(cond)
        guided = cfg_guidance(denoiser, cfg.guidance_scale, uncond)
        if cfg.method == "sds":
            hi = t_max_at(cfg, step)
            t = cfg.t_range[0] + (hi - cfg.t_range[0]) * torch.rand(cfg.batch, generator=gen, dtype=torch.float64)
            loss = sds_loss(guided, x, schedule, cond=cond, t=t, weighting=cfg.weighting, generator=gen)
        else:
            lo, hi = torch.log(torch.tensor(cfg.sjc_sigma_range, dtype=torch.float64))
            hi = lo + (hi - lo) * (t_max_at(cfg, step) - cfg.t_range[0]) / (cfg.t_range[1] - cfg.t_range[0])
            sigma = (lo + (hi - lo) * torch.rand(cfg.batch, generator=gen, dtype=torch.float64)).exp()
            loss = sjc_loss(guided, x, cond=cond, sigma=sigma, generator=gen)
        total = loss + geometry_penalty(out, cfg)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if callback is not None:
            callback(step, losses[-1])
    fld.eval()
    return DistillResult(fld, losses, time.time() - t0, asdict(cfg))


def geometry_penalty(out: dict[str, Tensor], cfg: DistillConfig) -> Tensor | float:
    """The weighted geometry terms of ``cfg`` on one batch of renders (0 when all weights are 0)."""
    total: Tensor | float = 0.0
    if cfg.sparsity > 0:
        total = total + cfg.sparsity * out["opacity"].mean()
    if cfg.orientation > 0:
        total = total + cfg.orientation * out["orientation"].mean()
    if cfg.opacity_entropy > 0:
        a = out["opacity"].clamp(1e-5, 1 - 1e-5)
        total = total + cfg.opacity_entropy * (-(a * a.log() + (1 - a) * (1 - a).log())).mean()
    return total


def plot_loss_curve(losses: list[float], path) -> None:
    """The per-step distillation loss (and its running mean) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(losses, lw=0.6, alpha=0.5, label="loss")
    k = max(1, len(losses) // 20)
    if len(losses) >= k:
        smooth = torch.tensor(losses).unfold(0, k, 1).mean(1).tolist()
        ax.plot(range(k - 1, len(losses)), smooth, lw=1.5, label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("SDS / SJC surrogate loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
