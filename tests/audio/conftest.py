"""Fixtures of the audio tests: a tiny spoken-digit set (5 voices x 10 digits) synthesised once per session, and a
small folder in FSDD's naming convention."""
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from polydiff.domains.audio.digits import DigitSetConfig, load_digits

TINY = DigitSetConfig(n_voices=5, takes=1, valid_fraction=0.0, test_fraction=0.2, seed=0)


@pytest.fixture(scope="session")
def tiny_train():
    return load_digits(TINY, "train")


@pytest.fixture(scope="session")
def tiny_test():
    return load_digits(TINY, "test")


SPEAKERS = ("ann", "bob")
TAKES = 7


def write_convention_folder(root: Path, speakers=SPEAKERS, takes: int = TAKES) -> Path:
    """``root/recordings/{digit}_{speaker}_{take}.wav``: 0.3 s tone bursts at 8 kHz starting 0.05 s into 0.9 s of
    silence (off-centre, as a recording with a late start), a different pitch per digit."""
    folder = root / "recordings"
    folder.mkdir(parents=True)
    t = np.arange(int(0.3 * 8000)) / 8000
    for digit in range(10):
        for speaker in speakers:
            for take in range(takes):
                wave = np.zeros(int(0.9 * 8000), np.float32)
                burst = 0.5 * np.sin(2 * math.pi * (200 + 60 * digit + 7 * take) * t) * np.hanning(len(t))
                wave[400:400 + len(t)] = burst
                sf.write(folder / f"{digit}_{speaker}_{take}.wav", wave, 8000)
    return root


@pytest.fixture(scope="session")
def convention(tmp_path_factory) -> Path:
    return write_convention_folder(tmp_path_factory.mktemp("fsdd_like"))


