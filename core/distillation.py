"""Few-step students of any denoiser ``D(x, sigma, cond)``: progressive distillation (Salimans & Ho, ICLR 2022) and
guided distillation (Meng et al., CVPR 2023), in the sigma frame ``x = x0 + sigma eps``.

Progressive distillation. The teacher is a deterministic sampler of the probability-flow ODE on a descending grid
``sigmas`` (N intervals, ending in 0): DDIM (= Euler in the sigma frame) or Heun. The student learns to make
``merge`` (2) adjacent teacher steps as one DDIM step with one evaluation. From ``x`` at sigma_i the teacher lands
at ``x_next`` on sigma_{i+2}; one DDIM step with the estimate ``x0`` lands at ``x0 + (x - x0) r`` with
``r = sigma_{i+2} / sigma_i``, so the student's target is

    x0_target = (x_next - r x) / (1 - r)          (r = 0 at the end of the grid: the target is x_next itself).

Training points: x0 from the data, a level chosen uniformly among the student's grid points (the teacher grid's
every ``merge``-th point, one per sample), x noised there with the domain's noise. The loss weight is the paper's
*truncated SNR* ``max(SNR, 1)`` on the x0 error, with SNR = sigma_data^2 / sigma^2 in the sigma frame (the paper's
alpha^2 / sigma^2 for unit-variance data); ``snr+1`` (SNR + 1) is the paper's other choice. The teacher runs under
``torch.no_grad`` in float32 (autocast off: the target divides by 1 - r) and may itself be a guided denoiser.
A round halves the steps: N -> N/2; the trained student is the next round's teacher, so R rounds of a teacher grid
of N steps give a student of N / 2^R steps whose grid is ``student_sigmas(sigmas, R)``; it samples with DDIM, one
network pass per step. For Karras and exponential grids that student grid is itself such a grid, with the same
sigma_max and the teacher's point N - 2^R as its sigma_min (``student_grid``), so a run config can name it.

Ragged data. ``group[i]`` is the sample of row i (atom -> molecule): every sample gets one level (and one guidance
scale) broadcast to its rows, each sample counts once in the mean, and the noise is the domain's ``noise`` (zero
centre of mass for molecules). The teacher steps and the target are linear in x and D(x), so they stay in the
domain's subspace whenever the denoiser does.

Guided distillation (stage 1 and 2 of Meng et al.). The guidance scale w becomes a condition of the student, so
classifier-free guidance costs one network pass per step instead of two. Stage 1 (``merge=1``): the student learns
the guided teacher ``D_u + w (D_c - D_u)`` (``guided_by_scale``) at the grid's levels, for w drawn uniformly from a
range per sample; stage 2: progressive rounds whose teacher is the w-conditioned student. How w reaches a network:

- the carrier: the condition becomes ``ScaledCond(cond, scale)`` with one scale per row of x (as sigma), made by the
  guidance method ``scale_conditioned`` at sampling time and by the loss in training; the domain never sees it.
- ``GuidanceConditioned(network)`` wraps any domain network ``F(x_in, c_noise, cond)``, unwraps the carrier and
  hands w to the network in ONE pass, by one of two protocols:
  * native: a network with ``accepts_guidance_scale = True`` is called as ``F(x_in, c_noise, cond,
    guidance_scale=w)`` (w: one value per leading row of x_in) and embeds w itself;
  * adapter (no network change): the wrapper adds a learned embedding of w (Fourier features of w, a two-layer MLP
    whose last layer starts at zero) to the output of the network's noise-embedding module, found as the
    submodule named by ``site=``, else by the network's ``noise_embedding`` attribute, else the one submodule whose
    class is named ``NoiseEmbedding`` (polydiff's shared embedding). That output must be [rows, dim]: one row per
    leading row of x_in (per sample for images and point sets, per atom for molecules), as c_noise is.
  The adapter starts at zero, so the wrapped student is exactly its teacher before training.
- a network that offers neither is distilled at one fixed scale (a range "w,w"): the student is the plain network,
  trained on the guided teacher at that w, and samples with no guidance on top.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .broadcast import per_row, rows
from .guidance import evaluate
from .losses import _row_mean, _sample_mean
from .noise import NoiseFn, gaussian

Tensor = torch.Tensor
Denoiser = Callable[[Tensor, Tensor, Any], Tensor]

TEACHER_SAMPLERS = ("ddim", "euler", "heun")
WEIGHTINGS = ("snr_trunc", "snr+1")
RAMP_GRIDS = ("karras", "exponential")


# ---- grids ---------------------------------------------------------------------------------------------------------

def student_sigmas(teacher_sigmas: Tensor, rounds: int) -> Tensor:
    """The grid of a student after ``rounds`` halvings: every 2^rounds-th point of the teacher grid, ending in 0."""
    stride = 2**rounds
    if (len(teacher_sigmas) - 1) % stride:
        raise ValueError(f"a teacher grid of {len(teacher_sigmas) - 1} steps cannot be halved {rounds} times")
    return teacher_sigmas[::stride]


def student_grid(teacher_sigmas: Tensor, rounds: int) -> tuple[int, float]:
    """(steps, sigma_min) of the Karras or exponential grid that equals ``student_sigmas(teacher_sigmas, rounds)``
    when the teacher grid is one of those with the same sigma_max (both are uniform in a transform of sigma)."""
    grid = student_sigmas(teacher_sigmas, rounds)
    return len(grid) - 1, float(grid[-2])


# ---- the teacher's steps and the student's target -----------------------------------------------------------------

def ode_step(teacher: Denoiser, x: Tensor, sigma: Tensor, sigma_next: Tensor, cond: Any = None,
             method: str = "ddim") -> Tensor:
    """One step of the deterministic ``method`` from per-row levels ``sigma`` to ``sigma_next`` (as the core samplers
    take it, with one level per row of x, so samples of one batch may sit at different levels)."""
    denoised = teacher(x, sigma, cond)
    eps = (x - denoised) / rows(sigma, x)
    if method in ("ddim", "euler"):
        return denoised + eps * rows(sigma_next, x)
    if method != "heun":
        raise ValueError(f"unknown teacher sampler {method!r}; choose one of {', '.join(TEACHER_SAMPLERS)}")
    dt = rows(sigma_next - sigma, x)
    x_euler = x + eps * dt
    live = sigma_next > 0  # a step to sigma = 0 is an Euler step (the slope there is undefined)
    s2 = torch.where(live, sigma_next, sigma)
    d2 = (x_euler - teacher(x_euler, s2, cond)) / rows(s2, x)
    return torch.where(rows(live, x) > 0, x + (eps + d2) / 2 * dt, x_euler)


def ddim_x0(x: Tensor, x_next: Tensor, sigma: Tensor, sigma_next: Tensor) -> Tensor:
    """The x0 whose one DDIM step from (x, sigma) lands on x_next at sigma_next: (x_next - r x) / (1 - r),
    r = sigma_next / sigma; at sigma_next = 0 this is x_next exactly."""
    r = rows(sigma_next / sigma, x)
    return (x_next - r * x) / (1 - r)


@torch.no_grad()
def distillation_target(teacher: Denoiser, x: Tensor, levels: Sequence[Tensor], cond: Any = None,
                        method: str = "ddim") -> Tensor:
    """The student's x0 target at (x, levels[0]): the teacher walks the per-row ``levels`` down to levels[-1] with
    ``method`` (no gradients, float32 with autocast off), and the target makes that walk one DDIM step."""
    with torch.autocast(x.device.type, enabled=False):
        x = x.float()
        if len(levels) == 2 and method in ("ddim", "euler"):
            return teacher(x, levels[0], cond).float()  # one DDIM step: the target is the teacher's own estimate
        walked = x
        for sigma, sigma_next in zip(levels[:-1], levels[1:]):
            walked = ode_step(teacher, walked, sigma, sigma_next, cond, method).float()
        return ddim_x0(x, walked, levels[0], levels[-1])


def distillation_weight(sigma: Tensor, weighting: str = "snr_trunc", sigma_data: float = 1.0) -> Tensor:
    """Salimans & Ho's weights on the x0 error: ``snr_trunc`` max(SNR, 1) or ``snr+1``, SNR = sigma_data^2 / sigma^2."""
    snr = sigma_data**2 / sigma**2
    if weighting == "snr_trunc":
        return snr.clamp(min=1.0)
    if weighting == "snr+1":
        return snr + 1
    raise ValueError(f"unknown distillation weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")


