"""The digit classifier (save/load, a short real training run) and the WAV + PNG writers."""
import pytest
import soundfile as sf
import torch

from polydiff.domains.audio.classifier import DigitClassifier, predict, train_classifier
from polydiff.domains.audio.features import LogMel, fit_normalizer
from polydiff.domains.audio.previews import save_clips


def test_classifier_save_load_is_exact(tmp_path):
    torch.manual_seed(0)
    model = DigitClassifier(width=8).eval()
    x = torch.randn(3, 64, 64)
    model.save(tmp_path)
    back = DigitClassifier.load(tmp_path)
    p1, f1 = predict(model, x)
    p2, f2 = predict(back, x)
    assert torch.equal(p1, p2) and torch.equal(f1, f2)
    assert p1.shape == (3, 10) and f1.shape == (3, 128)
    assert torch.allclose(p1.sum(1), torch.ones(3))


def test_classifier_load_missing_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="classifier.json"):
        DigitClassifier.load(tmp_path)


@pytest.mark.slow
def test_classifier_learns_the_training_digits(tiny_train):
    mels = LogMel()(tiny_train.waves)
    x = fit_normalizer(mels).normalize(mels)
    model = train_classifier(x, tiny_train.labels, epochs=40, batch=10, width=8, lr=3e-3, seed=0)
    probs, _ = predict(model, x)
    assert (probs.argmax(1) == tiny_train.labels).float().mean() > 0.8


def test_save_clips_writes_wavs_and_one_png(tmp_path, tiny_test):
    waves = tiny_test.waves[:3]
    paths = save_clips(tmp_path, waves, LogMel()(waves), tiny_test.labels[:3].tolist(), tiny_test.class_names)
    wavs = [p for p in paths if p.suffix == ".wav"]
    assert len(wavs) == 3 and (tmp_path / "spectrograms.png").stat().st_size > 1000
    name = tiny_test.class_names[int(tiny_test.labels[0])]
    assert wavs[0].name == f"sample_000_{name}.wav"
    data, sr = sf.read(wavs[0])
    assert sr == 16000 and data.shape == (16000,)
