"""Waveform plumbing: read audio files, resample to 16 kHz, trim silence, centre into fixed-length clips, write WAVs."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torchaudio.transforms as T

SAMPLE_RATE = 16000
CLIP_SAMPLES = SAMPLE_RATE


class AudioReadError(ValueError):
    """An audio file could not be read or holds no usable sound."""


def load_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """Read a WAV/FLAC/OGG file as a mono float32 tensor [n] and its sample rate."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioReadError(f"{path}: no such audio file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises its own LibsndfileError / RuntimeError types
        raise AudioReadError(f"{path}: not a readable audio file ({str(exc).strip() or type(exc).__name__}); "
                             "use WAV, FLAC or OGG") from exc
    if data.shape[0] == 0:
        raise AudioReadError(f"{path}: the file holds no samples")
    return torch.from_numpy(data.mean(axis=1)), int(sr)


def to_tensor(wave: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A float32 tensor view of a 1D waveform."""
    return torch.as_tensor(np.asarray(wave) if not isinstance(wave, torch.Tensor) else wave, dtype=torch.float32)


@lru_cache(maxsize=8)
def _resampler(sr: int, target: int) -> T.Resample:
    return T.Resample(sr, target)


def resample(wave: torch.Tensor, sr: int, target: int = SAMPLE_RATE) -> torch.Tensor:
    """Band-limited resampling (torchaudio's windowed sinc, kernel cached per rate pair) from ``sr`` to ``target``."""
    if sr == target:
        return wave
    return _resampler(int(sr), int(target))(wave)


def trim_silence(wave: torch.Tensor, threshold_db: float = -40.0, frame: int = 256) -> torch.Tensor:
    """Cut leading and trailing frames whose RMS is ``threshold_db`` below the loudest frame; empty if all silent."""
    if wave.numel() == 0:
        return wave
    n = (wave.numel() + frame - 1) // frame
    padded = torch.nn.functional.pad(wave, (0, n * frame - wave.numel()))
    rms = padded.reshape(n, frame).pow(2).mean(1).sqrt()
    peak = rms.max()
    if peak <= 1e-6:
        return wave[:0]
    loud = torch.nonzero(20 * torch.log10(rms / peak + 1e-12) > threshold_db).flatten()
    return wave[int(loud[0]) * frame: min(wave.numel(), (int(loud[-1]) + 1) * frame)]


def fit_length(wave: torch.Tensor, n: int = CLIP_SAMPLES) -> torch.Tensor:
    """Centre ``wave`` in ``n`` samples: zero-pad both sides or crop the middle."""
    if wave.numel() >= n:
        start = (wave.numel() - n) // 2
        return wave[start:start + n]
    left = (n - wave.numel()) // 2
    return torch.nn.functional.pad(wave, (left, n - wave.numel() - left))


def prepare_clip(wave: np.ndarray | torch.Tensor, sr: int, n: int = CLIP_SAMPLES, peak: float = 0.9,
                 target: int = SAMPLE_RATE) -> torch.Tensor:
    """Resample to ``target`` (16 kHz), trim silence, centre into ``n`` samples and peak-normalise; raises if silent."""
    w = trim_silence(resample(to_tensor(wave), sr, target))
    if w.numel() == 0:
        raise AudioReadError("the clip is silent")
    w = fit_length(w, n)
    return w * (peak / w.abs().max().clamp(min=1e-8))


def write_wav(path: str | Path, wave: torch.Tensor, sr: int = SAMPLE_RATE) -> Path:
    """Write a mono 16-bit PCM WAV (clipped to [-1, 1])."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave.detach().cpu().float().clamp(-1, 1).numpy(), sr, subtype="PCM_16")
    return path