def _per_sample(x0: Tensor, group: Tensor | None) -> int:
    return x0.shape[0] if group is None else int(group.max()) + 1


def _uniform(n: int, x0: Tensor, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else x0.device
    return torch.rand(n, generator=generator, device=device).to(x0.device)


def draw_levels(steps: int, merge: int, x0: Tensor, group: Tensor | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """Per row of x0, the index of a student grid point on a teacher grid of ``steps`` intervals: one uniform draw
    among the steps / merge student points per sample, broadcast to its rows."""
    n_student = steps // merge
    k = (_uniform(_per_sample(x0, group), x0, generator) * n_student).long().clamp(max=n_student - 1) * merge
    return k if group is None else k[group]


def draw_scales(scale_range: tuple[float, float], x0: Tensor, group: Tensor | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """Per row of x0, a guidance scale drawn uniformly from ``scale_range`` once per sample."""
    lo, hi = scale_range
    w = lo + (hi - lo) * _uniform(_per_sample(x0, group), x0, generator)
    return w if group is None else w[group]


def distillation_loss(student: Denoiser, teacher: Denoiser, x0: Tensor, sigmas: Tensor, *, merge: int = 2,
                      method: str = "ddim", cond: Any = None, scale_range: tuple[float, float] | None = None,
                      scale_student: bool = True, noise: NoiseFn | None = None, group: Tensor | None = None,
                      generator: torch.Generator | None = None, weighting: str = "snr_trunc",
                      sigma_data: float = 1.0) -> Tensor:
    """One round's loss: the student's one DDIM step against ``merge`` steps of the teacher on the grid ``sigmas``.

    ``merge=2`` is progressive distillation; ``merge=1`` distils one teacher step (stage 1 of guided distillation:
    the target is the guided teacher's estimate). With ``scale_range`` every sample gets a guidance scale w, given to
    the teacher as ``ScaledCond(cond, w)`` and to the student too (``scale_student``) or not (a fixed-scale student).
    """
    steps = len(sigmas) - 1
    if steps % merge:
        raise ValueError(f"a grid of {steps} steps does not split into steps of {merge}")
    sigmas = sigmas.to(device=x0.device, dtype=torch.float32)
    idx = draw_levels(steps, merge, x0, group, generator)
    sigma = sigmas[idx]
    x = x0 + rows(sigma, x0) * (noise or gaussian)(x0, generator)
    teacher_cond = student_cond = cond
    if scale_range is not None:
        teacher_cond = ScaledCond(cond, draw_scales(scale_range, x0, group, generator))
        student_cond = teacher_cond if scale_student else cond
    target = distillation_target(teacher, x, [sigmas[idx + j] for j in range(merge + 1)], teacher_cond, method)
    err = _row_mean((student(x, sigma, student_cond).float() - target) ** 2)
    return _sample_mean(distillation_weight(sigma, weighting, sigma_data) * err, group)


# ---- the guidance scale as a condition ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ScaledCond:
    """A condition with a guidance scale per row of x: what a guidance-conditioned student (and a scale-reading
    teacher) is called with; ``cond`` is the domain's own condition, untouched."""

    cond: Any
    scale: Tensor


def split_scale(cond: Any, x: Tensor, default: float = 1.0) -> tuple[Any, Tensor]:
    """(the domain's condition, the scale per row of x): from a ``ScaledCond``, else ``default`` for every row."""
    if isinstance(cond, ScaledCond):
        return cond.cond, per_row(cond.scale, x.float())
    return cond, torch.full((x.shape[0],), float(default), device=x.device)


def guided_by_scale(denoiser: Denoiser, null_cond: Callable[[Any], Any], *, batched: bool | None = None) -> Denoiser:
    """Classifier-free guidance whose scale comes per row from a ``ScaledCond``: the guided teacher of stage 1.
    Both branches run as one call on a stacked batch where the conditions allow (``guidance.evaluate``)."""

    def guided(x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        base, scale = split_scale(cond, x)
        if base is None:
            return denoiser(x, sigma, None)
        d_cond, d_uncond = evaluate(denoiser, x, sigma, [base, null_cond(base)], batched)
        return d_uncond + rows(scale, d_cond) * (d_cond - d_uncond)

    return guided


def scale_conditioned(denoiser: Denoiser, scale: float, uncond: Any = None) -> Denoiser:
    """The guidance method of a guidance-conditioned student (registered as ``distilled``): one pass at ``scale``
    (``uncond`` is not needed: the student learnt the guided model)."""

    def guided(x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        return denoiser(x, sigma, ScaledCond(cond, torch.full((x.shape[0],), float(scale), device=x.device)))

    return guided


class ScaleEmbedding(nn.Module):
    """Fourier features of the guidance scale w followed by a two-layer MLP whose last layer starts at zero."""

    def __init__(self, dim: int, frequencies: int = 16) -> None:
        super().__init__()
        self.register_buffer("freqs", 2.0 ** torch.linspace(-4, 2, frequencies))
        self.mlp = nn.Sequential(nn.Linear(2 * frequencies + 1, dim), nn.SiLU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, scale: Tensor) -> Tensor:
        """Embed scales [R] to [R, dim]."""
        angles = 2 * math.pi * scale.float()[:, None] * self.freqs[None]
        return self.mlp(torch.cat([scale.float()[:, None], angles.cos(), angles.sin()], dim=-1))


def find_site(network: nn.Module, site: str | None = None) -> str:
    """The name of the network's noise-embedding submodule: ``site``, the network's ``noise_embedding``, or the one
    submodule whose class is named ``NoiseEmbedding``; ValueError saying what to declare otherwise."""
    site = site or getattr(network, "noise_embedding", None)
    if site is not None:
        network.get_submodule(site)
        return site
    found = [name for name, m in network.named_modules() if type(m).__name__ == "NoiseEmbedding"]
    if len(found) != 1:
        raise ValueError(f"{type(network).__name__} has {len(found)} NoiseEmbedding modules: declare "
                         "`noise_embedding = '<submodule name>'` (its output [rows, dim]) or "
                         "`accepts_guidance_scale = True`, or distil at a fixed guidance scale")
    return found[0]


def site_dim(module: nn.Module) -> int:
    """The width of a noise-embedding module's output: the ``out_features`` of its last Linear layer."""
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"cannot tell the output width of {type(module).__name__}: pass dim=")
    return linears[-1].out_features


def takes_guidance_scale(network: nn.Module) -> bool:
    """Whether a network can become a guidance-conditioned student (natively, or through its noise embedding)."""
    if getattr(network, "accepts_guidance_scale", False):
        return True
    try:
        find_site(network)
    except ValueError:
        return False
    return True


class GuidanceConditioned(nn.Module):
    """``F(x_in, c_noise, ScaledCond(cond, w))`` for any network ``F(x_in, c_noise, cond)``: one pass that sees w.

    A network declaring ``accepts_guidance_scale`` gets ``guidance_scale=w``; any other gets a zero-initialised
    ``ScaleEmbedding`` of w added to the output of its noise-embedding module (see the module docstring). A plain
    condition means w = ``default_scale`` (1: the conditional model, as ``cfg`` at scale 1).
    """

    def __init__(self, net: nn.Module, *, site: str | None = None, dim: int | None = None, frequencies: int = 16,
                 default_scale: float = 1.0) -> None:
        super().__init__()
        self.net = net
        self.default_scale = float(default_scale)
        self.native = bool(getattr(net, "accepts_guidance_scale", False))
        self.site = None if self.native else find_site(net, site)
        self.scale_emb = None if self.native else ScaleEmbedding(
            dim or site_dim(net.get_submodule(self.site)), frequencies)

    def spec(self) -> dict[str, Any]:
        """The arguments that rebuild this wrapper around the same network (recorded in the student's config)."""
        if self.native:
            return {"native": True, "default_scale": self.default_scale}
        return {"site": self.site, "dim": self.scale_emb.mlp[-1].out_features,
                "frequencies": self.scale_emb.freqs.numel(), "default_scale": self.default_scale}

    def forward(self, x_in: Tensor, c_noise: Tensor, cond: Any = None) -> Tensor:
        base, scale = split_scale(cond, x_in, self.default_scale)
        if self.native:
            return self.net(x_in, c_noise, base, guidance_scale=scale)
        emb = self.scale_emb(scale)

        def add(module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
            if output.ndim != 2 or output.shape[0] != emb.shape[0]:
                raise ValueError(f"the noise embedding {self.site!r} gave {tuple(output.shape)}; the guidance "
                                 f"embedding needs [rows, dim] with one row per row of x ({emb.shape[0]})")
            return output + emb.to(output.dtype)

        handle = self.net.get_submodule(self.site).register_forward_hook(add)
        try:
            return self.net(x_in, c_noise, base)
        finally:
            handle.remove()


def guidance_conditioned(net: nn.Module, spec: dict[str, Any]) -> GuidanceConditioned:
    """Rebuild the wrapper that ``GuidanceConditioned.spec`` described (loading a student)."""
    spec = {k: v for k, v in spec.items() if k != "native"}
    return GuidanceConditioned(net, **spec)
