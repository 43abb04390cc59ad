"""An SC09-like spoken-digit set ("zero".."nine") synthesised offline with espeak-ng, split by voice.

Each voice is an English dialect plus a voice variant (``en-us+f3``); each take draws its own speaking rate and pitch.
The split is by variant: the test and validation variants are never heard, in any dialect, during training.
Synthesised once and cached as int16 npz under the cache folder (the key is the configuration).
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .cache import cache_dir, save_npz_atomic
from .clips import CLIP_SAMPLES, prepare_clip
from .clipset import ClipSet
from .espeak import engine

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIALECTS = ("en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class DigitSetConfig:
    """How many voices and takes; the ranges of rate (words/min) and pitch (0..100) drawn per take."""

    n_voices: int = 10
    takes: int = 1
    rate: tuple[int, int] = (120, 220)
    pitch: tuple[int, int] = (25, 75)
    valid_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0

    def key(self) -> str:
        """A short hash naming this configuration's cache file."""
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def voices(config: DigitSetConfig) -> list[tuple[str, str]]:
    """(variant, voice name) pairs: variants in a seeded order, each reused with further dialects when n > variants."""
    variants = engine().variants()
    random.Random(config.seed).shuffle(variants)
    out = []
    for i in range(config.n_voices):
        variant = variants[i % len(variants)]
        dialect = DIALECTS[(i + i // len(variants) * 3) % len(DIALECTS)]
        out.append((variant, f"{dialect}+{variant}"))
    return out


def variant_split(variants: list[str], config: DigitSetConfig) -> dict[str, str]:
    """Assign each distinct variant to train/valid/test (the last ones in the seeded order go to test, then valid)."""
    unique = list(dict.fromkeys(variants))
    n_test = max(1, math.ceil(config.test_fraction * len(unique))) if config.test_fraction > 0 else 0
    n_valid = math.ceil(config.valid_fraction * len(unique)) if config.valid_fraction > 0 else 0
    if len(unique) - n_test - n_valid < 1:
        raise ValueError(f"{len(unique)} voice variants cannot fill train, valid and test; raise n_voices")
    split = {}
    for i, v in enumerate(unique):
        split[v] = "test" if i >= len(unique) - n_test else "valid" if i >= len(unique) - n_test - n_valid else "train"
    return split


def synthesize(config: DigitSetConfig) -> dict[str, np.ndarray]:
    """Speak every digit with every voice ``takes`` times; arrays of waves (int16), labels, voice ids and split ids."""
    eng = engine()
    pairs = voices(config)
    split = variant_split([v for v, _ in pairs], config)
    rng = random.Random(config.seed + 1)
    waves, labels, voice_ids, split_ids = [], [], [], []
    for vi, (variant, name) in enumerate(pairs):
        for d, word in enumerate(DIGITS):
            for _ in range(config.takes):
                rate = rng.randint(*config.rate)
                pitch = rng.randint(*config.pitch)
                raw = eng.synth(word, name, rate=rate, pitch=pitch)
                clip = prepare_clip(raw, eng.sample_rate)
                waves.append((clip.numpy() * 32767).round().astype(np.int16))
                labels.append(d)
                voice_ids.append(vi)
                split_ids.append(SPLITS.index(split[variant]))
    return {
        "waves": np.stack(waves), "labels": np.asarray(labels, np.int64), "voice": np.asarray(voice_ids, np.int64),
        "split": np.asarray(split_ids, np.int64), "voice_names": np.asarray([n for _, n in pairs]),
    }


def load_digits(config: DigitSetConfig | None = None, split: str = "train", verbose: bool = False) -> ClipSet:
    """The spoken-digit clips of one split (``train``, ``valid``, ``test`` or ``all``), synthesised on first use."""
    config = config or DigitSetConfig()
    if split not in SPLITS + ("all",):
        raise ValueError(f"unknown split {split!r}; use one of train, valid, test, all")
    path = cache_dir() / f"digits_{config.key()}.npz"
    if not path.exists():
        t0 = time.perf_counter()
        arrays = synthesize(config)
        save_npz_atomic(path, **arrays)
        if verbose:
            print(f"synthesised {len(arrays['labels'])} clips in {time.perf_counter() - t0:.1f} s -> {path}")
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    keep = np.ones(len(arrays["labels"]), bool) if split == "all" else arrays["split"] == SPLITS.index(split)
    names = [str(n) for n in arrays["voice_names"]]
    waves = torch.from_numpy(arrays["waves"][keep].astype(np.float32) / 32767)
    assert waves.shape[1] == CLIP_SAMPLES
    return ClipSet(waves, torch.from_numpy(arrays["labels"][keep]), list(DIGITS), [names[i] for i in arrays["voice"][keep]])
