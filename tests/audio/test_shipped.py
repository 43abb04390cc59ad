"""The shipped spoken-digit models work out of the box: the default (real speech, FSDD at 8 kHz) loads without --run,
the espeak-voiced one by its folder, and each puts the requested word near the middle of the clip, where the data put
it. Energy centres over 50 clips: espeak data std 0.7 frames (28.3..32.7), its model 2.2 (24.9..34.1), the 10000-step
model before the LR decay 3.0 (23.2..37.8), one without position channels 11.0 (11.5..50.8); FSDD test takes median
30.4 of 64 frames, std 1.6, the FSDD model std 2.0 (22.5..33.2)."""
from __future__ import annotations

import pytest
import torch

from polydiff.domains.audio.features import LogMel


def energy_centres(log_mels: torch.Tensor, floor: float) -> torch.Tensor:
    """Energy-weighted mean frame of each log-mel [N, n_mels, frames] (energy above the log floor)."""
    energy = (log_mels - floor).clamp(min=0).sum(1)
    frames = torch.arange(energy.shape[-1], dtype=energy.dtype)
    return (energy * frames).sum(-1) / energy.sum(-1)


@pytest.fixture(scope="module")
def shipped(load_shipped):
    return load_shipped("audio")


def test_the_default_is_the_real_speech_model_and_centres_its_words(shipped):
    assert shipped.path.name == "fsdd" and shipped.config["data"]["source"] == "fsdd"
    out = shipped.sample(10, label="all", seed=0)
    assert out["labels"] == list(range(10)) and out["waves"].shape == (10, 8000)
    assert bool((out["waves"].abs().amax(-1) > 1e-3).all())
    floor = float(torch.tensor(shipped.config["fitted"]["normalizer"]["mel"]["floor"]).log())
    generated = energy_centres(out["log_mels"], floor)
    middle = out["log_mels"].shape[-1] / 2  # prepared clips are centred: FSDD's test takes have median 30.4 of 64
    assert float((generated - middle).abs().max()) < 8, generated


def test_shipped_espeak_digits_are_centred_like_the_data(shipped, tiny_train):
    import polydiff

    espeak = polydiff.load("audio", shipped.path.with_name("digits"))
    out = espeak.sample(10, label="all", seed=0)
    assert out["labels"] == list(range(10)) and out["waves"].shape == (10, 16000)
    assert bool((out["waves"].abs().amax(-1) > 1e-3).all())
    floor = float(torch.tensor(espeak.config["fitted"]["normalizer"]["mel"]["floor"]).log())
    real = energy_centres(LogMel()(tiny_train.waves * (0.9 / tiny_train.waves.abs().amax(-1, keepdim=True))), floor)
    generated = energy_centres(out["log_mels"], floor)
    assert float((generated - real.median()).abs().max()) < 8, (generated, real.median())
