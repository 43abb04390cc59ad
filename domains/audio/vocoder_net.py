"""Learned inverses of the log-mel spectrogram, as networks ``F(x_in, c_noise, cond)`` over waveforms [B, 1, T].

``cond`` is ``{"mel": [B, n_mels, frames]}`` (normalised log-mels; frame i is centred on sample i * hop).

- ``DiffWave``: DiffWave's mel-conditioned waveform denoiser (Kong et al. 2021): gated residual layers of dilated 1D
  convolutions with skip connections; trained by denoising score matching like any run and sampled by the core's
  samplers. The mel is encoded at frame rate, interpolated to samples once and projected by each layer (1x1), as
  DiffWave's upsampled conditioning.
- ``MelToLinear``: a mel -> linear-spectrogram network with Griffin-Lim for the phase. Griffin-Lim from the true
  linear spectrogram re-analyses 5x closer to the mel than Griffin-Lim from the least-squares inverse of the mel scale
  (log-mel L1 0.042 against 0.211 on FSDD validation takes), so the learned part is the inverse mel scale: the
  pseudo-inverse's log power plus a residual convolution stack over frames (bins as channels), trained with L1 on log
  power (``spectral_loss.py``). Like ``MelGenerator`` it ignores ``x_in`` (one step).
- ``MelGenerator``: a small HiFi-GAN generator (Kong et al. 2020, V3-like: transposed convolutions up to the sample
  rate, multi-receptive-field residual blocks) that ignores ``x_in``: with the ``x0`` parameterization its denoiser
  returns G(mel) at every sigma, so a sampler's single step lands on it. It is trained with spectral losses
  (``spectral_loss.py``) instead of denoising.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from polydiff.domains.common.embeddings import NoiseEmbedding

from .features import MelConfig


def upsample_frames(features: torch.Tensor, hop: int, length: int) -> torch.Tensor:
    """[B, C, frames] -> [B, C, length]: linear interpolation with frame i at sample i * hop (held at the ends)."""
    frames = features.shape[-1]
    pos = (torch.arange(length, device=features.device, dtype=torch.float32) / hop).clamp(max=frames - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=frames - 1)
    w = (pos - lo).to(features.dtype)
    return features[..., lo] * (1 - w) + features[..., hi] * w


class ResidualLayer(nn.Module):
    """One DiffWave layer: noise embedding added, dilated conv plus the mel condition, gated, split into residual and
    skip."""

    def __init__(self, channels: int, dilation: int, embed_dim: int, cond_dim: int) -> None:
        super().__init__()
        self.noise = nn.Linear(embed_dim, channels)
        self.conv = nn.Conv1d(channels, 2 * channels, 3, padding=dilation, dilation=dilation)
        self.cond = nn.Conv1d(cond_dim, 2 * channels, 1)
        self.out = nn.Conv1d(channels, 2 * channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x + self.noise(emb)[:, :, None]) + self.cond(cond)
        gate, filt = y.chunk(2, dim=1)
        residual, skip = self.out(torch.sigmoid(gate) * torch.tanh(filt)).chunk(2, dim=1)
        return (x + residual) / math.sqrt(2), skip


class DiffWave(nn.Module):
    """``F(x_in, c_noise, {"mel": ...})`` -> [B, 1, T]: ``layers`` residual layers of ``channels`` with dilations
    1, 2, ..., 2^(cycle-1) repeated."""

    def __init__(self, n_mels: int, hop: int, channels: int = 64, layers: int = 20, cycle: int = 10,
                 embed_dim: int = 128) -> None:
        super().__init__()
        self.hop, self.channels, self.n_layers = hop, channels, layers
        self.inp = nn.Conv1d(1, channels, 1)
        self.embed = NoiseEmbedding(embed_dim)
        self.cond = nn.Sequential(nn.Conv1d(n_mels, channels, 3, padding=1), nn.LeakyReLU(0.4),
                                  nn.Conv1d(channels, channels, 3, padding=1), nn.LeakyReLU(0.4))
        self.layers = nn.ModuleList(ResidualLayer(channels, 2 ** (i % cycle), embed_dim, channels)
                                    for i in range(layers))
        self.skip = nn.Conv1d(channels, channels, 1)
        self.final = nn.Conv1d(channels, 1, 1)
        nn.init.zeros_(self.final.weight)
        nn.init.zeros_(self.final.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: dict) -> torch.Tensor:
        mel = check_mel(x, cond, self.hop)
        h = F.relu(self.inp(x))
        emb = self.embed(c_noise)
        cond = upsample_frames(self.cond(mel), self.hop, x.shape[-1])
        skips = torch.zeros_like(h)
        for layer in self.layers:
            h, skip = layer(h, emb, cond)
            skips = skips + skip
        return self.final(F.relu(self.skip(skips / math.sqrt(self.n_layers))))


def upsample_factors(hop: int) -> list[int]:
    """Factors of ``hop`` for the generator's upsampling stages: 8 while that leaves at least 4, then 4s and 2s
    (128 -> 8, 4, 4; 256 -> 8, 8, 4)."""
    factors, rest = [], hop
    while rest > 1:
        f = next((f for f in (8, 4, 2) if rest % f == 0 and (f < 8 or rest // 8 >= 4)), None)
        if f is None:
            raise ValueError(f"the mel hop {hop} is not a product of 8, 4 and 2")
        factors.append(f)
        rest //= f
    return factors


class ResBlock(nn.Module):
    """HiFi-GAN's residual block: pairs of (dilated, plain) convolutions with leaky ReLUs, each added back."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...] = (1, 3, 5)) -> None:
        super().__init__()
        self.dilated = nn.ModuleList(nn.Conv1d(channels, channels, kernel, dilation=d, padding=d * (kernel - 1) // 2)
                                     for d in dilations)
        self.plain = nn.ModuleList(nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for a, b in zip(self.dilated, self.plain):
            x = x + b(F.leaky_relu(a(F.leaky_relu(x, 0.1)), 0.1))
        return x


class MelGenerator(nn.Module):
    """``F(x_in, c_noise, {"mel": ...})`` = G(mel) [B, 1, T] (``x_in`` gives only the length): a HiFi-GAN generator
    from ``channels`` at frame rate, halving the channels at each upsampling stage."""

    def __init__(self, n_mels: int, hop: int, channels: int = 128, kernels: tuple[int, ...] = (3, 7)) -> None:
        super().__init__()
        self.hop = hop
        self.pre = nn.Conv1d(n_mels, channels, 7, padding=3)
        self.ups, self.blocks = nn.ModuleList(), nn.ModuleList()
        c = channels
        for f in upsample_factors(hop):
            self.ups.append(nn.ConvTranspose1d(c, c // 2, 2 * f, stride=f, padding=f // 2))
            c //= 2
            self.blocks.append(nn.ModuleList(ResBlock(c, k) for k in kernels))
        self.post = nn.Conv1d(c, 1, 7, padding=3)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: dict) -> torch.Tensor:
        h = self.pre(check_mel(x, cond, self.hop))
        for up, blocks in zip(self.ups, self.blocks):
            h = up(F.leaky_relu(h, 0.1))
            h = sum(block(h) for block in blocks) / len(blocks)
        wave = torch.tanh(self.post(F.leaky_relu(h)))
        length = x.shape[-1]
        return F.pad(wave, (0, max(0, length - wave.shape[-1])))[..., :length]


def check_mel(x: torch.Tensor, cond: dict | None, hop: int) -> torch.Tensor:
    """The condition's mel [B, n_mels, frames], checked against waveforms [B, 1, T] (about T / hop frames)."""
    if x.ndim != 3 or x.shape[1] != 1:
        raise ValueError(f"a vocoder works on waveforms [B, 1, samples]; got {tuple(x.shape)}")
    mel = None if cond is None else cond.get("mel")
    if mel is None or mel.ndim != 3 or mel.shape[0] != x.shape[0]:
        raise ValueError("a vocoder needs cond={'mel': [B, n_mels, frames]} with one mel per waveform")
    if abs(mel.shape[-1] - math.ceil(x.shape[-1] / hop)) > 1:
        raise ValueError(f"{mel.shape[-1]} mel frames do not cover {x.shape[-1]} samples at hop {hop}")
    return mel.to(x.dtype)


class MelToLinear(nn.Module):
    """``F(x_in, c_noise, {"mel": ...})`` = Griffin-Lim(exp(``log_power(mel)``)) [B, 1, T]: the normalised log-mel
    (``mean``, ``std``: the run's normaliser) to log power spectra [B, n_fft/2 + 1, frames], then ``gl_iters`` seeded
    Griffin-Lim iterations."""

    def __init__(self, mel: MelConfig, mean: float, std: float, channels: int = 256, layers: int = 6,
                 gl_iters: int = 32) -> None:
        super().__init__()
        import torchaudio.functional as AF

        self.mel, self.mean, self.std, self.gl_iters = mel, mean, std, gl_iters
        bank = AF.melscale_fbanks(mel.n_fft // 2 + 1, mel.f_min, mel.f_max, mel.n_mels, mel.sample_rate, norm="slaney",
                                  mel_scale="slaney")
        self.register_buffer("bank", bank, persistent=False)
        self.register_buffer("pinv", torch.linalg.pinv(bank.T), persistent=False)
        self.inp = nn.Conv1d(mel.n_mels, channels, 5, padding=2)
        self.body = nn.ModuleList(nn.Sequential(nn.GELU(), nn.Conv1d(channels, channels, 5, padding=2 * 2 ** (i % 3),
                                                                     dilation=2 ** (i % 3)))
                                  for i in range(layers))
        self.out = nn.Conv1d(channels, mel.n_fft // 2 + 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def log_power(self, mel: torch.Tensor) -> torch.Tensor:
        """Log power spectra [B, n_fft/2 + 1, frames] of normalised log-mels [B, n_mels, frames]."""
        power = (mel * self.std + self.mean).exp()
        base = (self.pinv @ power).clamp(min=self.mel.floor).log()
        h = self.inp(mel)
        for layer in self.body:
            h = h + layer(h)
        return base + self.out(F.gelu(h))

    def mel_of_power(self, log_power: torch.Tensor) -> torch.Tensor:
        """The log-mel [B, n_mels, frames] of log power spectra (the judge's mel bands and floor)."""
        return (self.bank.T @ log_power.exp()).clamp(min=self.mel.floor).log()

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: dict) -> torch.Tensor:
        import torchaudio.transforms as T

        power = self.log_power(check_mel(x, cond, self.mel.hop).float()).exp()
        gl = T.GriffinLim(n_fft=self.mel.n_fft, n_iter=self.gl_iters, hop_length=self.mel.hop, power=2.0,
                          momentum=0.99, rand_init=True).to(x.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            wave = gl(power)[:, None]
        length = x.shape[-1]
        return F.pad(wave, (0, max(0, length - wave.shape[-1])))[..., :length].to(x.dtype)
