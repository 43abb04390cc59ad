"""Interop: diffusers and k-diffusion models as polydiff denoisers, and polydiff denoisers as k-diffusion models.

Nothing here imports diffusers or k-diffusion at module import; diffusers is imported only to build a scheduler from
a config, and k-diffusion never (its convention is only a calling convention).

diffusers. A DDPM-family model (``unet(x_t, t, **kwargs)`` predicting eps, v or x0 for ``x_t = sqrt(abar) x0 +
sqrt(1 - abar) eps``) is the polydiff denoiser with ``sigma = sqrt((1 - abar) / abar)``: the UNet sees
``x / sqrt(1 + sigma^2)`` at the timestep whose sigma matches (log-sigma interpolation over the scheduler's
``alphas_cumprod``, as k-diffusion does, or the nearest step, or ``log(sigma) / 4`` for continuous-time schedulers),
and its prediction is turned into x0 exactly (``polydiff.core.parameterizations``)::

    den = diffusers_denoiser(unet, "model/scheduler/scheduler_config.json")
    sigmas = scheduler_sigmas("model/scheduler", steps=25)   # the scheduler's own grid, descending, ending in 0
    x0 = samplers.dpmpp_2m(den, torch.randn(1, 4, 64, 64) * sigmas[0], sigmas, cond={"encoder_hidden_states": h})

k-diffusion. Its models are called ``model(x, sigma, **extra_args) -> denoised``, the same sigma frame as ours:
``from_k_diffusion(model)`` is a polydiff denoiser and ``to_k_diffusion(denoiser)`` a module its samplers take, e.g.
``k_diffusion.sampling.sample_euler(to_k_diffusion(den), x, sigmas, extra_args={"cond": c})``. A dict ``cond`` is
passed as the extra arguments themselves, any other ``cond`` as ``extra_args["cond"]``.
"""
from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .broadcast import per_row
from .denoisers import Denoiser, c_noise_log
from .schedules import LinearBeta

Tensor = torch.Tensor
CondKwargs = Callable[[Any, int], dict[str, Any]]
PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
TIMESTEP_MODES = ("interpolate", "nearest", "continuous")
MIN_ALPHA_CUMPROD = 2.0**-24  # diffusers' stand-in for a zero terminal SNR (sigma = 4096)


# ---- diffusers schedulers ------------------------------------------------------------------------------------


def _diffusers() -> Any:
    """Import diffusers on first use, with a one-line hint when it is missing."""
    try:
        return importlib.import_module("diffusers")
    except ImportError:
        raise ImportError("reading a diffusers scheduler config needs diffusers: pip install diffusers") from None


def _read_config(path: str | Path) -> dict[str, Any]:
    """A scheduler config dict from ``scheduler_config.json`` or the folder holding it."""
    path = Path(path)
    if path.is_dir():
        path = path / "scheduler_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no scheduler config at {path}")
    return json.loads(path.read_text())


def load_scheduler(scheduler: Any) -> Any:
    """A diffusers scheduler from itself, a config dict, or a ``scheduler_config.json`` path (file or folder).

    A config names its class with ``_class_name`` (as ``scheduler_config.json`` does; a scheduler's ``.config`` does
    not); one without builds a ``DDPMScheduler``, which shares the beta keys of every DDPM-family scheduler.
    """
    if isinstance(scheduler, (str, Path)):
        scheduler = _read_config(scheduler)
    if not isinstance(scheduler, dict):
        return scheduler
    diffusers = _diffusers()
    name = scheduler.get("_class_name", "DDPMScheduler")
    cls = getattr(diffusers, name, None)
    if cls is None or not hasattr(cls, "from_config"):
        raise ValueError(f"diffusers has no scheduler class {name!r}")
    return cls.from_config(scheduler)


def _config(scheduler: Any, key: str, default: Any) -> Any:
    """One entry of a scheduler's config (``default`` when absent)."""
    return getattr(getattr(scheduler, "config", None), key, default)


