"""Vocoders: the networks' shapes and alignment, one training step of each kind through the framework, a vocoder run
used by ``--vocoder RUN`` (and refused for other features), ``train-vocoder`` built from the Verb, and
``--vocoder griffin-lim`` (and the default without a fitting shipped vocoder) equal to the Griffin-Lim path."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from polydiff.domains.audio.data import sampling_spec
from polydiff.domains.audio.features import GriffinLimInverter, LogMel, MelConfig
from polydiff.domains.audio.model import data_source
from polydiff.domains.audio.plugin import make_domain
from polydiff.domains.audio.vocoder_net import DiffWave, MelGenerator, MelToLinear, upsample_factors, upsample_frames
from polydiff.plugins.errors import ConfigError, OptionError
from polydiff.plugins.runs import Run, build_denoiser, resolve_config, train

TINY_TRAIN = {"steps": 1, "batch_size": 4, "log_every": 1, "ckpt_every": 1, "progress": False, "warmup": 0}
TINY_VOCODERS = {"mel2linear": {"kind": "mel2linear", "channels": 16, "layers": 2, "mel_noise": 0.2},
                 "hifigan": {"kind": "hifigan", "channels": 16},
                 "diffwave": {"kind": "diffwave", "channels": 8, "layers": 4, "cycle": 2}}


@pytest.mark.parametrize("net", [DiffWave(64, 128, channels=8, layers=4, cycle=2), MelGenerator(64, 128, channels=16),
                                 MelToLinear(MelConfig.for_rate(8000), -9.0, 3.8, channels=16, layers=2, gl_iters=2)])
def test_vocoder_forward_shapes(net):
    for samples, frames in ((8000, 64), (4096, 32)):
        out = net(torch.randn(2, 1, samples), torch.zeros(2), {"mel": torch.randn(2, 64, frames)})
        assert out.shape == (2, 1, samples)
    with pytest.raises(ValueError, match="mel"):
        net(torch.randn(2, 1, 4096), torch.zeros(2), None)
    with pytest.raises(ValueError, match="do not cover"):
        net(torch.randn(2, 1, 4096), torch.zeros(2), {"mel": torch.randn(2, 64, 8)})


def test_mel_to_linear_starts_at_the_pseudo_inverse_and_keeps_the_mel():
    cfg = MelConfig.for_rate(8000)
    net = MelToLinear(cfg, 0.0, 1.0, channels=8, layers=1)
    wave = torch.sin(torch.arange(8000) * 0.2)[None] * torch.hann_window(8000)[None]
    mel = LogMel(cfg)(wave)
    with torch.no_grad():
        again = net.mel_of_power(net.log_power(mel))
    loud = mel > mel.max() - 8
    assert float((again - mel)[loud].abs().mean()) < 0.5


def test_frame_i_sits_on_sample_i_hop():
    frames = torch.arange(4.0)[None, None]
    up = upsample_frames(frames, 4, 16)[0, 0]
    assert up[::4].tolist() == [0, 1, 2, 3] and up[2] == 0.5 and up[-1] == 3
    assert upsample_factors(128) == [8, 4, 4] and upsample_factors(256) == [8, 8, 4]


@pytest.fixture(scope="module")
def vocoders(convention, tmp_path_factory):
    """A one-step vocoder run of each kind, trained through polydiff's ``train`` on the convention folder."""
    domain, out = make_domain(), {}
    for kind, net in TINY_VOCODERS.items():
        preset = "mel2linear" if kind == "mel2linear" else "hifigan"
        cfg = resolve_config(domain, preset, {**data_source(str(convention)), "network": net, "train": TINY_TRAIN})
        cfg["data"]["valid_takes"] = 1
        out[kind] = train(domain, cfg, tmp_path_factory.mktemp(kind))
    return out


def test_one_training_step_of_each_kind(vocoders):
    for kind, run in vocoders.items():
        rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
        assert len(rows) == 1 and rows[0]["step"] == 1 and rows[0]["loss"] > 0, kind
        assert run.config["data"]["target"] == "waves" and run.config["network"]["kind"] == kind
        batch = run.domain.collate([run.domain.build_dataset(run.config["data"], "train")[i] for i in range(3)])
        frames = run.config["data"]["segment_frames"]
        assert batch.x0.shape == (3, 1, frames * 128) and batch.cond["mel"].shape == (3, 64, frames)


def test_a_vocoder_run_samples_and_scores_its_floor(vocoders, tmp_path):
    run = vocoders["hifigan"]
    out = run.sample(2, label="four", seed=0)
    assert out["waves"].shape == (2, 8000) and out["labels"] == [4, 4]
    assert all(name.startswith("4_") for name in out.meta["resynthesised"])
    with pytest.raises(OptionError, match="--vocoder: a vocoder run re-synthesises"):
        run.sample(1, vocoder="griffin-lim")
    metrics = run.evaluate(20, classifier_epochs=1, gl_iters=2)
    for key in ("vocoder_floor_accuracy", "vocoder_floor_fid", "floor_fid", "real_fid", "vocoder_floor_log_mel_l1"):
        assert key in metrics


