"""FSDD as a data source: names give labels, the official split by take, clips resampled, padded and centred, a missing
folder is one line (exit 2), and ``--data fsdd`` / a folder in the naming convention trains through the framework.

Most tests use a small folder written here in FSDD's convention (8 kHz tone bursts, off-centre); the split test also
reads the real folder's names when ``../shared/data/fsdd`` is present (skipped otherwise)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from polydiff.domains.audio import fsdd
from polydiff.domains.audio.data import prepare
from polydiff.domains.audio.model import data_source
from polydiff.domains.audio.plugin import make_domain
from polydiff.domains.audio.vocoding import SHIPPED_VOCODER
from polydiff.plugins.errors import UsageError
from polydiff.plugins.runs import resolve_config, train

SPEAKERS, TAKES = 2, 7  # the ``convention`` folder of conftest.py: 10 digits x 2 speakers x takes 0-6

TINY_NET = {"layout": "1d", "base": 8, "mults": [1, 2], "num_res": 1, "attn_levels": [], "pos_channels": 8}
TINY_TRAIN = {"steps": 2, "batch_size": 4, "log_every": 1, "ckpt_every": 2, "progress": False, "warmup": 0}


def real_fsdd() -> Path:
    for folder in fsdd.default_folders():
        if fsdd.recordings(folder):
            return folder
    pytest.skip("the FSDD folder (../shared/data/fsdd) is not here")


def test_labels_come_from_file_names():
    assert fsdd.parse_name("7_theo_12.wav") == (7, "theo", 12)
    assert fsdd.parse_name("0_george_0.WAV") == (0, "george", 0)
    for bad in ("seven_theo_1.wav", "7_theo.wav", "7_theo_1.flac", "12_theo_1.wav", "notes.txt"):
        assert fsdd.parse_name(bad) is None, bad


def test_official_split_by_take_on_the_real_names():
    files = fsdd.recordings(real_fsdd())
    assert len(files) == 3000
    split = {r.path.name: fsdd.split_of(r.take, 5) for r in files}
    test = [r for r in files if split[r.path.name] == "test"]
    assert len(test) == 300 and {r.take for r in test} == set(range(5))
    per_pair = {}
    for r in test:
        per_pair.setdefault((r.digit, r.speaker), set()).add(r.take)
    assert len(per_pair) == 60 and all(t == set(range(5)) for t in per_pair.values())
    assert {r.take for r in files if split[r.path.name] == "valid"} == set(range(5, 10))
    assert min(r.take for r in files if split[r.path.name] == "train") == 10
    assert sum(v == "train" for v in split.values()) == 2400


def test_prepared_splits_hold_each_recording_once(convention):
    p = prepare({"source": "fsdd", "path": str(convention), "sample_rate": 8000, "valid_takes": 1})
    names = {"train": p.train.speakers, "valid": p.valid.speakers, "test": p.test.speakers}
    takes = {k: {fsdd.parse_name(n + ".wav")[2] for n in v} for k, v in names.items()}
    assert takes == {"train": {6}, "valid": {5}, "test": {0, 1, 2, 3, 4}}
    everything = [n for v in names.values() for n in v]
    assert len(everything) == len(set(everything)) == 10 * SPEAKERS * TAKES
    for part in (p.train, p.valid, p.test):
        assert part.class_names[7] == "seven"
        assert all(fsdd.parse_name(n + ".wav")[0] == int(lab) for n, lab in zip(part.speakers, part.labels))


@pytest.mark.parametrize("rate", [8000, 16000])
def test_clips_are_resampled_padded_and_centred(convention, rate):
    p = prepare({"source": "fsdd", "path": str(convention), "sample_rate": rate, "valid_takes": 1})
    assert p.train.waves.shape == (20, rate) and p.train_x.shape == (20, 1, 64, 64)
    assert p.normalizer.config.sample_rate == rate and p.normalizer.config.hop == rate // 62.5
    energy = p.test.waves.pow(2)
    centre = (energy * torch.arange(rate)).sum(-1) / energy.sum(-1)
    assert float((centre / rate - 0.5).abs().max()) < 0.02
    assert float(p.test.waves.abs().amax(-1).min()) == pytest.approx(0.9, abs=1e-3)


def test_missing_folder_is_one_line_and_exit_2(tmp_path, monkeypatch):
    from polydiff.cli.app import build_app

    monkeypatch.setenv(fsdd.ENV, str(tmp_path / "nowhere"))
    with pytest.raises(UsageError, match="POLYDIFF_FSDD"):
        fsdd.locate(None)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(build_app(), ["audio", "train", "--data", "fsdd", "--out", "r"])
    assert res.exit_code == 2, res.output
    line = [s for s in res.output.splitlines() if "FSDD" in s]
    assert len(line) == 1 and "nowhere" in line[0] and "put the Free Spoken Digit Dataset" in line[0]
    assert "Traceback" not in res.output and not Path("r").exists()


def test_data_source_maps_fsdd_and_convention_folders(convention, tmp_path, monkeypatch):
    monkeypatch.setenv(fsdd.ENV, str(convention))
    assert data_source("fsdd")["data"] == {"source": "fsdd", "path": None, "sample_rate": 8000}
    assert data_source(str(convention))["data"]["path"] == str(convention.resolve())
    (tmp_path / "yes").mkdir()
    sf.write(tmp_path / "yes" / "a.wav", np.zeros(800, np.float32), 8000)
    assert data_source(str(tmp_path))["data"] == {"source": "folder", "folder": str(tmp_path)}


def test_train_on_fsdd_through_the_framework(convention, tmp_path, monkeypatch):
    monkeypatch.setenv(fsdd.ENV, str(convention))
    domain = make_domain()
    cfg = resolve_config(domain, "fsdd", {**data_source("fsdd"), "network": TINY_NET, "train": TINY_TRAIN,
                                          "sample": {"steps": 1, "sampler": "euler", "gl_iters": 2}})
    cfg["data"]["valid_takes"] = 1
    run = train(domain, cfg, tmp_path / "run")
    fitted = run.config["fitted"]
    assert fitted["normalizer"]["mel"]["sample_rate"] == 8000 and fitted["class_names"][3] == "three"
    assert run.config["data"]["source"] == "fsdd" and run.config["data"]["path"] is None
    out = run.sample(2, label="three", seed=0)
    shipped = (SHIPPED_VOCODER / "config.json").is_file()
    assert out["waves"].shape == (2, 8000) and out.meta["vocoder"] == (str(SHIPPED_VOCODER) if shipped else "griffin-lim")
    gl = run.sample(2, label="three", seed=0, vocoder="griffin-lim")
    assert gl.meta["vocoder"] == "griffin-lim" and torch.equal(gl["x"], out["x"])
    files = run.domain.save_samples(out, tmp_path / "s")
    assert sf.info(str(files[0])).samplerate == 8000
