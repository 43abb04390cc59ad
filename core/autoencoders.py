"""Autoencoders for latent diffusion (Rombach et al. 2022): the contract, the KL-regularised loss, the fitted latent
normalisation, generic autoencoders for flat vectors and 1D/2D grids, and generic denoiser networks over latents.

The autoencoder contract (``Autoencoder``), which a domain's own autoencoder also follows:

- ``posterior(x, cond) -> (mean, logvar)``: the encoder's diagonal Gaussian over the latent z (LDM's "KL" model);
- ``encode(x, cond) -> z``: the posterior mean, what a latent run diffuses (deterministic, so latents can be cached);
- ``decode(z, cond) -> x``: back to the data's own space (the space ``Domain.build_dataset`` gives);
- optionally ``loss(x, cond, generator) -> (loss, parts)``; without it ``autoencoder_loss`` is used: the mean squared
  reconstruction error of a posterior sample plus ``kl_weight`` times the KL divergence to N(0, I) (summed over the
  latent, averaged over the batch; LDM's weight is 1e-6, small enough to leave reconstructions sharp and large enough
  to keep the latent scale bounded).

``cond`` is the example's condition (a domain's autoencoder may use it; the generic ones ignore it). Latents are
normalised by ``LatentCodec``: ``z_n = (z - shift) / scale`` with the shift and scale fitted on training latents
(``fit_latent_norm``), so the diffusion model sees data of unit variance and ``sigma_data = 1`` (LDM's scale factor
is ``1 / scale``; SD3 adds the shift).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


@runtime_checkable
class Autoencoder(Protocol):
    """What latent runs need of an autoencoder (see the module docstring)."""

    def posterior(self, x: Tensor, cond: Any = None) -> tuple[Tensor, Tensor]: ...

    def encode(self, x: Tensor, cond: Any = None) -> Tensor: ...

    def decode(self, z: Tensor, cond: Any = None) -> Tensor: ...


def kl_divergence(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over each example's latent, averaged over the batch."""
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
    return kl.flatten(1).sum(1).mean()


def autoencoder_loss(ae: nn.Module, x: Tensor, cond: Any = None, generator: torch.Generator | None = None,
                     kl_weight: float = 1e-6) -> tuple[Tensor, dict[str, Tensor]]:
    """The regularised reconstruction loss: MSE of the decoded posterior sample + ``kl_weight`` * KL."""
    if hasattr(ae, "loss"):
        return ae.loss(x, cond, generator)
    mean, logvar = ae.posterior(x, cond)
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    recon = ae.decode(mean + (0.5 * logvar).exp() * eps, cond)
    mse = F.mse_loss(recon.float(), x.float())
    kl = kl_divergence(mean.float(), logvar.float())
    return mse + kl_weight * kl, {"mse": mse.detach(), "kl": kl.detach()}


class KLAutoencoder(nn.Module):
    """Base of the generic autoencoders: ``encoder`` gives 2 * latent channels (mean, log-variance) along dim 1,
    ``decoder`` maps a latent back; ``encode`` is the posterior mean."""

    logvar_range = (-30.0, 20.0)

    def posterior(self, x: Tensor, cond: Any = None) -> tuple[Tensor, Tensor]:
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(*self.logvar_range)

    def encode(self, x: Tensor, cond: Any = None) -> Tensor:
        return self.posterior(x, cond)[0]

    def decode(self, z: Tensor, cond: Any = None) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor, cond: Any = None) -> Tensor:
        """The reconstruction of ``x`` through the posterior mean."""
        return self.decode(self.encode(x, cond), cond)


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class MLPAutoencoder(KLAutoencoder):
    """Flat vectors [B, dim] <-> latents [B, latent_dim] through MLPs of ``depth`` hidden layers of ``width``."""

    def __init__(self, dim: int, latent_dim: int, width: int = 128, depth: int = 2) -> None:
        super().__init__()
        hidden = [width] * depth
        self.encoder = _mlp([dim, *hidden, 2 * latent_dim])
        self.decoder = _mlp([latent_dim, *hidden, dim])
        self.latent_dim = latent_dim

    def latent_shape(self, data_shape: Sequence[int]) -> tuple[int, ...]:
        return (self.latent_dim,)


def _conv(dims: int) -> type[nn.Module]:
    if dims not in (1, 2):
        raise ValueError(f"grid autoencoders work on 1D or 2D grids; got dims={dims}")
    return nn.Conv1d if dims == 1 else nn.Conv2d


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels)


