"""The toy domain's data and network: the data sets by name, the MLP, batches, class names and ``--data``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from polydiff.plugins.domain import Batch
from polydiff.plugins.errors import UsageError

from . import data
from .network import ToyMLP


def build_dataset(cfg: dict[str, Any], split: str) -> torch.Tensor:
    n = cfg["n_train"] if split == "train" else cfg["n_test"]
    return data.make(cfg["dataset"], split, n)


def build_network(cfg: dict[str, Any]) -> ToyMLP:
    return ToyMLP(width=cfg["network"]["width"], depth=cfg["network"]["depth"],
                  num_classes=data.num_classes(cfg["data"]["dataset"]))


def collate(rows: torch.Tensor) -> Batch:
    return Batch(rows[:, :2], rows[:, 2].long())


def class_names(config: dict[str, Any]) -> list[str]:
    """Classes are numbered: the moon, the mode, the row parity ... of the run's data set."""
    return [str(i) for i in range(data.num_classes(config["data"]["dataset"]))]


def data_source(value: str) -> dict[str, Any]:
    """``--data NAME``: a built-in set or one a plugin registered for the toy domain."""
    sets = data.available()
    if value not in sets:
        raise ValueError(f"unknown toy data set {value!r}; choose from {', '.join(sets)}")
    return {"data": {"dataset": value}}


def read_instances(path: Path, config: dict[str, Any]) -> Batch:
    """``personalize --instances`` / ``edit --input``: a .npy (or .pt) of points [n, 2], or [n, 3] whose last column
    is each point's class (``edit`` then takes it as the source class)."""
    from polydiff.plugins.personalize import read_array

    x = read_array(path).x0
    if x.ndim != 2 or x.shape[1] not in (2, 3):
        raise UsageError(f"{path}: expected points [n, 2] or [n, 3] (x, y, class), got {tuple(x.shape)}")
    return Batch(x[:, :2], x[:, 2].long() if x.shape[1] == 3 else None)


def x_control(batch: Batch, generator: torch.Generator) -> torch.Tensor:
    """The ``x`` control: each point's x coordinate [B, 1]."""
    return batch.x0[:, :1]