def alphas_cumprod(scheduler: Any) -> Tensor:
    """The scheduler's ``alphas_cumprod`` table (float64, floored at 2^-24 like diffusers' zero-SNR handling)."""
    scheduler = load_scheduler(scheduler)
    table = scheduler if isinstance(scheduler, Tensor) else getattr(scheduler, "alphas_cumprod", None)
    if table is None:
        raise ValueError(f"{type(scheduler).__name__} has no alphas_cumprod: only DDPM-family (VP) schedulers "
                         "are supported (DDPM, DDIM, PNDM, Euler, Heun, DPM-Solver, UniPC, LCM, ...)")
    return torch.as_tensor(table).detach().to("cpu", torch.float64).clamp(min=MIN_ALPHA_CUMPROD)


def scheduler_prediction_type(scheduler: Any) -> str:
    """The scheduler's ``prediction_type`` (``epsilon`` for a bare alphas_cumprod tensor), checked to be supported."""
    if isinstance(scheduler, Tensor):
        return "epsilon"
    kind = _config(load_scheduler(scheduler), "prediction_type", "epsilon")
    if kind not in PREDICTION_TYPES:
        raise ValueError(f"unsupported prediction_type {kind!r}; known: {', '.join(PREDICTION_TYPES)}")
    return kind


def timestep_mode(scheduler: Any) -> str:
    """``continuous`` when the scheduler feeds the UNet log(sigma) / 4 (diffusers' continuous v models), else
    ``interpolate``."""
    sched = scheduler if isinstance(scheduler, Tensor) else load_scheduler(scheduler)
    continuous = _config(sched, "timestep_type", "discrete") == "continuous"
    return "continuous" if continuous and _config(sched, "prediction_type", "") == "v_prediction" else "interpolate"


def log_sigmas(table: Tensor) -> Tensor:
    """log sqrt((1 - abar) / abar) for each entry of an alphas_cumprod table."""
    return 0.5 * torch.log((1 - table) / table)


class DiscreteSchedule(LinearBeta):
    """A discrete DDPM chain given by its ``alphas_cumprod`` (e.g. SD's scaled-linear betas) as a polydiff schedule.

    Step k (1..T) sits at t = k/T with alpha_bar = alphas_cumprod[k-1] exactly, interpolated as ``LinearBeta`` does.
    """

    name = "discrete"

    def __init__(self, alphas_cumprod: Tensor) -> None:
        ab = torch.as_tensor(alphas_cumprod).detach().to("cpu", torch.float64)
        valid = ab.ndim == 1 and ab.numel() >= 2 and bool(((ab > 0) & (ab < 1)).all())
        if not valid or not bool((ab[1:] < ab[:-1]).all()):
            raise ValueError("alphas_cumprod must be a decreasing 1-D tensor with values in (0, 1)")
        self._alphas_cumprod = ab
        super().__init__(T=ab.numel())

    @property
    def betas(self) -> Tensor:
        ab = self._alphas_cumprod
        return 1 - ab / torch.cat([ab.new_ones(1), ab[:-1]])

    @property
    def alphas_cumprod(self) -> Tensor:
        return self._alphas_cumprod


def discrete_schedule(scheduler: Any) -> DiscreteSchedule:
    """The polydiff schedule of a DDPM-family scheduler (object, config dict or config path)."""
    return DiscreteSchedule(alphas_cumprod(scheduler))


class SigmaToTimestep(nn.Module):
    """Frame sigma -> the UNet's (fractional) timestep index: log-sigma interpolation or the nearest discrete step."""

    def __init__(self, alphas_cumprod: Tensor, mode: str = "interpolate") -> None:
        super().__init__()
        if mode not in ("interpolate", "nearest"):
            raise ValueError(f"unknown timestep mode {mode!r}; use interpolate or nearest")
        table = torch.as_tensor(alphas_cumprod).detach().to("cpu", torch.float64).clamp(min=MIN_ALPHA_CUMPROD)
        self.mode = mode
        self.register_buffer("log_sigmas", log_sigmas(table).float())

    def forward(self, sigma: Tensor) -> Tensor:
        ls = self.log_sigmas.double()
        log_s = torch.log(sigma.to(ls)).clamp(float(ls[0]), float(ls[-1]))
        if self.mode == "nearest":
            return (log_s[:, None] - ls[None]).abs().argmin(dim=1).to(sigma.dtype)
        hi = torch.searchsorted(ls, log_s.contiguous()).clamp(1, ls.numel() - 1)
        lo = hi - 1
        w = (log_s - ls[lo]) / (ls[hi] - ls[lo])
        return (lo + w.clamp(0, 1)).to(sigma.dtype)