class _ConvBlock(nn.Module):
    """A residual pair of size-3 convolutions with group norm."""

    def __init__(self, c_in: int, c_out: int, dims: int) -> None:
        super().__init__()
        conv = _conv(dims)
        self.body = nn.Sequential(_group_norm(c_in), nn.SiLU(), conv(c_in, c_out, 3, padding=1),
                                  _group_norm(c_out), nn.SiLU(), conv(c_out, c_out, 3, padding=1))
        self.skip = conv(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.body(x)


class ConvAutoencoder(KLAutoencoder):
    """Grids [B, C, L] (``dims=1``) or [B, C, H, W] (``dims=2``) <-> latents [B, latent_channels, side / f, ...]
    with ``f = 2 ** (len(mults) - 1)``; every side of the data must be divisible by f."""

    def __init__(self, channels: int, latent_channels: int = 4, base: int = 32, mults: Sequence[int] = (1, 2),
                 dims: int = 2) -> None:
        super().__init__()
        conv = _conv(dims)
        self.dims, self.factor, self.latent_channels = dims, 2 ** (len(mults) - 1), latent_channels
        enc: list[nn.Module] = [conv(channels, base * mults[0], 3, padding=1)]
        ch = base * mults[0]
        for level, mult in enumerate(mults):
            enc.append(_ConvBlock(ch, base * mult, dims))
            ch = base * mult
            if level < len(mults) - 1:
                enc.append(conv(ch, ch, 3, stride=2, padding=1))
        enc += [_group_norm(ch), nn.SiLU(), conv(ch, 2 * latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [conv(latent_channels, ch, 3, padding=1)]
        for level, mult in reversed(list(enumerate(mults))):
            dec.append(_ConvBlock(ch, base * mult, dims))
            ch = base * mult
            if level > 0:
                dec += [nn.Upsample(scale_factor=2, mode="nearest"), conv(ch, ch, 3, padding=1)]
        dec += [_group_norm(ch), nn.SiLU(), conv(ch, channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def _check(self, x: Tensor) -> None:
        if x.ndim != self.dims + 2 or any(side % self.factor for side in x.shape[2:]):
            layout = "[B, C, L]" if self.dims == 1 else "[B, C, H, W]"
            raise ValueError(f"this autoencoder needs {layout} with every side divisible by {self.factor}; "
                             f"got {tuple(x.shape)}")

    def posterior(self, x: Tensor, cond: Any = None) -> tuple[Tensor, Tensor]:
        self._check(x)
        return super().posterior(x, cond)

    def latent_shape(self, data_shape: Sequence[int]) -> tuple[int, ...]:
        return (self.latent_channels, *(side // self.factor for side in data_shape[1:]))


def generic_autoencoder(data_shape: Sequence[int], *, latent_dim: int = 2, latent_channels: int = 4, width: int = 128,
                        depth: int = 2, base: int = 32, mults: Sequence[int] = (1, 2)) -> KLAutoencoder:
    """The generic autoencoder for examples shaped ``data_shape``: an MLP for flat vectors [D], a convolutional one
    for grids [C, L] or [C, H, W]."""
    shape = tuple(data_shape)
    if len(shape) == 1:
        return MLPAutoencoder(shape[0], latent_dim, width, depth)
    if len(shape) in (2, 3):
        return ConvAutoencoder(shape[0], latent_channels, base, mults, dims=len(shape) - 1)
    raise ValueError(f"no generic autoencoder for examples shaped {list(shape)}: give the domain an autoencoder")


# ---- the latent normalisation -------------------------------------------------------------------------------------


@torch.no_grad()
def fit_latent_norm(ae: Autoencoder, batches: Iterable[tuple[Tensor, Any]]) -> tuple[float, float]:
    """(shift, scale): the mean and standard deviation of every latent entry of the ``(x, cond)`` batches."""
    total, sq, count = 0.0, 0.0, 0
    for x, cond in batches:
        z = ae.encode(x, cond).double()
        total, sq, count = total + float(z.sum()), sq + float(z.pow(2).sum()), count + z.numel()
    if count == 0:
        raise ValueError("no data to fit the latent normalisation on")
    mean = total / count
    std = math.sqrt(max(sq / count - mean**2, 0.0))
    return mean, max(std, 1e-8)


class LatentCodec(nn.Module):
    """An autoencoder with its fitted normalisation: ``encode`` gives latents of unit variance, ``decode`` undoes it."""

    def __init__(self, autoencoder: nn.Module, shift: float = 0.0, scale: float = 1.0) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.shift, self.scale = float(shift), float(scale)

    def encode(self, x: Tensor, cond: Any = None) -> Tensor:
        return (self.autoencoder.encode(x, cond) - self.shift) / self.scale

    def decode(self, z: Tensor, cond: Any = None) -> Tensor:
        return self.autoencoder.decode(z * self.scale + self.shift, cond)


# ---- denoiser networks over latents -------------------------------------------------------------------------------


class _NoiseFeatures(nn.Module):
    """Fixed random Fourier features of ``c_noise`` [B] and an MLP to ``dim``."""

    def __init__(self, dim: int, frequencies: int = 32, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", torch.randn(frequencies, generator=gen) * 16.0)
        self.mlp = nn.Sequential(nn.Linear(2 * frequencies, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise: Tensor) -> Tensor:
        angles = 2 * math.pi * c_noise.float().reshape(-1)[:, None] * self.freqs
        return self.mlp(torch.cat([angles.cos(), angles.sin()], 1))


def _labels(cond: Any) -> Tensor | None:
    """Class labels in a condition: a LongTensor [B] or a dict's ``label`` entry (None otherwise)."""
    if isinstance(cond, dict):
        cond = cond.get("label")
    return cond if torch.is_tensor(cond) and not cond.is_floating_point() else None


class _Conditioning(nn.Module):
    """The noise level and an optional class label (negative or ``num_classes``: the null class) as one vector."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.noise = _NoiseFeatures(dim)
        self.label = nn.Embedding(num_classes + 1, dim) if num_classes else None

    def forward(self, c_noise: Tensor, cond: Any, batch: int) -> Tensor:
        emb = self.noise(c_noise.reshape(-1).expand(batch))
        labels = _labels(cond)
        if self.label is not None:
            if labels is None:
                labels = torch.full((batch,), self.num_classes, device=emb.device)
            emb = emb + self.label(torch.where(labels < 0, self.num_classes, labels).long())
        return F.silu(emb)


class LatentMLP(nn.Module):
    """``F(z_in [B, D], c_noise, cond)``: a residual MLP for flat latents, conditioned on an optional class label."""

    def __init__(self, dim: int, width: int = 256, depth: int = 4, num_classes: int = 0) -> None:
        super().__init__()
        self.cond = _Conditioning(width, num_classes)
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, width))
                                    for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, dim))

    def forward(self, z: Tensor, c_noise: Tensor, cond: Any = None) -> Tensor:
        emb = self.cond(c_noise, cond, z.shape[0])
        h = self.inp(z)
        for block in self.blocks:
            h = h + block(h + emb)
        return self.out(h)


class _FiLMBlock(nn.Module):
    """A residual convolution pair modulated by the conditioning vector (scale and shift)."""

    def __init__(self, channels: int, emb_dim: int, dims: int) -> None:
        super().__init__()
        conv = _conv(dims)
        self.norm1, self.conv1 = _group_norm(channels), conv(channels, channels, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * channels)
        self.norm2, self.conv2 = _group_norm(channels), conv(channels, channels, 3, padding=1)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.film(emb).reshape(*emb.shape[:1], -1, *[1] * (h.ndim - 2)).chunk(2, dim=1)
        r = self.conv1(F.silu(self.norm1(h)))
        r = self.norm2(r) * (1 + scale) + shift
        return h + self.conv2(F.silu(r))


class LatentConvNet(nn.Module):
    """``F(z_in [B, C, ...], c_noise, cond)``: residual FiLM convolutions at the latent's resolution (latents are
    small, so no down-sampling), conditioned on an optional class label."""

    def __init__(self, channels: int, width: int = 64, depth: int = 4, num_classes: int = 0, dims: int = 2) -> None:
        super().__init__()
        conv = _conv(dims)
        self.cond = _Conditioning(4 * width, num_classes)
        self.stem = conv(channels, width, 3, padding=1)
        self.blocks = nn.ModuleList(_FiLMBlock(width, 4 * width, dims) for _ in range(depth))
        self.head = nn.Sequential(_group_norm(width), nn.SiLU(), conv(width, channels, 3, padding=1))

    def forward(self, z: Tensor, c_noise: Tensor, cond: Any = None) -> Tensor:
        emb = self.cond(c_noise, cond, z.shape[0])
        h = self.stem(z)
        for block in self.blocks:
            h = block(h, emb)
        return self.head(h)


def latent_network(shape: Sequence[int], num_classes: int = 0, width: int | None = None,
                   depth: int = 4) -> nn.Module:
    """The generic denoiser network for latents shaped ``shape``: ``LatentMLP`` for [D], ``LatentConvNet`` for
    [C, L] or [C, H, W]."""
    shape = tuple(shape)
    if len(shape) == 1:
        return LatentMLP(shape[0], width or 256, depth, num_classes)
    if len(shape) in (2, 3):
        return LatentConvNet(shape[0], width or 64, depth, num_classes, dims=len(shape) - 1)
    raise ValueError(f"no generic network for latents shaped {list(shape)}")
