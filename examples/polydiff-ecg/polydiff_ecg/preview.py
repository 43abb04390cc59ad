"""PNG previews of traces: a grid of rhythm strips, each titled by its class."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .signals import FS


def traces_png(signals: np.ndarray, titles: list[str], path: Path, *, title: str = "",
               span: tuple[float, float] | None = None, columns: int = 4, limit: int = 16) -> Path:
    """Up to ``limit`` traces in a grid on an ECG-paper-like background; ``span`` (seconds) is shaded in each
    (the part an inpainting command regenerated)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(signals), limit)
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 1.6 * rows + 0.4), dpi=100, squeeze=False)
    t = np.arange(signals.shape[1]) / FS
    for i, ax in enumerate(axes.flat):
        ax.set_xticks(np.arange(0, t[-1] + 1e-9, 0.2), minor=True)
        ax.set_xticks(np.arange(0, t[-1] + 1e-9, 1.0))
        ax.tick_params(labelsize=6)
        if i >= n:
            ax.axis("off")
            continue
        ax.grid(True, which="both", color="#f4c0c0", linewidth=0.4)
        if span is not None:
            ax.axvspan(*span, color="#cfe3ff")
        ax.plot(t, signals[i], color="black", linewidth=0.8)
        ax.set_xlim(0, t[-1])
        ax.set_title(titles[i] if i < len(titles) else "", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
