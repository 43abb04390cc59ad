"""The ECG domain's data side: fitted facts, the network, batches and what ``--data`` accepts."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from polydiff.plugins.domain import Batch

from . import data
from .network import ECGNet
from .signals import LENGTH


def facts(config: dict[str, Any]) -> dict[str, Any]:
    """The run's fitted facts (class names, normalisation), fitted again for a config that lacks them."""
    return config.get("fitted") or data.fit(config["data"])


def build_network(config: dict[str, Any]) -> ECGNet:
    """``ECGNet`` sized by the ``network`` section, with one class embedding per class of the data."""
    net = config["network"]
    return ECGNet(net["channels"], net["blocks"], net["emb_dim"], len(facts(config)["classes"]), net["patch"],
                  net["attention"])


def collate(rows: torch.Tensor) -> Batch:
    """Rows of (trace, label) into a batch: traces [B, 256] and labels [B] (-1 = unlabelled, the null class)."""
    return Batch(rows[:, :LENGTH], rows[:, LENGTH].long())


def to_config(value: str) -> dict[str, Any]:
    """``train --data``: ``synthetic`` or a file of traces, checked now so a bad file fails before training."""
    if value == data.SYNTHETIC:
        return {"data": {"source": value}}
    data.read_file(value)
    return {"data": {"source": str(Path(value).resolve())}}


def class_names(config: dict[str, Any]) -> list[str]:
    """The run's class names (its fitted facts)."""
    return list(facts(config)["classes"])
