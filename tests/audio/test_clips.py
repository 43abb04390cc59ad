"""Waveform helpers and the folder loader on real files written with soundfile."""
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from polydiff.domains.audio.clips import (AudioReadError, fit_length, load_audio, prepare_clip, resample,
                                          trim_silence, write_wav)
from polydiff.domains.audio.folder import load_folder


def tone(freq: float, seconds: float, sr: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * math.pi * freq * t)).astype(np.float32)


def test_fit_length_centres_and_crops_exactly():
    w = torch.arange(1, 5, dtype=torch.float32)
    assert fit_length(w, 8).tolist() == [0, 0, 1, 2, 3, 4, 0, 0]
    assert fit_length(torch.arange(10.0), 4).tolist() == [3, 4, 5, 6]


def test_trim_silence_keeps_the_loud_part():
    w = torch.zeros(4096)
    w[1024:2048] = 0.5
    out = trim_silence(w, frame=256)
    assert out.numel() == 1024 and torch.all(out == 0.5)
    assert trim_silence(torch.zeros(1000)).numel() == 0


def test_resample_keeps_the_pitch():
    w = resample(torch.from_numpy(tone(440.0, 1.0, 22050)), 22050, 16000)
    assert w.numel() == 16000
    spectrum = torch.fft.rfft(w).abs()
    assert abs(int(spectrum.argmax()) - 440) <= 1


def test_prepare_clip_rejects_silence():
    with pytest.raises(AudioReadError, match="silent"):
        prepare_clip(np.zeros(8000, np.float32), 16000)


@pytest.mark.parametrize("ext,fmt", [(".wav", "WAV"), (".flac", "FLAC"), (".ogg", "OGG")])
def test_load_audio_reads_each_format(tmp_path, ext, fmt):
    path = tmp_path / f"a{ext}"
    sf.write(path, tone(300, 0.5, 22050), 22050, format=fmt)
    wave, sr = load_audio(path)
    assert sr == 22050 and abs(wave.numel() - 11025) < 2000


def test_unreadable_file_is_one_clear_line(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"this is not audio")
    with pytest.raises(AudioReadError) as info:
        load_audio(bad)
    assert "broken.wav" in str(info.value) and "\n" not in str(info.value)


def test_folder_labels_from_parent_and_skips_bad_files(tmp_path, capsys):
    for name, freq in (("low", 200), ("high", 2000)):
        (tmp_path / name).mkdir()
        for i in range(2):
            sf.write(tmp_path / name / f"{i}.wav", tone(freq + 10 * i, 0.4, 44100), 44100)
    sf.write(tmp_path / "loose.flac", tone(500, 1.5, 16000), 16000)
    sf.write(tmp_path / "low" / "quiet.wav", np.zeros(4000, np.float32), 16000)
    (tmp_path / "high" / "junk.ogg").write_bytes(b"garbage")
    clips, skipped = load_folder(tmp_path)
    assert clips.class_names == ["high", "low"]
    assert sorted(clips.labels.tolist()) == [-1, 0, 0, 1, 1]
    assert clips.waves.shape == (5, 16000)
    assert len(skipped) == 2 and any("quiet.wav" in s for s in skipped) and any("junk.ogg" in s for s in skipped)
    assert "quiet.wav" in capsys.readouterr().out


def test_empty_folder_and_missing_folder_are_clear(tmp_path):
    with pytest.raises(ValueError, match="no .wav"):
        load_folder(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        load_folder(tmp_path / "nope")


def test_write_wav_round_trip(tmp_path):
    w = torch.from_numpy(tone(1000, 1.0, 16000))
    path = write_wav(tmp_path / "x.wav", w)
    back, sr = load_audio(path)
    assert sr == 16000 and torch.allclose(back, w, atol=1 / 32767 + 1e-6)