def timestep_to_sigma(timesteps: Tensor, table: Tensor) -> Tensor:
    """Frame sigmas of (possibly fractional) timesteps: exact at integers, log-sigma interpolation between them."""
    t = torch.as_tensor(timesteps, dtype=torch.float64).clamp(0, table.numel() - 1)
    ls = log_sigmas(table)
    lo = t.floor().long().clamp(max=table.numel() - 2)
    w = t - lo
    return ((1 - w) * ls[lo] + w * ls[lo + 1]).exp()


def _dedupe(values: Tensor) -> Tensor:
    """Drop consecutive repeats (second-order schedulers list each sigma twice)."""
    if values.numel() < 2:
        return values
    keep = torch.ones_like(values, dtype=torch.bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def scheduler_sigmas(scheduler: Any, steps: int, *, device: torch.device | str = "cpu",
                     dtype: torch.dtype = torch.float32) -> Tensor:
    """The scheduler's grid for ``steps`` inference steps as polydiff sigmas: descending, ending in 0.

    One sigma per step: the scheduler's own ``sigmas`` where it keeps them (Euler, Heun, DPM-Solver, UniPC...), else
    sqrt((1 - abar) / abar) at its ``timesteps`` (DDPM, DDIM, PNDM, LCM...); repeats are dropped and a final 0
    replaces a scheduler's last non-zero sigma (DPM-Solver's ``final_sigmas_type="sigma_min"``). The scheduler
    passed is not modified.
    """
    sched = copy.deepcopy(load_scheduler(scheduler))
    table = alphas_cumprod(sched)
    sched.set_timesteps(steps)
    own = getattr(sched, "sigmas", None)
    if isinstance(own, Tensor) and own.numel() > 1:
        sig = own[:-1].detach().to("cpu", torch.float64)
        sig = sig[sig > 0]
    else:
        sig = timestep_to_sigma(sched.timesteps.detach().cpu(), table)
    sig = _dedupe(sig)
    return torch.cat([sig, sig.new_zeros(1)]).to(device, dtype)


# ---- diffusers UNets -----------------------------------------------------------------------------------------


def unet_kwargs(cond: Any, batch: int) -> dict[str, Any]:
    """The UNet's keyword arguments from ``cond``: None: none, a tensor: ``encoder_hidden_states``, a dict: as is."""
    if cond is None:
        return {}
    if isinstance(cond, Tensor):
        return {"encoder_hidden_states": cond}
    if isinstance(cond, dict):
        return dict(cond)
    raise TypeError(f"a diffusers UNet's cond must be None, a tensor or a dict of keyword arguments, not "
                    f"{type(cond).__name__}")


def _cast(value: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Move tensors (nested in dicts too) to the UNet's device, floating ones to its dtype."""
    if isinstance(value, Tensor):
        return value.to(device, dtype) if value.is_floating_point() else value.to(device)
    if isinstance(value, dict):
        return {k: _cast(v, device, dtype) for k, v in value.items()}
    return value


def _prediction(out: Any) -> Tensor:
    """The prediction tensor of a UNet's output (``.sample``, a tuple's first item, or the tensor itself)."""
    out = getattr(out, "sample", out)
    return out[0] if isinstance(out, (tuple, list)) else out


class UNetNetwork(nn.Module):
    """A diffusers-style UNet (``unet(x_t, t, **kwargs)``) as a polydiff network ``F(x_in, timestep, cond)``.

    ``cond_kwargs(cond, batch)`` turns the condition into the UNet's keyword arguments (``unet_kwargs`` by default).
    A learned-variance output (twice the input channels, DeepFloyd IF / guided diffusion) keeps its first half.
    """

    def __init__(self, unet: nn.Module, cond_kwargs: CondKwargs = unet_kwargs) -> None:
        super().__init__()
        self.unet = unet
        self.cond_kwargs = cond_kwargs

    def _dtype(self, x: Tensor) -> torch.dtype:
        param = next(self.unet.parameters(), None) if isinstance(self.unet, nn.Module) else None
        return x.dtype if param is None else param.dtype

    def forward(self, x_in: Tensor, timestep: Tensor, cond: Any = None) -> Tensor:
        dtype = self._dtype(x_in)
        kwargs = _cast(self.cond_kwargs(cond, x_in.shape[0]), x_in.device, dtype)
        out = _prediction(self.unet(x_in.to(dtype), timestep.to(x_in.device), **kwargs))
        if out.shape[1] == 2 * x_in.shape[1]:
            out = out[:, :x_in.shape[1]]
        return out.to(x_in.dtype)


def _c_noise(scheduler: Any, mode: str | None) -> Callable[[Tensor], Tensor]:
    """The sigma -> UNet timestep map for ``mode`` (None: what the scheduler uses)."""
    mode = mode or timestep_mode(scheduler)
    if mode not in TIMESTEP_MODES:
        raise ValueError(f"unknown timestep mode {mode!r}; known: {', '.join(TIMESTEP_MODES)}")
    if mode == "continuous":
        return c_noise_log
    return SigmaToTimestep(alphas_cumprod(scheduler), mode)


def diffusers_denoiser(unet: nn.Module, scheduler: Any, *, timesteps: str | None = None,
                       prediction_type: str | None = None, cond_kwargs: CondKwargs = unet_kwargs) -> Denoiser:
    """Wrap a diffusers UNet and its scheduler as the sigma-frame denoiser ``D(x, sigma, cond)``.

    ``scheduler``: a diffusers scheduler, its config dict, a ``scheduler_config.json`` path, or a bare
    ``alphas_cumprod`` tensor (an eps model). ``timesteps``: ``interpolate`` (fractional timestep, linear in
    log-sigma), ``nearest`` or ``continuous`` (log(sigma) / 4); None takes the scheduler's. ``prediction_type``
    overrides the scheduler's (``epsilon``, ``v_prediction``, ``sample``). ``cond`` reaches the UNet through
    ``cond_kwargs`` (a tensor is ``encoder_hidden_states``, a dict is the keyword arguments).
    """
    sched = scheduler if isinstance(scheduler, Tensor) else load_scheduler(scheduler)
    kind = prediction_type or scheduler_prediction_type(sched)
    if kind not in PREDICTION_TYPES:
        raise ValueError(f"unsupported prediction_type {kind!r}; known: {', '.join(PREDICTION_TYPES)}")
    return Denoiser(UNetNetwork(unet, cond_kwargs), parameterization=PREDICTION_TYPES[kind], sigma_data=1.0,
                    c_noise=_c_noise(sched, timesteps))


# ---- k-diffusion ---------------------------------------------------------------------------------------------


def extra_args(cond: Any) -> dict[str, Any]:
    """k-diffusion ``extra_args`` of a polydiff ``cond``: none for None, a dict as is, anything else as ``cond``."""
    if cond is None:
        return {}
    return dict(cond) if isinstance(cond, dict) else {"cond": cond}


def cond_of(extra: dict[str, Any]) -> Any:
    """The polydiff ``cond`` of k-diffusion ``extra_args`` (the inverse of ``extra_args``)."""
    if not extra:
        return None
    return extra["cond"] if set(extra) == {"cond"} else dict(extra)


class KDiffusionDenoiser(nn.Module):
    """A k-diffusion model ``model(x, sigma, **extra_args) -> denoised`` as a polydiff denoiser D(x, sigma, cond)."""

    def __init__(self, model: Callable[..., Tensor]) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, sigma: Tensor | float, cond: Any = None) -> Tensor:
        return self.model(x, per_row(sigma, x), **extra_args(cond))


class KDiffusionModel(nn.Module):
    """A polydiff denoiser as a k-diffusion model: ``forward(x, sigma, **extra_args) -> denoised``, for its samplers."""

    def __init__(self, denoiser: Callable[..., Tensor]) -> None:
        super().__init__()
        self.denoiser = denoiser

    def forward(self, x: Tensor, sigma: Tensor, **extra: Any) -> Tensor:
        return self.denoiser(x, sigma, cond_of(extra))


def from_k_diffusion(model: Callable[..., Tensor]) -> KDiffusionDenoiser:
    """A polydiff denoiser calling a k-diffusion model (``cond`` becomes its ``extra_args``)."""
    return KDiffusionDenoiser(model)


def to_k_diffusion(denoiser: Callable[..., Tensor]) -> KDiffusionModel:
    """A k-diffusion model calling a polydiff denoiser (``extra_args`` become its ``cond``)."""
    return KDiffusionModel(denoiser)
