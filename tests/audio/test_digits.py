"""The espeak-ng spoken-digit set: real synthesis, voice-disjoint splits, cache reuse, clear errors."""
import sys

import numpy as np
import pytest
import torch

from polydiff.domains.audio import digits as digits_mod
from polydiff.domains.audio.digits import DIGITS, DigitSetConfig, load_digits, variant_split, voices
from polydiff.domains.audio.espeak import Espeak, EspeakError, engine

from .conftest import TINY


def test_espeak_speaks_a_digit_at_22050():
    eng = engine()
    wave = eng.synth("seven", "en-us+f3", rate=160, pitch=50)
    assert eng.sample_rate == 22050
    assert 0.2 * 22050 < wave.size < 1.5 * 22050
    assert wave.dtype == np.float32 and 0.05 < np.abs(wave).max() <= 1.0
    slower = eng.synth("seven", "en-us+f3", rate=90, pitch=50)
    assert slower.size > wave.size * 1.3


def test_espeak_ships_many_voice_variants():
    assert {"f3", "m2", "klatt"} <= set(engine().variants())
    assert len(engine().variants()) >= 50


def test_unknown_voice_is_one_clear_error():
    with pytest.raises(EspeakError, match="no voice 'xx-nope'"):
        engine().synth("one", "xx-nope")


def test_missing_espeak_package_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    with pytest.raises(EspeakError, match="pip install espeakng-loader"):
        Espeak()


def test_split_is_by_voice_variant_and_covers_all_digits(tiny_train, tiny_test):
    assert len(tiny_train) == 40 and len(tiny_test) == 10
    variant = lambda s: s.split("+")[1]
    assert not {variant(s) for s in tiny_train.speakers} & {variant(s) for s in tiny_test.speakers}
    assert sorted(tiny_test.labels.tolist()) == list(range(10))
    assert tiny_train.class_names == list(DIGITS)
    assert tiny_train.waves.shape == (40, 16000)
    peaks = tiny_train.waves.abs().amax(1)
    assert torch.allclose(peaks, torch.full_like(peaks, 0.9), atol=1e-3)


def test_variant_split_never_shares_variants_across_dialects():
    cfg = DigitSetConfig(n_voices=300, valid_fraction=0.1, test_fraction=0.2)
    pairs = voices(cfg)
    split = variant_split([v for v, _ in pairs], cfg)
    assert len({name for _, name in pairs}) == 300
    by_split = {}
    for v, _ in pairs:
        by_split.setdefault(split[v], set()).add(v)
    assert set(by_split) == {"train", "valid", "test"}
    assert not (by_split["train"] & by_split["test"]) and not (by_split["train"] & by_split["valid"])


def test_cached_set_is_reused_without_synthesis(tiny_train, monkeypatch):
    def boom(config):
        raise AssertionError("synthesised again")

    monkeypatch.setattr(digits_mod, "synthesize", boom)
    again = load_digits(TINY, "train")
    assert torch.equal(again.waves, tiny_train.waves)


def test_bad_split_and_too_few_voices_are_clear():
    with pytest.raises(ValueError, match="unknown split"):
        load_digits(TINY, "dev")
    with pytest.raises(ValueError, match="raise n_voices"):
        variant_split(["a", "b"], DigitSetConfig(n_voices=2, valid_fraction=0.3, test_fraction=0.3))
