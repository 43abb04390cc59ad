"""The audio domain's ``envelope`` control: the same envelope from normalised log-mels, raw log-mels or any level
of the clip; read from a WAV for ``sample --control``; bad files refused naming the option; and the mel U-Net's
control branch is its U-Net's encoder half."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from polydiff.domains.audio.control import envelope, envelope_control, read_envelopes
from polydiff.domains.audio.features import LogMel, MelConfig
from polydiff.domains.audio.network import MelUNet, NetConfig
from polydiff.plugins.domain import Batch
from polydiff.plugins.errors import OptionError
from polydiff.plugins.manager import get_manager

RATE = 16000


def _syllables(level: float = 0.5) -> np.ndarray:
    """Two bursts of a buzz (a 110 Hz pulse train's harmonics plus noise, like a voiced vowel) at 0.15-0.35 s and
    0.55-0.75 s in 1 s: a known two-syllable rhythm."""
    t = np.arange(RATE) / RATE
    gate = ((t > 0.15) & (t < 0.35)) | ((t > 0.55) & (t < 0.75))
    buzz = sum(np.sin(2 * np.pi * 110 * k * t) / k for k in range(1, 40)) + 0.3 * np.random.default_rng(0).normal(
        size=t.size)
    return (level * buzz / np.abs(buzz).max() * gate).astype(np.float32)


def test_the_envelope_ignores_the_normaliser_and_marks_the_syllables():
    cfg = MelConfig()
    mels = LogMel(cfg)(torch.from_numpy(np.stack([_syllables(0.5), _syllables(0.2)])))
    env = envelope(mels)
    assert env.shape == (2, 1, cfg.frames) and float(env.min()) == 0.0 and float(env.max()) == 1.0
    torch.testing.assert_close(envelope((mels - -9.0) / 4.0), env, atol=1e-5, rtol=0)  # normalised: the same
    frame = lambda s: int(s * RATE / cfg.hop)  # noqa: E731
    on, gap, off = env[0, 0, frame(0.25)], env[0, 0, frame(0.45)], env[0, 0, frame(0.9)]
    assert on > 0.9 and gap < 0.5 and off < 0.1
    batch = Batch(((mels - -9.0) / 4.0)[:, None])
    torch.testing.assert_close(envelope_control(batch, torch.Generator()), env, atol=1e-5, rtol=0)


def test_sample_control_reads_a_clip_a_folder_or_an_array_and_refuses_other_files(tmp_path, load_shipped):
    config = load_shipped("audio").config
    sf.write(tmp_path / "a.wav", _syllables(), RATE)
    sf.write(tmp_path / "b.wav", _syllables(0.2)[::-1].copy(), RATE)
    one = read_envelopes(tmp_path / "a.wav", config)
    assert one.shape == (1, 1, 64)
    both = read_envelopes(tmp_path, config)  # before quiet.wav joins the folder
    assert both.shape == (2, 1, 64)
    torch.testing.assert_close(both[0], one[0])
    quiet = tmp_path / "quiet.wav"  # a twenty-fifth of the level: peak-normalised as training clips are
    sf.write(quiet, _syllables(0.02), RATE)
    torch.testing.assert_close(read_envelopes(quiet, config), one, atol=1e-3, rtol=0)
    np.save(tmp_path / "env.npy", both.numpy())
    torch.testing.assert_close(read_envelopes(tmp_path / "env.npy", config), both)
    (tmp_path / "notes.txt").write_text("not audio")
    with pytest.raises(OptionError, match="--control"):
        read_envelopes(tmp_path / "notes.txt", config)
    sf.write(tmp_path / "silent.wav", np.zeros(RATE, dtype=np.float32), RATE)
    with pytest.raises(OptionError, match="silent"):
        read_envelopes(tmp_path / "silent.wav", config)


def test_the_domain_declares_the_envelope_and_the_branch_is_the_encoder_half():
    assert "envelope" in get_manager().domain("audio").controls
    net = MelUNet(NetConfig(base=16, mults=(1, 2), attn_levels=(), layout="1d", n_mels=8))
    branch = net.control_branch()
    assert isinstance(branch, MelUNet) and len(branch.unet.up) == 0 and len(net.unet.up) > 0
    assert branch.feature_channels() == net.feature_channels()
