"""The audio domain's data pipeline: a configured source (built-in digits, FSDD recordings or a folder) -> split clips
-> normalised log-mels, with the normalisation fitted on the training clips (deterministic, so it can be recomputed or
stored)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from polydiff.domains.common.cache import by_config
from polydiff.domains.common.datasets import LabelledTensors
from polydiff.plugins.config import fitted
from polydiff.plugins.errors import UsageError

from .clipset import ClipSet
from .digits import DIGITS, DigitSetConfig, load_digits
from .features import MelConfig, MelNormalizer, fit_normalizer, mels_of
from .folder import load_folder
from .fsdd import load_fsdd
from .sections import Data
from .vocoder_data import Segments


def data_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The data settings with defaults filled in (a run's config already has them; tests pass partial ones)."""
    return asdict(Data(**cfg))


def mel_config(c: dict[str, Any]) -> MelConfig:
    """The log-mel analysis of a data section: 64 frames per 1 s clip at its sample rate."""
    return MelConfig.for_rate(int(c["sample_rate"]), int(c["n_mels"]))


@dataclass
class Prepared:
    """Train, validation and test clips with their normalised log-mels [N, 1, n_mels, frames] and the normaliser."""

    train: ClipSet
    test: ClipSet
    normalizer: MelNormalizer
    train_x: torch.Tensor
    test_x: torch.Tensor
    conditional: bool
    valid: ClipSet | None = None
    valid_x: torch.Tensor | None = None

    @property
    def class_names(self) -> list[str]:
        return self.train.class_names

    @property
    def num_classes(self) -> int:
        """Classes the network is conditioned on (0 for an unconditional model)."""
        return self.train.num_classes if self.conditional else 0


def _split_folder(clips: ClipSet, test_fraction: float, seed: int) -> tuple[ClipSet, ClipSet]:
    """Every k-th file of each class (in a seeded order) goes to test."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(clips), generator=gen)
    every = max(2, round(1 / test_fraction)) if test_fraction > 0 else len(clips) + 1
    test_idx, seen = [], {}
    for i in order.tolist():
        lab = int(clips.labels[i])
        seen[lab] = seen.get(lab, 0) + 1
        if seen[lab] % every == 0:
            test_idx.append(i)
    train_idx = sorted(set(range(len(clips))) - set(test_idx))
    return clips.subset(train_idx), clips.subset(sorted(test_idx))


def load_clips(c: dict[str, Any]) -> tuple[ClipSet, ClipSet, ClipSet | None]:
    """(train, test, valid) clips of the configured source: digits are split by voice, FSDD by take (valid: held-out
    training takes), folders per class (no validation part)."""
    if c["source"] == "digits":
        dcfg = DigitSetConfig(n_voices=int(c["n_voices"]), takes=int(c["takes"]), seed=int(c["seed"]),
                              valid_fraction=float(c["valid_fraction"]), test_fraction=float(c["test_fraction"]))
        return load_digits(dcfg, "train", verbose=True), load_digits(dcfg, "test"), None
    rate = int(c["sample_rate"])
    if c["source"] == "fsdd":
        parts = load_fsdd(c["path"], rate, rate, int(c["valid_takes"]))
        return parts["train"], parts["test"], parts["valid"]
    clips, _ = load_folder(c["folder"], rate, sample_rate=rate)
    return (*_split_folder(clips, float(c["test_fraction"]), int(c["seed"])), None)


@by_config()
def _prepare(c: dict[str, Any]) -> Prepared:
    train, test, valid = load_clips(c)
    if len(train) == 0 or len(test) == 0:
        hint = " (FSDD: takes 0-4 are test, the next data.valid_takes validation)" if c["source"] == "fsdd" else ""
        raise UsageError(f"the audio set leaves an empty train ({len(train)}) or test ({len(test)}) part{hint}; "
                         "add clips")
    mel_cfg = mel_config(c)
    train_mels, test_mels = mels_of(train.waves, mel_cfg), mels_of(test.waves, mel_cfg)
    norm = fit_normalizer(train_mels, mel_cfg) if c["normalizer"] is None else MelNormalizer.from_dict(c["normalizer"])
    conditional = bool(c["conditional"]) and train.num_classes > 0
    valid_x = norm.normalize(mels_of(valid.waves, mel_cfg))[:, None] if valid is not None and len(valid) else None
    return Prepared(train, test, norm, norm.normalize(train_mels)[:, None], norm.normalize(test_mels)[:, None],
                    conditional, valid if valid_x is not None else None, valid_x)


RUN_KEYS = ("target", "segment_frames")
"""Data keys that shape a run's examples, not the clips: mel models and vocoders of the same clips share them."""


def prepare(cfg: dict[str, Any]) -> Prepared:
    """Load (cached) and split the configured clips and normalise their log-mels."""
    return _prepare({k: v for k, v in data_config(cfg).items() if k not in RUN_KEYS})


@dataclass
class Spec:
    """What sampling needs to know of the training data: the normaliser, class names, whether labels condition."""

    normalizer: MelNormalizer
    class_names: list[str]
    conditional: bool


def fit_data(cfg: dict[str, Any]) -> dict[str, Any]:
    """The facts a run stores in its config's ``fitted`` section before training (JSON-ready)."""
    p = prepare(cfg)
    return {"normalizer": p.normalizer.to_dict(), "class_names": list(p.class_names), "conditional": p.conditional}


def sampling_spec(run_config: dict[str, Any]) -> Spec:
    """The run's ``Spec``, from its ``fitted`` section without touching the clips (older runs: from the data)."""
    d = data_config(run_config["data"])
    if not run_config.get("fitted") and d["source"] == "digits" and d["normalizer"] is not None:
        f = {"normalizer": d["normalizer"], "class_names": list(DIGITS), "conditional": bool(d["conditional"])}
    else:
        f = fitted(run_config, fit_data)
    return Spec(MelNormalizer.from_dict(f["normalizer"]), list(f["class_names"]), bool(f["conditional"]))


def build_dataset(cfg: dict[str, Any], split: str) -> LabelledTensors | Segments:
    """``train`` mels, ``val`` (the validation part where the source has one, else test) or ``test`` (held out); for a
    vocoder (``target = "waves"``) training segments or whole held-out clips with their mels."""
    p, c = prepare(cfg), data_config(cfg)
    if c["target"] == "waves":
        return vocoder_examples(p, split, int(c["segment_frames"]))
    if split == "train":
        return LabelledTensors(p.train_x, p.train.labels, p.conditional)
    if split == "val" and p.valid is not None:
        return LabelledTensors(p.valid_x, p.valid.labels, p.conditional)
    if split in ("val", "test"):
        return LabelledTensors(p.test_x, p.test.labels, p.conditional)
    raise ValueError(f"unknown split {split!r}; choose train, val or test")


def vocoder_examples(p: Prepared, split: str, frames: int) -> Segments:
    """A vocoder's examples: random ``frames``-long segments of the training clips, whole clips of the others."""
    parts = {"train": (p.train, p.train_x), "test": (p.test, p.test_x),
             "val": (p.valid, p.valid_x) if p.valid is not None else (p.test, p.test_x)}
    if split not in parts:
        raise ValueError(f"unknown split {split!r}; choose train, val or test")
    clips, x = parts[split]
    return Segments(clips.waves, x[:, 0], p.normalizer.config.hop, frames if split == "train" else 0)
