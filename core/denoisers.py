"""The one model contract: a denoiser ``D(x, sigma, cond) -> x0_hat`` wrapping a network ``F(x_in, c_noise, cond)``.

``D = c_skip x + c_out F(c_in x, c_noise, cond)``. ``Denoiser`` covers networks that predict eps, x0, v, the score or
a flow velocity (the conversion to x0 is exact, see ``parameterizations``) and EDM preconditioning with a per-domain
``sigma_data``. Samplers, guidance, SDS and evaluation only ever see the denoiser.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch
from torch import nn

from .broadcast import per_row, rows
from .parameterizations import TO_X0
from .schedules import Schedule

Tensor = torch.Tensor


class DenoiserFn(Protocol):
    """Anything called as ``D(x, sigma, cond)`` returning the estimate of x0 (sigma: scalar or one per row of x)."""

    def __call__(self, x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor: ...


PARAMETERIZATIONS = ("edm", "eps", "x0", "v", "score", "flow")


def c_noise_log(sigma: Tensor) -> Tensor:
    """EDM's noise conditioning: ln(sigma) / 4."""
    return sigma.log() / 4


class Denoiser(nn.Module):
    """Wrap a network into a denoiser, with the preconditioning of its parameterization.

    ``parameterization``: ``edm`` (Karras et al. 2022: c_skip, c_out, c_in from ``sigma_data``), or the network
    predicts ``eps``, ``x0``, ``v``, ``score`` or ``flow`` (velocity of the rectified flow). Inputs are scaled by
    ``1/sqrt(sigma^2 + sigma_data^2)`` (``flow``: by ``1/(1+sigma)``, the x_t of the flow). ``c_noise`` maps frame
    sigmas to what the network was trained on: EDM's ln(sigma)/4 by default, or e.g. a schedule's time
    (``c_noise="t"`` with ``schedule``, times ``c_noise_scale``, e.g. 999 for a discrete DDPM network).
    """

    def __init__(
        self,
        net: nn.Module,
        parameterization: str = "edm",
        sigma_data: float = 1.0,
        c_noise: str | Callable[[Tensor], Tensor] = "log",
        schedule: Schedule | None = None,
        c_noise_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"unknown parameterization {parameterization!r}; known: {', '.join(PARAMETERIZATIONS)}")
        self.net = net
        self.autocast: torch.dtype | None = None
        """Run the network under ``torch.autocast`` in this dtype (e.g. bfloat16; see ``reduced_precision``)."""
        self.parameterization = parameterization
        self.sigma_data = float(sigma_data)
        if c_noise == "log":
            self._c_noise = c_noise_log
        elif c_noise == "t":
            if schedule is None:
                raise ValueError("c_noise='t' needs the schedule the network was trained with")
            self._c_noise = lambda s: schedule.t_from_sigma(s) * c_noise_scale
        elif callable(c_noise):
            self._c_noise = c_noise
        else:
            raise ValueError(f"c_noise must be 'log', 't' or a callable, not {c_noise!r}")

    def coefficients(self, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """(c_in, c_noise) for a vector of sigmas."""
        if self.parameterization == "flow":
            c_in = 1 / (1 + sigma)
        else:
            c_in = 1 / (sigma**2 + self.sigma_data**2).sqrt()
        return c_in, self._c_noise(sigma)

    def forward(self, x: Tensor, sigma: Tensor | float, cond: Any = None) -> Tensor:
        """Estimate x0 from ``x = x0 + sigma eps``."""
        s_vec = per_row(sigma, x).float()
        s = rows(s_vec, x.float())
        c_in, c_noise = self.coefficients(s_vec)
        with torch.autocast(x.device.type, dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None):
            out = self.net((rows(c_in, x) * x).to(x.dtype), c_noise, cond).float()
        xf = x.float()
        if self.parameterization == "edm":
            sd2 = self.sigma_data**2
            c_skip = sd2 / (s**2 + sd2)
            c_out = s * self.sigma_data / (s**2 + sd2).sqrt()
            return (c_skip * xf + c_out * out).to(x.dtype)
        return TO_X0[self.parameterization](xf, s, out).to(x.dtype)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


@contextlib.contextmanager
def reduced_precision(denoiser: Any, precision: str) -> Iterator[Any]:
    """Within the block, ``denoiser``'s network runs under autocast in ``precision`` (``fp32``: unchanged, ``bf16``);
    the preconditioning and the sampler's arithmetic stay in float32. Objects that are not a ``Denoiser`` pass."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use {' or '.join(PRECISIONS)}")
    if not isinstance(denoiser, Denoiser):
        yield denoiser
        return
    before, denoiser.autocast = denoiser.autocast, PRECISIONS[precision]
    try:
        yield denoiser
    finally:
        denoiser.autocast = before
