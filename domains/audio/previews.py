"""Writing generated audio: one WAV per clip and one PNG grid of their log-mel spectrograms titled by class."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from .clips import SAMPLE_RATE, write_wav


def clip_name(i: int, label: int | None, class_names: list[str]) -> str:
    """File stem of clip ``i``: ``sample_003_seven`` (or ``sample_003`` when unlabelled)."""
    if label is None or label < 0 or label >= len(class_names):
        return f"sample_{i:03d}"
    return f"sample_{i:03d}_{class_names[label]}"


def spectrogram_grid(path: str | Path, log_mels: torch.Tensor, titles: list[str], columns: int = 5) -> Path:
    """Save a matplotlib grid of log-mels [N, n_mels, frames] (low frequencies at the bottom) with one title each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = log_mels.shape[0]
    if n == 0:
        raise ValueError("no spectrograms to plot")
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.0 * rows), squeeze=False)
    lo, hi = float(log_mels.min()), float(log_mels.max())
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        ax = axes.flat[i]
        ax.imshow(log_mels[i].detach().cpu().numpy(), origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma")
        ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def save_clips(directory: str | Path, waves: torch.Tensor, log_mels: torch.Tensor, labels: list[int] | None,
               class_names: list[str], sr: int = SAMPLE_RATE) -> list[Path]:
    """Write ``sample_XXX[_class].wav`` for each clip and ``spectrograms.png``; returns the paths written."""
    directory = Path(directory)
    labels = labels if labels is not None else [-1] * waves.shape[0]
    paths = [write_wav(directory / f"{clip_name(i, l, class_names)}.wav", w, sr) for i, (w, l) in enumerate(zip(waves, labels))]
    titles = [class_names[l] if 0 <= l < len(class_names) else f"#{i}" for i, l in enumerate(labels)]
    paths.append(spectrogram_grid(directory / "spectrograms.png", log_mels, titles))
    return paths
