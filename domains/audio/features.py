"""Log-mel spectrograms (torchaudio), their normalisation, and inversion by InverseMelScale + Griffin-Lim.

A 1 s clip at 16 kHz with n_fft 1024 and hop 256 is analysed over (frames - 1) * hop samples (padded), giving exactly
``frames`` = 64 centred frames, a size the U-Net can halve twice. Inversion returns ``clip_samples`` samples.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torchaudio.transforms as T

from .clips import CLIP_SAMPLES, SAMPLE_RATE


@dataclass(frozen=True)
class MelConfig:
    """Analysis settings of the log-mel features (power mel, natural log with a floor)."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 1024
    hop: int = 256
    n_mels: int = 64
    frames: int = 64
    f_min: float = 0.0
    f_max: float = 8000.0
    floor: float = 1e-5
    clip_samples: int = CLIP_SAMPLES

    @classmethod
    def for_rate(cls, sample_rate: int = SAMPLE_RATE, n_mels: int = 64) -> "MelConfig":
        """Settings for 1 s clips at ``sample_rate``: window, hop and band scaled from the 16 kHz ones (64 frames)."""
        if sample_rate % 250:
            raise ValueError(f"the sample rate must be a multiple of 250 Hz (8000, 16000, ...), not {sample_rate}")
        scale = sample_rate / SAMPLE_RATE
        return cls(sample_rate=sample_rate, n_fft=round(1024 * scale), hop=round(256 * scale), n_mels=n_mels,
                   f_max=sample_rate / 2, clip_samples=sample_rate)

    @property
    def analysis_samples(self) -> int:
        """Samples analysed so that a centred STFT has exactly ``frames`` frames."""
        return (self.frames - 1) * self.hop


@dataclass
class MelNormalizer:
    """Affine map of log-mel values to roughly unit scale: (log_mel - mean) / std, both scalars from the train set."""

    mean: float = 0.0
    std: float = 1.0
    config: MelConfig = field(default_factory=MelConfig)

    def normalize(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Log-mel -> model space."""
        return (log_mel - self.mean) / self.std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model space -> log-mel."""
        return x * self.std + self.mean

    def to_dict(self) -> dict:
        """A JSON-ready dict (stored next to the model's weights)."""
        return {"mean": self.mean, "std": self.std, "mel": asdict(self.config)}

    @classmethod
    def from_dict(cls, d: dict) -> "MelNormalizer":
        """Inverse of ``to_dict``."""
        return cls(float(d["mean"]), float(d["std"]), MelConfig(**d.get("mel", {})))

    def save(self, path: str | Path) -> None:
        """Write the JSON file."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "MelNormalizer":
        """Read a JSON file written by ``save``."""
        return cls.from_dict(json.loads(Path(path).read_text()))


class LogMel(torch.nn.Module):
    """Waveforms [B, samples] -> natural-log power mel spectrograms [B, n_mels, frames]."""

    def __init__(self, config: MelConfig = MelConfig()) -> None:
        super().__init__()
        self.config = config
        self.mel = T.MelSpectrogram(sample_rate=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop,
                                    n_mels=config.n_mels, f_min=config.f_min, f_max=config.f_max, power=2.0,
                                    center=True, norm="slaney", mel_scale="slaney")

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        if waves.ndim == 1:
            waves = waves[None]
        if waves.ndim != 2:
            raise ValueError(f"LogMel needs waveforms [B, samples]; got shape {tuple(waves.shape)}")
        n = self.config.analysis_samples
        waves = torch.nn.functional.pad(waves, (0, max(0, n - waves.shape[-1])))[..., :n]
        return self.mel(waves.float()).clamp(min=self.config.floor).log()


class GriffinLimInverter(torch.nn.Module):
    """Log-mel [B, n_mels, frames] -> waveforms [B, clip_samples]: least-squares InverseMelScale, then Griffin-Lim."""

    def __init__(self, config: MelConfig = MelConfig(), n_iter: int = 64, momentum: float = 0.99, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        self.seed = seed
        self.inverse_mel = T.InverseMelScale(n_stft=config.n_fft // 2 + 1, n_mels=config.n_mels,
                                             sample_rate=config.sample_rate, f_min=config.f_min, f_max=config.f_max,
                                             norm="slaney", mel_scale="slaney")
        self.griffin_lim = T.GriffinLim(n_fft=config.n_fft, n_iter=n_iter, hop_length=config.hop, power=2.0,
                                        momentum=momentum, rand_init=True)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        if log_mel.ndim != 3 or log_mel.shape[1] != self.config.n_mels:
            raise ValueError(f"GriffinLimInverter needs log-mels [B, {self.config.n_mels}, frames]; "
                             f"got shape {tuple(log_mel.shape)}")
        power = self.inverse_mel(log_mel.float().exp()).clamp(min=0)
        state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)
        try:
            waves = self.griffin_lim(power)
        finally:
            torch.random.set_rng_state(state)
        waves = torch.nn.functional.pad(waves, (0, max(0, self.config.clip_samples - waves.shape[-1])))
        return waves[..., : self.config.clip_samples]


def fit_normalizer(log_mels: torch.Tensor, config: MelConfig = MelConfig()) -> MelNormalizer:
    """Mean and std of all log-mel values of the training set."""
    return MelNormalizer(float(log_mels.mean()), float(log_mels.std()), config)


def mels_of(waves: torch.Tensor, config: MelConfig = MelConfig(), batch: int = 256) -> torch.Tensor:
    """Log-mels of many waveforms, in batches."""
    lm = LogMel(config)
    return torch.cat([lm(waves[i:i + batch]) for i in range(0, len(waves), batch)]) if len(waves) else \
        torch.zeros(0, config.n_mels, config.frames)
