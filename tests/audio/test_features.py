"""Log-mel analysis, its normalisation and the Griffin-Lim round trip on real synthesised speech."""
import pytest
import torch

from polydiff.domains.audio.features import GriffinLimInverter, LogMel, MelConfig, MelNormalizer, fit_normalizer, mels_of


def test_log_mel_shape_is_unet_friendly(tiny_train):
    m = LogMel()(tiny_train.waves[:3])
    assert m.shape == (3, 64, 64)
    assert float(m.min()) >= torch.tensor(1e-5).log() - 1e-5


def test_log_mel_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[B, samples\]"):
        LogMel()(torch.zeros(2, 1, 16000))


def test_griffin_lim_round_trip_is_close(tiny_test):
    lm = LogMel()
    mel = lm(tiny_test.waves[:2])
    wave = GriffinLimInverter(n_iter=16)(mel)
    assert wave.shape == (2, 16000)
    err = (lm(wave) - mel).abs().mean()
    err_one = (lm(GriffinLimInverter(n_iter=1)(mel)) - mel).abs().mean()
    assert err < 0.35, err
    assert err < err_one
    again = GriffinLimInverter(n_iter=16)(mel)
    assert torch.equal(wave, again)


def test_inverter_checks_mel_count():
    with pytest.raises(ValueError, match="64"):
        GriffinLimInverter()(torch.zeros(1, 80, 64))


def test_normalizer_json_round_trip(tmp_path, tiny_train):
    mels = mels_of(tiny_train.waves)
    norm = fit_normalizer(mels)
    z = norm.normalize(mels)
    assert abs(float(z.mean())) < 1e-4 and abs(float(z.std()) - 1) < 1e-4
    norm.save(tmp_path / "n.json")
    back = MelNormalizer.load(tmp_path / "n.json")
    assert back == norm and back.config == MelConfig()
    assert torch.allclose(back.denormalize(z), mels, atol=1e-4)
