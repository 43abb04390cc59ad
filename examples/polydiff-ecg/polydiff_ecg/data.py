"""The ``data`` section made concrete: traces and labels of a split, from the synthesizer or a user's file.

``source = "synthetic"`` draws ``n_train`` / ``n_test`` traces from ``signals.synthesize`` with one seed per split.
A path to a ``.npy`` file [N, 256] (unlabelled) or an ``.npz`` file with ``signals`` [N, 256], optional ``labels`` [N]
and optional ``names`` (class names) is split by row: every tenth row from the 9th is validation, from the 10th test.
Training sees traces normalised by the training split's mean and standard deviation (``fit``).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .shape import LENGTH, SYNTHETIC
from .signals import CLASSES, synthesize

SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}


def read_file(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Signals [N, LENGTH], labels [N] (-1 when unlabelled) and class names of a user's .npy or .npz file."""
    path = Path(path)
    if path.suffix not in (".npy", ".npz") or not path.is_file():
        raise ValueError(f"expected {SYNTHETIC!r} or an existing .npy/.npz file of traces [N, {LENGTH}], got {path}")
    if path.suffix == ".npy":
        signals, labels, names = np.load(path, allow_pickle=False), None, None
    else:
        with np.load(path, allow_pickle=False) as f:
            if "signals" not in f:
                raise ValueError(f"{path} has no 'signals' array (found: {', '.join(f.files)})")
            signals = f["signals"]
            labels = f["labels"] if "labels" in f else None
            names = [str(v) for v in f["names"]] if "names" in f else None
    if signals.ndim != 2 or signals.shape[1] != LENGTH:
        raise ValueError(f"{path}: expected traces of shape [N, {LENGTH}], got {list(signals.shape)}")
    if labels is None:
        return signals.astype(np.float32), np.full(len(signals), -1, dtype=np.int64), []
    labels = np.asarray(labels).astype(np.int64)
    if labels.shape != (len(signals),) or labels.min() < 0:
        raise ValueError(f"{path}: 'labels' must be {len(signals)} class indices >= 0")
    k = int(labels.max()) + 1
    names = names if names is not None and len(names) >= k else [str(i) for i in range(k)]
    return signals.astype(np.float32), labels, names[:k]


def split(data: dict[str, Any], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Traces [N, LENGTH] in the data's own units and labels [N] (-1: unlabelled) of split ``name``."""
    if name not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {name!r}; choose from {', '.join(SPLIT_SEEDS)}")
    return _split(data["source"], data["n_train"], data["n_test"], name)


@lru_cache(maxsize=8)
def _split(source: str, n_train: int, n_test: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    if source == SYNTHETIC:
        return synthesize(n_train if name == "train" else n_test, 1000 + 7 * SPLIT_SEEDS[name])
    signals, labels, _ = read_file(source)
    fold = np.arange(len(signals)) % 10
    rows = {"train": fold < 8, "val": fold == 8, "test": fold == 9}[name]
    return signals[rows], labels[rows]


def class_names(data: dict[str, Any]) -> list[str]:
    """The class names of the data ([] for unlabelled traces)."""
    return list(CLASSES) if data["source"] == SYNTHETIC else read_file(data["source"])[2]


def fit(data: dict[str, Any]) -> dict[str, Any]:
    """What sampling needs from the training data: class names and the normalisation (mean, std)."""
    signals, _ = split(data, "train")
    return {"classes": class_names(data), "mean": float(signals.mean()), "std": float(signals.std() + 1e-8)}


def dataset(data: dict[str, Any], name: str) -> torch.Tensor:
    """Rows [N, LENGTH + 1] of normalised traces with the label in the last column (what training batches hold)."""
    signals, labels = split(data, name)
    facts = fit(data)
    x = (torch.from_numpy(signals) - facts["mean"]) / facts["std"]
    return torch.cat([x, torch.from_numpy(labels).float()[:, None]], 1)
