"""Fixtures of the audio tests: a tiny spoken-digit set (5 voices x 10 digits) synthesised once per session."""
import pytest

from polydiff.domains.audio.digits import DigitSetConfig, load_digits

TINY = DigitSetConfig(n_voices=5, takes=1, valid_fraction=0.0, test_fraction=0.2, seed=0)


@pytest.fixture(scope="session")
def tiny_train():
    return load_digits(TINY, "train")


@pytest.fixture(scope="session")
def tiny_test():
    return load_digits(TINY, "test")
