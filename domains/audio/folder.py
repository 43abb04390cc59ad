"""A user's folder of WAV/FLAC/OGG clips as a ``ClipSet``: 1 s centred clips (16 kHz unless asked), label = parent folder name.

Files directly in the root folder are unlabelled (-1). Unreadable or silent files are skipped and reported by name.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .clips import CLIP_SAMPLES, SAMPLE_RATE, AudioReadError, load_audio, prepare_clip
from .clipset import ClipSet

EXTENSIONS = (".wav", ".flac", ".ogg")


def load_folder(root: str | Path, n_samples: int = CLIP_SAMPLES, warn: bool = True,
                sample_rate: int = SAMPLE_RATE) -> tuple[ClipSet, list[str]]:
    """Read every audio file under ``root`` as clips of ``n_samples`` at ``sample_rate``; returns the clips and one line
    per skipped file."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder; pass a folder of .wav/.flac/.ogg files (sub-folders name the classes)")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)
    if not files:
        raise ValueError(f"{root}: no .wav, .flac or .ogg files found")
    class_names = sorted({p.parent.name for p in files if p.parent != root})
    waves, labels, speakers, skipped = [], [], [], []
    for p in files:
        try:
            wave, sr = load_audio(p)
            clip = prepare_clip(wave, sr, n_samples, target=sample_rate)
        except AudioReadError as exc:
            msg = str(exc) if str(p) in str(exc) else f"{p}: {exc}"
            skipped.append(msg)
            if warn:
                print(f"skipped {msg}")
            continue
        waves.append(clip)
        labels.append(class_names.index(p.parent.name) if p.parent != root else -1)
        speakers.append(str(p.relative_to(root)))
    if not waves:
        raise ValueError(f"{root}: none of the {len(files)} audio files could be used: {'; '.join(skipped[:3])}")
    return ClipSet(torch.stack(waves), torch.tensor(labels, dtype=torch.long), class_names, speakers), skipped
