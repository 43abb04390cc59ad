"""The audio Domain wired into polydiff: registration, data, generation (class, inpainting), writing, CLI."""
import json
import os
import subprocess
import sys

import pytest
import soundfile as sf
import torch

from polydiff.plugins.runs import Run, build_denoiser, resolve_config
from polydiff.domains.audio.data import prepare
from polydiff.domains.audio.plugin import make_domain
from polydiff.plugins.errors import ConfigError, OptionError

TINY_CFG = {
    "data": {"n_voices": 5, "valid_fraction": 0.0, "test_fraction": 0.2},
    "network": {"base": 4, "mults": [1, 2, 2], "num_res": 1, "attn_levels": []},
    "train": {"steps": 2, "batch_size": 4, "log_every": 1, "ckpt_every": 2, "progress": False, "warmup": 0},
    "sample": {"steps": 1, "sampler": "euler", "gl_iters": 2},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_train):
    domain = make_domain()
    cfg = resolve_config(domain, "quick", TINY_CFG)
    torch.manual_seed(0)
    den = build_denoiser(domain, cfg).eval()
    return Run(domain, cfg, den, tmp_path_factory.mktemp("run"), torch.device("cpu"))


def test_audio_is_a_registered_builtin_domain():
    from polydiff.plugins.manager import get_manager

    domain = get_manager().domain("audio")
    assert {"quick", "full"} <= set(domain.presets) and domain.primary_metric == "fid"


def test_dataset_batches_are_normalised_mels_with_labels(run):
    domain = run.domain
    ds = domain.build_dataset(run.config["data"], "train")
    batch = domain.collate([ds[i] for i in range(3)])
    assert batch.x0.shape == (3, 1, 64, 64) and batch.cond["label"].shape == (3,)
    assert len(ds) == 40 and len(domain.build_dataset(run.config["data"], "test")) == 10
    assert abs(float(ds.x.mean())) < 1e-3 and abs(float(ds.x.std()) - 1) < 1e-3
    with pytest.raises(ConfigError, match="unknown key 'n_voice' in \\[data\\]"):
        resolve_config(domain, "quick", {"data": {"n_voice": 3}})


def test_class_labels(run):
    assert run.labels("seven", 2).tolist() == [7, 7]
    assert run.labels("3", 1).tolist() == [3]
    assert run.labels("all", 12).tolist() == list(range(10)) + [0, 1]
    assert run.labels(None, 2) is None
    with pytest.raises(OptionError, match="--digit: unknown class 'eleven'"):
        run.labels("eleven", 1)


def test_a_fitted_run_samples_without_its_clips(run, monkeypatch):
    from polydiff.domains.audio import data

    fitted = data.fit_data(run.config["data"])
    assert fitted["normalizer"] == prepare(run.config["data"]).normalizer.to_dict()

    def no_clips(*args, **kwargs):
        raise AssertionError("sampling a fitted run must not load its training clips")

    monkeypatch.setattr(data, "load_clips", no_clips)
    data._prepare.cache_clear()
    shipped = Run(run.domain, {**run.config, "data": {**run.config["data"], "n_voices": 6}, "fitted": fitted},
                  run.denoiser, run.path, run.device)
    out = shipped.sample(2, label="seven", seed=0)
    assert out["labels"] == [7, 7] and out.meta["normalizer"] == fitted["normalizer"]
    data._prepare.cache_clear()


def test_generate_and_save(run, tmp_path):
    out = run.sample(2, label="all", seed=0)
    assert out["waves"].shape == (2, 16000) and out["x"].shape == (2, 1, 64, 64)
    assert out["labels"] == [0, 1]
    files = run.domain.save_samples(out, tmp_path)
    names = sorted(f.name for f in files)
    assert names == ["normalizer.json", "sample_000_zero.wav", "sample_001_one.wav", "spectrograms.png"]


def test_inpainting_keeps_the_clip_outside_the_span(run, tmp_path, tiny_test):
    clip = tmp_path / "clip.wav"
    sf.write(clip, tiny_test.waves[0].numpy(), 16000)
    out = run.sample(1, label="two", inpaint=clip, mask="0.25:0.5", seed=0)
    from polydiff.domains.audio.sampling import known_from_clip

    known, mask = known_from_clip(prepare(run.config["data"]), clip, "0.25:0.5")
    assert torch.allclose(out["x"] * mask, known * mask, atol=1e-4)
    assert not torch.allclose(out["x"][..., 16:32], known[..., 16:32])
    with pytest.raises(OptionError, match="both --inpaint"):
        run.sample(1, inpaint=clip)


@pytest.mark.slow
def test_cli_train_sample_evaluate_end_to_end(tmp_path, tiny_train):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_CFG))
    env = {**os.environ}
    exe = [sys.executable, "-m", "polydiff.cli"]

    def call(*args):
        res = subprocess.run([*exe, "audio", *args], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-2000:]
        return res.stdout

    call("train", "--out", "run", "--config", str(cfg), "--device", "cpu")
    fitted = json.loads((tmp_path / "run" / "config.json").read_text())["fitted"]
    assert fitted["normalizer"]["std"] > 0 and fitted["class_names"][7] == "seven" and fitted["conditional"]
    call("sample", "--run", "run", "--out", "s", "-n", "2", "--class", "seven", "--device", "cpu")
    assert (tmp_path / "s" / "sample_000_seven.wav").is_file() and (tmp_path / "s" / "spectrograms.png").is_file()
    text = call("evaluate", "--run", "run", "-n", "4", "--classifier-epochs", "1", "--gl-iters", "2", "--device", "cpu")
    for key in ("accuracy", "fid", "is", "mis", "am", "ndb", "floor_accuracy", "real_fid", "classifier_test_accuracy"):
        assert f"\n{key}: " in "\n" + text
    bad = subprocess.run([*exe, "audio", "sample", "--run", "run", "--inpaint", "nope.wav", "--mask", "0:0.5",
                          "--device", "cpu"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert bad.returncode != 0 and "nope.wav" in (bad.stderr + bad.stdout) and "Traceback" not in bad.stderr


def test_folder_source_trains_a_class_conditional_model(tmp_path):
    import math

    import numpy as np

    for name, freq in (("hum", 150.0), ("whistle", 1800.0)):
        (tmp_path / name).mkdir()
        for i in range(5):
            t = np.arange(12000) / 22050
            sf.write(tmp_path / name / f"{i}.wav", (0.4 * np.sin(2 * math.pi * (freq + 15 * i) * t)).astype(np.float32), 22050)
    domain = make_domain()
    cfg = resolve_config(domain, "quick", {"data": {"source": "folder", "folder": str(tmp_path), "test_fraction": 0.2},
                                           "network": TINY_CFG["network"]})
    p = prepare(cfg["data"])
    assert p.class_names == ["hum", "whistle"] and p.num_classes == 2
    assert len(p.train) == 8 and len(p.test) == 2 and sorted(p.test.labels.tolist()) == [0, 1]
    net = domain.build_network(cfg)
    assert net.config.num_classes == 2
    with pytest.raises(ValueError, match="data.folder"):
        prepare({"source": "folder"})
