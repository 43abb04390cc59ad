"""The audio domain's cache folder and atomic npz writes."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    """``$POLYDIFF_CACHE/audio`` (default ``~/.cache/polydiff/audio``), created on demand."""
    root = Path(os.environ.get("POLYDIFF_CACHE", Path.home() / ".cache" / "polydiff"))
    path = root / "audio"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_npz_atomic(path: Path, **arrays: np.ndarray) -> Path:
    """Write an npz to a temporary name in the same folder, then rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path
