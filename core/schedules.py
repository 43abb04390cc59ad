"""Noise schedules and sigma grids.

A schedule maps diffusion time ``t`` in [0, 1] to ``alpha(t)`` and ``sigma(t)`` of the marginal
``x_t = alpha x0 + sigma eps``; every schedule is also expressed in the sigma frame of the samplers,
``x = x_t / alpha = x0 + s eps`` with ``s = sigma / alpha = exp(-log_snr / 2)``. Training draws noise levels from a
schedule (``sample_sigma``); sampling walks a descending grid of frame sigmas that ends in 0 (``karras_sigmas`` and
friends). A grid is just a tensor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .noise import draw_device

Tensor = torch.Tensor


class Schedule:
    """Base class: subclasses define ``log_snr(t)``; alpha and sigma follow (variance preserving) unless overridden."""

    name = "schedule"
    t_min: float = 0.0
    t_max: float = 1.0

    def log_snr(self, t: Tensor) -> Tensor:
        """log(alpha^2 / sigma^2) at time t."""
        raise NotImplementedError

    def alpha(self, t: Tensor) -> Tensor:
        """Signal scale of x_t."""
        return torch.sigmoid(self.log_snr(t)).sqrt()

    def sigma(self, t: Tensor) -> Tensor:
        """Noise scale of x_t."""
        return torch.sigmoid(-self.log_snr(t)).sqrt()

    def frame_sigma(self, t: Tensor) -> Tensor:
        """Noise level in the sampler frame ``x = x0 + s eps``: s = sigma/alpha = exp(-log_snr/2)."""
        return torch.exp(-0.5 * self.log_snr(t))

    def t_from_sigma(self, s: Tensor) -> Tensor:
        """Inverse of ``frame_sigma``: the time at which the frame noise level is ``s``."""
        return self.t_from_log_snr(-2 * torch.log(s))

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        """Inverse of ``log_snr`` (bisection fallback; subclasses give closed forms)."""
        lo = torch.full_like(lam, self.t_min)
        hi = torch.full_like(lam, self.t_max)
        for _ in range(60):
            mid = (lo + hi) / 2
            above = self.log_snr(mid) > lam
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        return (lo + hi) / 2

    def sample_sigma(self, n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
        """Training noise levels (frame sigmas): t uniform on [t_min, t_max]."""
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=draw_device(generator, device)).cpu()
        t = self.t_min + (self.t_max - self.t_min) * u
        return self.frame_sigma(t).float().to(device)

    @property
    def sigma_min(self) -> float:
        return float(self.frame_sigma(torch.tensor(self.t_min, dtype=torch.float64)))

    @property
    def sigma_max(self) -> float:
        return float(self.frame_sigma(torch.tensor(self.t_max, dtype=torch.float64)))


@dataclass
class LinearBeta(Schedule):
    """DDPM's linear betas (Ho et al. 2020): ``beta_t`` from ``beta_start`` to ``beta_end`` over T discrete steps.

    Discrete step k (1..T) sits at t = k / T; alpha_bar is the cumulative product of (1 - beta), exactly, and
    -log alpha_bar is interpolated linearly in t between steps, so continuous-time samplers see the same chain.
    """

    T: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    name = "linear"

    def __post_init__(self) -> None:
        self.t_min, self.t_max = 1.0 / self.T, 1.0

    @property
    def betas(self) -> Tensor:
        """The T betas of the discrete chain, float64."""
        return torch.linspace(self.beta_start, self.beta_end, self.T, dtype=torch.float64)

    @property
    def alphas_cumprod(self) -> Tensor:
        """alpha_bar_k = prod_{i<=k} (1 - beta_i) for k = 1..T."""
        return torch.cumprod(1 - self.betas, dim=0)

    def discrete_sigmas(self) -> Tensor:
        """Frame sigmas of the T discrete steps, ascending: sqrt((1 - alpha_bar) / alpha_bar)."""
        ab = self.alphas_cumprod
        return ((1 - ab) / ab).sqrt()

    def _cum(self, like: Tensor) -> Tensor:
        """-log alpha_bar at the knots t = k/T, k = 0..T (alpha_bar_0 = 1)."""
        return torch.cat([torch.zeros(1, dtype=torch.float64), -torch.log(self.alphas_cumprod)]).to(like)

    def _neg_log_alpha_bar(self, t: Tensor) -> Tensor:
        # exact at the discrete steps, linear in t in between
        c = self._cum(t)
        pos = (t * self.T).clamp(0, self.T)
        k = pos.floor().clamp(max=self.T - 1).long()
        return c[k] + (pos - k) * (c[k + 1] - c[k])

    def log_snr(self, t: Tensor) -> Tensor:
        return -torch.log(torch.expm1(self._neg_log_alpha_bar(t)))

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        c = self._cum(lam)
        target = torch.nn.functional.softplus(-lam)
        k = (torch.searchsorted(c, target) - 1).clamp(0, self.T - 1)
        return (k + (target - c[k]) / (c[k + 1] - c[k])) / self.T

    def sample_sigma(self, n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
        """Uniform over the T discrete steps, as in DDPM training."""
        k = torch.randint(0, self.T, (n,), generator=generator, device=draw_device(generator, device)).cpu()
        return self.discrete_sigmas()[k].float().to(device)


@dataclass
class Cosine(Schedule):
    """Nichol & Dhariwal (2021): alpha_bar(t) = cos^2(((t + s)/(1 + s)) pi/2) / cos^2(s/(1+s) pi/2), clipped near t=1."""

    s: float = 0.008
    t_min: float = 1e-3  # the first of 1000 discrete steps: sigma > 0
    t_max: float = 0.9946  # keeps sigma/alpha finite (about 157 in the frame)
    name = "cosine"

    def log_snr(self, t: Tensor) -> Tensor:
        f = torch.cos((t + self.s) / (1 + self.s) * math.pi / 2) ** 2
        f0 = math.cos(self.s / (1 + self.s) * math.pi / 2) ** 2
        ab = f / f0
        return torch.log(ab) - torch.log1p(-ab)

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        f0 = math.cos(self.s / (1 + self.s) * math.pi / 2) ** 2
        ab = torch.sigmoid(lam)
        return torch.acos((ab * f0).sqrt()) * 2 / math.pi * (1 + self.s) - self.s


@dataclass
class Sigmoid(Schedule):
    """Jabri / Chen (2023) sigmoid schedule: alpha_bar from a sigmoid over [start, end] with temperature tau."""

    start: float = -3.0
    end: float = 3.0
    tau: float = 1.0
    t_max: float = 0.995
    name = "sigmoid"

    def _ab(self, t: Tensor) -> Tensor:
        v0 = torch.sigmoid(torch.tensor(self.start / self.tau, dtype=t.dtype))
        v1 = torch.sigmoid(torch.tensor(self.end / self.tau, dtype=t.dtype))
        v = torch.sigmoid((t * (self.end - self.start) + self.start) / self.tau)
        return ((v1 - v) / (v1 - v0)).clamp(1e-12, 1 - 1e-12)

    def log_snr(self, t: Tensor) -> Tensor:
        ab = self._ab(t)
        return torch.log(ab) - torch.log1p(-ab)


@dataclass
class EDM(Schedule):
    """Karras et al. (2022): variance exploding, frame sigma = t, training sigma log-normal(P_mean, P_std)."""

    sigma_lo: float = 0.002
    sigma_hi: float = 80.0
    P_mean: float = -1.2
    P_std: float = 1.2
    name = "edm"

    def __post_init__(self) -> None:
        self.t_min, self.t_max = self.sigma_lo, self.sigma_hi

    def log_snr(self, t: Tensor) -> Tensor:
        return -2 * torch.log(t)

    def alpha(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def sigma(self, t: Tensor) -> Tensor:
        return t

    def frame_sigma(self, t: Tensor) -> Tensor:
        return t

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        return torch.exp(-0.5 * lam)

    def sample_sigma(self, n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
        """log sigma ~ N(P_mean, P_std^2)."""
        z = torch.randn(n, generator=generator, device=draw_device(generator, device)).cpu()
        return (self.P_mean + self.P_std * z).exp().to(device)


@dataclass
class RectifiedFlow(Schedule):
    """Linear interpolation x_t = (1 - t) x0 + t eps (Liu et al. 2022, SD3): frame sigma = t / (1 - t).

    Training t is uniform or logit-normal (SD3's default with ``logit_normal=True``).
    """

    t_max: float = 0.9999
    t_min: float = 1e-4
    logit_normal: bool = False
    name = "flow"

    def alpha(self, t: Tensor) -> Tensor:
        return 1 - t

    def sigma(self, t: Tensor) -> Tensor:
        return t

    def log_snr(self, t: Tensor) -> Tensor:
        return 2 * (torch.log1p(-t) - torch.log(t))

    def frame_sigma(self, t: Tensor) -> Tensor:
        return t / (1 - t)

    def t_from_sigma(self, s: Tensor) -> Tensor:
        return s / (1 + s)

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        return torch.sigmoid(-lam / 2)

    def sample_sigma(self, n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
        if self.logit_normal:
            at = draw_device(generator, device)
            t = torch.sigmoid(torch.randn(n, generator=generator, dtype=torch.float64, device=at).cpu())
        else:
            t = torch.rand(n, generator=generator, dtype=torch.float64, device=draw_device(generator, device)).cpu()
        t = t.clamp(self.t_min, self.t_max)
        return self.frame_sigma(t).float().to(device)


@dataclass
class Shifted(Schedule):
    """A schedule with its log-SNR shifted by ``-2 log(factor)``: every frame sigma multiplied by ``factor``.

    Chen (2023) and SD3 shift the noise toward higher levels for bigger inputs (factor = sqrt(n / n_ref)); for the
    rectified flow it is SD3's t' = f t / (1 + (f - 1) t).
    """

    base: Schedule
    factor: float = 1.0
    name = "shifted"

    def __post_init__(self) -> None:
        self.t_min, self.t_max = self.base.t_min, self.base.t_max

    def log_snr(self, t: Tensor) -> Tensor:
        return self.base.log_snr(t) - 2 * math.log(self.factor)

    def frame_sigma(self, t: Tensor) -> Tensor:
        return self.base.frame_sigma(t) * self.factor

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        return self.base.t_from_log_snr(lam + 2 * math.log(self.factor))

    def sample_sigma(self, n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
        return self.base.sample_sigma(n, generator, device) * self.factor


SCHEDULES: dict[str, type[Schedule]] = {
    "linear": LinearBeta,
    "cosine": Cosine,
    "sigmoid": Sigmoid,
    "edm": EDM,
    "flow": RectifiedFlow,
}


def get_schedule(name: str, **kwargs) -> Schedule:
    """Build a schedule by name (``linear``, ``cosine``, ``sigmoid``, ``edm``, ``flow`` or a plugin's)."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(sorted(SCHEDULES))}")
    return SCHEDULES[name](**kwargs)


# ---- grids: descending frame sigmas that end in 0 -------------------------------------------------------------

def _append_zero(s: Tensor) -> Tensor:
    return torch.cat([s, s.new_zeros(1)])


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, device: torch.device | str = "cpu") -> Tensor:
    """Karras et al. (2022) grid: n sigmas uniform in sigma^(1/rho) from sigma_max to sigma_min, then 0."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _append_zero((hi + ramp * (lo - hi)) ** rho).float().to(device)


def exponential_sigmas(n: int, sigma_min: float, sigma_max: float, device: torch.device | str = "cpu") -> Tensor:
    """n sigmas uniform in log sigma from sigma_max to sigma_min, then 0."""
    s = torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64).exp()
    return _append_zero(s).float().to(device)


def schedule_sigmas(schedule: Schedule, n: int, t_min: float | None = None, t_max: float | None = None,
                    device: torch.device | str = "cpu") -> Tensor:
    """n frame sigmas at times uniform in t from t_max down to t_min of ``schedule``, then 0 (DDIM's "uniform" grid)."""
    t0 = schedule.t_min if t_min is None else t_min
    t1 = schedule.t_max if t_max is None else t_max
    t = torch.linspace(t1, t0, n, dtype=torch.float64)
    return _append_zero(schedule.frame_sigma(t)).float().to(device)


def ddpm_sigmas(schedule: LinearBeta, n: int | None = None, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32) -> Tensor:
    """The discrete chain's own sigmas, descending, then 0: all T steps, or n steps with "trailing" spacing
    (steps T, T - T/n, ..., T/n; Lin et al. 2024), which starts at the last step and skips the nearly clean ones."""
    sig = schedule.discrete_sigmas()
    if n is None or n >= schedule.T:
        idx = torch.arange(schedule.T - 1, -1, -1)
    else:
        idx = (torch.arange(schedule.T, 0, -schedule.T / n, dtype=torch.float64).round() - 1).long()
    return _append_zero(sig[idx]).to(device, dtype)


GRIDS = {"karras": karras_sigmas, "exponential": exponential_sigmas}


def make_grid(kind: str, n: int, sigma_min: float, sigma_max: float, schedule: Schedule | None = None,
              device: torch.device | str = "cpu", **kwargs) -> Tensor:
    """A descending sigma grid by name: ``karras``, ``exponential``, ``uniform`` (in t of ``schedule``) or ``ddpm``."""
    if kind in GRIDS:
        return GRIDS[kind](n, sigma_min, sigma_max, device=device, **kwargs)
    if kind == "uniform":
        if schedule is None:
            raise ValueError("the 'uniform' grid needs a schedule")
        return schedule_sigmas(schedule, n, device=device)
    if kind == "ddpm":
        if not isinstance(schedule, LinearBeta):
            raise ValueError("the 'ddpm' grid needs a LinearBeta schedule")
        return ddpm_sigmas(schedule, n, device=device)
    raise ValueError(f"unknown grid {kind!r}; known: karras, exponential, uniform, ddpm")
