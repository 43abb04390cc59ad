"""PNG previews of 2D point sets."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def scatter_png(points: np.ndarray, path: Path, title: str = "", reference: np.ndarray | None = None) -> Path:
    """A scatter plot of points (and, faintly, reference points) written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=120)
    if reference is not None:
        ax.scatter(reference[:, 0], reference[:, 1], s=1, c="0.8", label="data")
    ax.scatter(points[:, 0], points[:, 1], s=1, c="tab:blue", label="samples")
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
