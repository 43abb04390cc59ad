"""The Free Spoken Digit Dataset (or any folder named ``{digit}_{speaker}_{take}.wav``) as fixed-length clips.

FSDD (Jakobovski/free-spoken-digit-dataset, CC BY-SA 4.0) holds 8 kHz recordings of 6 speakers, 50 takes of each digit.
Its official split is by take: takes 0-4 of every (digit, speaker) are the test set, the rest training; a validation
part is held out of the training takes (the next ``valid_takes`` takes) for choosing settings. The folder is never
downloaded: it is given (``--data PATH``), named by ``$POLYDIFF_FSDD``, or found at ``../shared/data/fsdd`` beside the
working directory or the checkout. Clips are prepared like the espeak set (resampled, silence trimmed, centred, peak
normalised) and cached as int16 npz keyed by the files and the settings.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from polydiff.plugins.errors import UsageError

from .cache import cache_dir, save_npz_atomic
from .clips import load_audio, prepare_clip
from .clipset import ClipSet
from .digits import DIGITS

ENV = "POLYDIFF_FSDD"
NAME = re.compile(r"^(\d)_([^_]+)_(\d+)\.wav$", re.IGNORECASE)
TEST_TAKES = 5
"""Takes 0..4 of every (digit, speaker) form FSDD's official test set."""
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Recording:
    """One file of the convention: its digit, speaker and take."""

    path: Path
    digit: int
    speaker: str
    take: int


def parse_name(name: str) -> tuple[int, str, int] | None:
    """``7_theo_12.wav`` -> (7, "theo", 12); None for a name outside the convention."""
    m = NAME.match(name)
    return (int(m.group(1)), m.group(2), int(m.group(3))) if m else None


def recordings_folder(folder: Path) -> Path:
    """Where the WAVs are: ``folder/recordings`` (FSDD's layout) if present, else ``folder`` itself."""
    return folder / "recordings" if (folder / "recordings").is_dir() else folder


def recordings(folder: str | Path) -> list[Recording]:
    """The files of ``folder`` (or its ``recordings/``) that follow the naming convention, sorted by name."""
    root = recordings_folder(Path(folder))
    out = []
    for p in sorted(root.glob("*")) if root.is_dir() else []:
        parsed = parse_name(p.name)
        if parsed is not None and p.is_file():
            out.append(Recording(p, *parsed))
    return out


def follows_convention(folder: str | Path) -> bool:
    """Whether ``folder`` holds WAVs and every one of them is named ``{digit}_{speaker}_{take}.wav``."""
    root = recordings_folder(Path(folder))
    wavs = [p for p in root.glob("*.wav")] if root.is_dir() else []
    return bool(wavs) and all(parse_name(p.name) is not None for p in wavs)


def default_folders() -> list[Path]:
    """``../shared/data/fsdd`` beside the working directory and beside the checkout holding this package."""
    checkout = Path(__file__).resolve().parents[2]
    return list(dict.fromkeys(p.resolve() for p in (Path.cwd() / ".." / "shared" / "data" / "fsdd",
                                                       checkout / ".." / "shared" / "data" / "fsdd")))


def locate(path: str | Path | None = None) -> Path:
    """The FSDD folder: ``path`` if given, else ``$POLYDIFF_FSDD``, else the first default folder holding recordings.

    A folder without any ``{digit}_{speaker}_{take}.wav`` is a one-line UsageError saying where to put the data."""
    if path:
        candidates, origin = [Path(path)], "the given folder"
    elif os.environ.get(ENV):
        candidates, origin = [Path(os.environ[ENV])], f"${ENV}"
    else:
        candidates, origin = default_folders(), "the default places"
    for folder in candidates:
        if recordings(folder):
            return folder
    looked = ", ".join(str(c) for c in candidates)
    raise UsageError(f"no FSDD recordings ({{digit}}_{{speaker}}_{{take}}.wav) in {origin} ({looked}): put the Free "
                     f"Spoken Digit Dataset's recordings/ folder there or set {ENV}=FOLDER (train also takes --data "
                     "FOLDER)")


def split_of(take: int, valid_takes: int) -> str:
    """FSDD's split of a take: ``test`` for takes 0-4, ``valid`` for the next ``valid_takes``, else ``train``."""
    if take < TEST_TAKES:
        return "test"
    return "valid" if take < TEST_TAKES + valid_takes else "train"


def _key(files: list[Recording], sample_rate: int, n: int) -> str:
    h = hashlib.sha1(json.dumps([sample_rate, n]).encode())
    for r in files:
        h.update(f"{r.path.name}:{r.path.stat().st_size}".encode())
    return h.hexdigest()[:12]


def load_all(folder: str | Path, sample_rate: int, n: int) -> tuple[ClipSet, np.ndarray]:
    """Every recording of the folder as clips of ``n`` samples at ``sample_rate`` (cached), with their takes; each
    clip's source name is its file stem (``7_theo_12``), which names its speaker and take."""
    files = recordings(folder)
    if not files:
        raise UsageError(f"{folder}: no {{digit}}_{{speaker}}_{{take}}.wav recordings")
    path = cache_dir() / f"fsdd_{_key(files, sample_rate, n)}.npz"
    if not path.exists():
        waves = []
        for r in files:
            wave, sr = load_audio(r.path)
            waves.append((prepare_clip(wave, sr, n, target=sample_rate).numpy() * 32767).round().astype(np.int16))
        save_npz_atomic(path, waves=np.stack(waves), labels=np.asarray([r.digit for r in files], np.int64),
                        takes=np.asarray([r.take for r in files], np.int64),
                        names=np.asarray([r.path.stem for r in files]))
    with np.load(path) as f:
        waves = torch.from_numpy(f["waves"].astype(np.float32) / 32767)
        clips = ClipSet(waves, torch.from_numpy(f["labels"]), list(DIGITS), [str(s) for s in f["names"]])
        return clips, f["takes"]


def load_fsdd(folder: str | Path | None, sample_rate: int, n: int, valid_takes: int = 5) -> dict[str, ClipSet]:
    """The ``train``, ``valid`` and ``test`` clips of the folder (found by ``locate``), split by take."""
    clips, takes = load_all(locate(folder), sample_rate, n)
    parts = np.asarray([split_of(int(t), valid_takes) for t in takes])
    return {s: clips.subset(np.flatnonzero(parts == s).tolist()) for s in SPLITS}
