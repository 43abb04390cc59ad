"""Prepared point sets: the configured meshes sampled, split and normalised (cached per config), the facts a run
stores (normalisation, classes), the training set, the network, the class names and ``--data`` sources."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.domains.common.cache import by_config
from polydiff.domains.common.datasets import LabelledTensors, SubsetRows, subset_rows
from polydiff.plugins.config import fitted
from polydiff.plugins.domain import Batch

from .data import Normalization, PointSet, load_set
from .network import PointSetTransformer
from .sections import Data


@dataclass
class Prepared:
    """The train and held-out parts of a set, already normalised, with the normalisation fitted on train."""

    train: PointSet
    test: PointSet
    normalization: Normalization
    train_points: np.ndarray
    test_points: np.ndarray

    @property
    def conditional(self) -> bool:
        return len(self.train.classes) > 0


def _data_cfg(cfg: dict[str, Any]) -> dict[str, Any]:
    return asdict(Data(**cfg))


@by_config()
def _prepare(c: dict[str, Any]) -> Prepared:
    full = load_set(str(c["source"]), int(c["n_points"]), seed=int(c["seed"]), n_per_class=int(c["n_per_class"]),
                    limit=c["limit"])
    if not c["conditional"]:
        full = PointSet(full.points, full.names, np.full(len(full), -1, dtype=np.int64), (), full.source, full.skipped)
    train, test = full.split("train", c["held_out"]), full.split("test", c["held_out"])
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"the set {c['source']} ({len(full)} items) leaves an empty train or held-out part; "
                         "use more meshes or change data.held_out")
    norm = Normalization.fit(c["normalization"], train.points)
    return Prepared(train, test, norm, norm.apply(train.points), norm.apply(test.points))


def prepare(data_cfg: dict[str, Any]) -> Prepared:
    """Load (cached) and split the configured set and fit the normalisation on its train part."""
    return _prepare(_data_cfg(data_cfg))


@dataclass
class Spec:
    """What sampling needs to know of the training set: its normalisation, class names and whether labels condition."""

    normalization: Normalization
    classes: list[str]
    conditional: bool


def fit_data(data_cfg: dict[str, Any]) -> dict[str, Any]:
    """The facts a run stores in its config's ``fitted`` section before training (JSON-ready)."""
    p = prepare(data_cfg)
    return {"normalization": p.normalization.to_dict(), "classes": list(p.train.classes), "conditional": p.conditional}


def sampling_spec(run_config: dict[str, Any]) -> Spec:
    """The run's ``Spec`` from its ``fitted`` section, without building the set (older runs: from the set)."""
    f = fitted(run_config, fit_data)
    return Spec(Normalization.from_dict(f["normalization"]), list(f["classes"]), bool(f["conditional"]))


def _clouds(points: np.ndarray, labels: np.ndarray, conditional: bool, k: int | None = None) -> LabelledTensors:
    x, y = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)), torch.from_numpy(labels.astype(np.int64))
    return LabelledTensors(x, y, conditional) if k is None else SubsetRows(x, y, conditional, int(k))


def build_dataset(cfg: dict[str, Any], split: str) -> LabelledTensors:
    """``train`` clouds (a fresh random ``train_points`` of each cloud's ``n_points`` per access when set), or the
    held-out ones for ``val``/``test``. The set network's attention averages over points, so a model trained on
    subsets samples full-size clouds."""
    p = prepare(cfg)
    if split == "train":
        return _clouds(p.train_points, p.train.labels, p.conditional, _data_cfg(cfg)["train_points"])
    if split in ("val", "test"):
        return _clouds(p.test_points, p.test.labels, p.conditional)
    raise ValueError(f"unknown split {split!r}; choose train, val or test")


def build_network(cfg: dict[str, Any]) -> PointSetTransformer:
    """The set transformer of the ``network`` config, class-conditional when the set has labels."""
    spec = sampling_spec(cfg)
    return PointSetTransformer(num_classes=len(spec.classes) if spec.conditional else 0, **cfg["network"])


def data_source(value: str) -> dict[str, Any]:
    """``--data shapes``, ``--data random_urdfs`` or a folder of meshes."""
    if value not in ("shapes", "random_urdfs") and not Path(value).is_dir():
        raise ValueError(f"{value} is neither shapes, random_urdfs nor a folder of meshes")
    return {"data": {"source": value}}


def class_names(config: dict[str, Any]) -> list[str]:
    """The run's class names; [] for an unconditional run."""
    spec = sampling_spec(config)
    return list(spec.classes) if spec.conditional else []


def train_view(batch: Batch, cfg: dict[str, Any], generator: torch.Generator) -> Batch:
    """A fresh random ``train_points`` of each whole cloud, as the train split draws them (``personalize``'s
    instances and prior samples): the network is fine-tuned on the set size it samples in."""
    k = cfg["data"].get("train_points")
    return batch if k is None else subset_rows(batch, int(k), generator)
