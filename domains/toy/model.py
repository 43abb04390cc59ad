"""The toy domain's data and network: the data sets by name, the MLP, batches, class names and ``--data``."""
from __future__ import annotations

from typing import Any

import torch

from polydiff.plugins.domain import Batch

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
