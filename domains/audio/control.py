"""The audio control of ``train-control``: a clip's loudness envelope, so a digit can follow the rhythm of another.

The envelope is the mean log-mel over the bands of each frame (the log of the geometric-mean band power: the 0th
cepstral coefficient, MFCCs' usual log-energy term), scaled to [0, 1] within the clip. The scaling makes it the same
whether it is computed from normalised log-mels (training) or from raw log-mels; a reference clip (``sample --control
clip.wav``) is peak-normalised first, as the training clips are, so its recording level does not matter: the
envelope carries when the speech is loud and when it is quiet. Energy was chosen over a pitch contour because every
frame has one (pitch is undefined in the unvoiced and silent frames that shape a digit's rhythm) and it needs no
pitch tracker.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from polydiff.plugins.domain import Batch
from polydiff.plugins.errors import OptionError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def envelope(mels: torch.Tensor) -> torch.Tensor:
    """(Normalised) log-mels [B, 1, n_mels, frames] or [B, n_mels, frames] -> envelopes [B, 1, frames] in [0, 1]."""
    m = mels.float().reshape(mels.shape[0], -1, mels.shape[-1]).mean(dim=1)
    lo, hi = m.amin(dim=-1, keepdim=True), m.amax(dim=-1, keepdim=True)
    return ((m - lo) / (hi - lo).clamp(min=1e-6))[:, None]


def envelope_control(batch: Batch, generator: torch.Generator) -> torch.Tensor:
    """The ``envelope`` control of each clean training clip [B, 1, frames]."""
    return envelope(batch.x0)


def read_envelopes(path: Path, config: dict[str, Any]) -> torch.Tensor:
    """``sample --control``: the envelopes [m, 1, frames] of a clip or a folder of clips (prepared like the training
    clips at the run's rate), or a .npy/.pt array of envelopes."""
    from polydiff.plugins.personalize import read_array

    from .data import sampling_spec
    from .sampling import clip_mel

    path = Path(path)
    if path.suffix in (".npy", ".pt"):
        return read_array(path).x0.float()
    files = sorted(f for f in path.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES) if path.is_dir() else [path]
    if not files or any(f.suffix.lower() not in AUDIO_SUFFIXES for f in files):
        raise OptionError("--control", f"{path}: give a .wav/.flac/.ogg clip, a folder of them, or a .npy/.pt array "
                                       "of envelopes [m, 1, frames]")
    p = sampling_spec(config)
    try:
        return envelope(torch.stack([clip_mel(p, f) for f in files]))
    except ValueError as exc:
        raise OptionError("--control", str(exc)) from None
