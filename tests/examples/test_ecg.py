"""The third-party ECG domain (examples/polydiff-ecg) end to end: installed, trained, sampled, evaluated, swept.

The example is pip-installed (editable, no dependencies) into the environment running the tests, i.e. the shared
venv, exactly as a user would install a plugin; it stays installed afterwards, as the example plugin in
tests/cli/test_cli.py does. Its generator and metric are also tested directly, imported from the example's folder.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "polydiff-ecg"
TINY = """
[data]
n_train = 512
n_test = 256

[network]
channels = 16
blocks = 2
emb_dim = 32

[train]
steps = 30
batch_size = 32
warmup = 5
decay_from = 0
log_every = 10
ckpt_every = 30

[sample]
steps = 6
"""


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """A command in a fresh Python process with one torch thread; its output must show it succeeded."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "POLYDIFF_THREADS": "1"}
    done = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def ecg_run(tmp_path_factory) -> Path:
    """Install the example into the shared venv and train a tiny run with ``polydiff ecg train``."""
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e",
                          str(EXAMPLE)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr
    work = tmp_path_factory.mktemp("ecg")
    (work / "tiny.toml").write_text(TINY)
    done = run("-m", "polydiff.cli", "ecg", "train", "--out", work / "run", "--config", work / "tiny.toml",
               "--device", "cpu")
    assert "trained ecg" in done.stdout
    return work / "run"


@pytest.fixture
def ecg_modules(monkeypatch):
    """The example's package importable in this process (its editable install is seen by new processes only)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from polydiff_ecg import data, metrics, plugin, signals

    return signals, metrics, data, plugin


def test_sample_a_class_with_guidance(ecg_run, tmp_path):
    out = tmp_path / "S"
    run("-m", "polydiff.cli", "ecg", "sample", "--run", ecg_run, "--class", "1", "--guidance-scale", "2", "-n", "8",
        "--out", out, "--device", "cpu")
    assert np.load(out / "samples.npy").shape == (8, 256)
    assert (out / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((out / "samples.json").read_text())
    assert record["class"] == "1" and record["labels"] == ["tachycardia"] * 8
    assert record["settings"]["guidance_scale"] == 2.0 and record["settings"]["steps"] == 6
    assert record["files"] == ["samples.npy", "preview.png"]


def test_evaluate_prints_the_metric(ecg_run):
    done = run("-m", "polydiff.cli", "ecg", "evaluate", "--run", ecg_run, "-n", "64", "--device", "cpu")
    metrics = dict(line.split(": ") for line in done.stdout.strip().splitlines())
    assert set(metrics) == {"feature_fd", "feature_fd_floor", "class_accuracy", "class_accuracy_data"}
    assert float(metrics["feature_fd_floor"]) < float(metrics["feature_fd"])


def test_cross_domain_sweeps_the_plugin(ecg_run):
    done = run(ROOT / "examples" / "cross_domain.py", "--domains", "ecg", "--run", f"ecg={ecg_run}",
               "--methods", "euler", "--nfe", "4", "-n", "32")
    assert "## ecg: feature_fd (lower is better), n=32" in done.stdout
    assert any(line.startswith("| euler | ") for line in done.stdout.splitlines())


def test_inpainting_keeps_the_trace_outside_the_mask(ecg_run, ecg_modules, tmp_path):
    signals, _, _, plugin = ecg_modules
    from polydiff.plugins.runs import load_run

    given, _ = signals.synthesize(2, seed=7)
    np.save(tmp_path / "given.npy", given)
    x = load_run(plugin.make_domain(), ecg_run).sample(4, label="afib", inpaint=tmp_path / "given.npy",
                                                        mask="1:2")["signals"]
    t = np.arange(256) / signals.FS
    outside = (t < 1) | (t >= 2)
    assert np.allclose(x[:, outside], given[[0, 1, 0, 1]][:, outside], atol=1e-4)
    assert not np.allclose(x[:, ~outside], given[[0, 1, 0, 1]][:, ~outside], atol=1e-2)


def test_classes_differ_in_measured_heart_rate(ecg_modules):
    signals, metrics, _, _ = ecg_modules
    x, y = signals.synthesize(400, seed=3)
    f = metrics.features(x)
    rate, rr_cv, p_ratio = (f[:, metrics.FEATURES.index(k)] for k in ("heart_rate", "rr_cv", "p_ratio"))
    by = {name: y == k for k, name in enumerate(signals.CLASSES)}
    assert 60 <= np.median(rate[by["normal"]]) <= 95
    assert np.median(rate[by["tachycardia"]]) > 105 and np.median(rate[by["bradycardia"]]) < 58
    assert np.median(rr_cv[by["afib"]]) > 3 * max(np.median(rr_cv[by[c]]) for c in ("normal", "tachycardia"))
    assert np.median(p_ratio[by["afib"]]) < 0.6 * np.median(p_ratio[by["normal"]])


def test_metric_is_zero_on_itself_and_large_across_classes(ecg_modules):
    signals, metrics, data, _ = ecg_modules
    section = {"source": "synthetic", "n_train": 800, "n_test": 400}
    space = metrics.FeatureSpace.fit(*data.split(section, "train"))
    test_x, test_y = data.split(section, "test")
    val_x, _ = data.split(section, "val")
    z_test, z_val = space.embed(test_x), space.embed(val_x)
    assert abs(metrics.frechet_distance(z_test, z_test)) < 1e-6
    floor = metrics.frechet_distance(z_val, z_test)
    normal, tachy = z_test[test_y == 0], z_test[test_y == 1]
    assert metrics.frechet_distance(normal, tachy) > 20 * floor
    assert space.accuracy(z_test, test_y) > 0.9


def test_the_example_has_no_cli_code():
    """The domain only declares: nothing in the example names polydiff's CLI package."""
    files = [p for p in EXAMPLE.rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".toml")]
    assert [p for p in files if "polydiff.cli" in p.read_text()] == []