def mel_run(domain, cfg):
    torch.manual_seed(0)
    return Run(domain, cfg, build_denoiser(domain, cfg).eval(), cfg.get("path", "mel"), torch.device("cpu"))


def test_vocoder_option_uses_a_vocoder_run_of_the_same_features(vocoders, convention):
    domain = make_domain()
    net = {"layout": "1d", "base": 8, "mults": [1, 2], "num_res": 1, "attn_levels": [], "pos_channels": 8}
    cfg = resolve_config(domain, "fsdd", {**data_source(str(convention)), "network": net,
                                          "sample": {"steps": 1, "sampler": "euler", "gl_iters": 2}})
    cfg["data"]["valid_takes"] = 1
    run = mel_run(domain, cfg)
    out = run.sample(2, label="one", seed=0, vocoder=str(vocoders["diffwave"].path))
    assert out["waves"].shape == (2, 8000) and out.meta["vocoder"] == str(vocoders["diffwave"].path)
    espeak = mel_run(domain, resolve_config(domain, "quick", {"network": net}))
    with pytest.raises(OptionError, match="--vocoder: .* 8000 Hz"):
        espeak.sample(1, vocoder=str(vocoders["hifigan"].path))
    with pytest.raises(OptionError, match="neither 'griffin-lim' nor a vocoder run"):
        run.sample(1, vocoder="nope")
    with pytest.raises(ConfigError, match="does not fit data.target"):
        domain.build_network(resolve_config(domain, "quick", {"data": {"target": "waves"}}))


def test_griffin_lim_vocoder_is_the_old_path(tmp_path):
    domain = make_domain()
    cfg = resolve_config(domain, "quick", {"data": {"n_voices": 5, "valid_fraction": 0.0, "test_fraction": 0.2},
                                           "network": {"base": 4, "attn_levels": []},
                                           "sample": {"steps": 1, "sampler": "euler", "gl_iters": 3}})
    run = mel_run(domain, cfg)
    chosen = run.sample(2, label="all", seed=0, vocoder="griffin-lim")
    default = run.sample(2, label="all", seed=0)
    direct = GriffinLimInverter(sampling_spec(cfg).normalizer.config, n_iter=3)(chosen["log_mels"])
    assert torch.equal(chosen["waves"], direct) and torch.equal(default["waves"], direct)
    assert chosen.meta["vocoder"] == default.meta["vocoder"] == "griffin-lim" and chosen.meta["gl_iters"] == 3


def test_train_vocoder_is_a_verb_of_the_contract(convention, tmp_path, monkeypatch):
    from polydiff.cli.app import build_app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.json").write_text(json.dumps({"network": TINY_VOCODERS["hifigan"], "train": TINY_TRAIN,
                                                    "data": {"valid_takes": 1}}))
    res = CliRunner().invoke(build_app(), ["audio", "train-vocoder", "--data", str(convention), "--config", "tiny.json",
                                           "--out", "voc", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "voc" / "config.json").read_text())
    assert cfg["preset"] == "mel2linear" and cfg["data"]["target"] == "waves" and cfg["network"]["kind"] == "hifigan"
    (tmp_path / "short.json").write_text(json.dumps({"train": TINY_TRAIN, "data": {"valid_takes": 1}}))
    res = CliRunner().invoke(build_app(), ["audio", "train-vocoder", "--preset", "quick", "--out", "v2", "--device",
                                           "cpu", "--data", str(convention), "--config", "short.json"])
    assert res.exit_code == 2 and "does not fit data.target" in res.output, res.output


def test_shipped_vocoder_beats_griffin_lim_on_real_test_takes():
    from polydiff.domains.audio import fsdd
    from polydiff.domains.audio.clips import load_audio, prepare_clip
    from polydiff.domains.audio.vocoding import SHIPPED_VOCODER, GriffinLim, load_vocoder

    folder = next((f for f in fsdd.default_folders() if fsdd.recordings(f)), None)
    if folder is None:
        pytest.skip("the FSDD folder (../shared/data/fsdd) is not here")
    if not (SHIPPED_VOCODER / "config.json").is_file():
        pytest.fail("the shipped vocoder is not in the package")
    cfg = MelConfig.for_rate(8000)
    takes = [r for r in fsdd.recordings(folder) if r.take == 0 and r.speaker in ("theo", "lucas")]
    waves = torch.stack([prepare_clip(*load_audio(r.path), 8000, target=8000) for r in takes])
    lm = LogMel(cfg)
    mel = lm(waves)
    learned = load_vocoder(make_domain(), SHIPPED_VOCODER, "cpu", cfg)
    err = {name: float((lm(voc(mel)) - mel).abs().mean()) for name, voc in
           (("learned", learned), ("griffin-lim", GriffinLim(cfg, 32)))}
    assert err["learned"] < 0.8 * err["griffin-lim"], err
