"""The CLI end to end on the toy domain: train, sample, evaluate, exit codes, one-line errors, the example plugin."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def polydiff(*args, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "polydiff.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = out / "tiny.toml"
    cfg.write_text('[train]\nsteps = 60\nbatch_size = 128\nlog_every = 20\nckpt_every = 30\n\n[network]\nwidth = 32\n')
    done = polydiff("toy", "train", "--out", out / "run", "--config", cfg, "--device", "cpu")
    assert done.returncode == 0, done.stderr
    return out / "run"


def test_help_and_module_entry_point():
    for args in (["--help"], ["toy", "--help"], ["info"]):
        done = polydiff(*args)
        assert done.returncode == 0, done.stderr
    assert "toy" in polydiff("--help").stdout
    info = polydiff("info").stdout
    assert "samplers:" in info and "dpmpp_2m" in info and "domains:" in info


def test_train_writes_a_run_folder(toy_run):
    for name in ("config.json", "metrics.jsonl", "loss.png", "checkpoint/model.safetensors", "checkpoint/state.json"):
        assert (toy_run / name).is_file(), name


def test_sample_writes_points_and_a_preview(toy_run, tmp_path):
    done = polydiff("toy", "sample", "--run", toy_run, "--sampler", "dpmpp_2m", "--steps", "10", "-n", "300",
                    "--out", tmp_path, "--device", "cpu")
    assert done.returncode == 0, done.stderr
    pts = np.load(tmp_path / "samples.npy")
    assert pts.shape == (300, 2) and np.isfinite(pts).all()
    assert (tmp_path / "samples.png").stat().st_size > 1000 and (tmp_path / "samples.json").is_file()


@pytest.mark.parametrize("extra", [
    ["--class", "1", "--guidance-scale", "3"],
    ["--guidance", "classifier", "--toward", "1,0"],
    ["--guidance", "dps", "--observe-x", "0.5"],
    ["--guidance", "inpaint", "--observe-x", "0.5"],
    ["--guidance", "compose", "--compose", "0:1,1:-0.5"],
])
def test_every_guidance_is_reachable(toy_run, tmp_path, extra):
    done = polydiff("toy", "sample", "--run", toy_run, "--steps", "5", "-n", "50", "--out", tmp_path, "--device", "cpu",
                    *extra)
    assert done.returncode == 0, done.stderr
    pts = np.load(tmp_path / "samples.npy")
    if "inpaint" in extra:
        assert np.allclose(pts[:, 0], 0.5, atol=1e-5)


def test_sdedit_from_a_file(toy_run, tmp_path):
    np.save(tmp_path / "init.npy", np.zeros((40, 2), dtype=np.float32))
    done = polydiff("toy", "sample", "--run", toy_run, "--steps", "10", "--out", tmp_path / "o", "--device", "cpu",
                    "--guidance", "sdedit", "--init", tmp_path / "init.npy", "--strength", "0.3")
    assert done.returncode == 0, done.stderr
    assert np.load(tmp_path / "o" / "samples.npy").shape == (40, 2)


def test_evaluate_prints_the_energy_distance(toy_run):
    done = polydiff("toy", "evaluate", "--run", toy_run, "-n", "300", "--steps", "10", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    values = dict(line.split(": ") for line in done.stdout.strip().splitlines())
    assert float(values["energy_distance"]) >= 0 and float(values["energy_distance_floor"]) >= 0


def test_resume_continues_a_run(toy_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    import json

    shutil.copytree(toy_run, run)
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "preset": "full"}))  # as if trained with --preset full
    done = polydiff("toy", "train", "--out", run, "--resume", "--steps", "80", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "checkpoint" / "state.json").read_text())["step"] == 80
    assert "trained toy (full) in" in done.stdout  # the run's own preset, not the --preset default


def test_export_ships_the_ema_weights_alone(toy_run, tmp_path):
    import torch

    from polydiff.plugins.manager import get_manager
    from polydiff.plugins.runs import load_run

    done = polydiff("toy", "export", toy_run, "--out", tmp_path / "ship")
    assert done.returncode == 0, done.stderr
    ship = tmp_path / "ship"
    assert sorted(p.name for p in (ship / "checkpoint").iterdir()) == ["model.safetensors", "state.json"]
    assert (ship / "command.txt").read_text().startswith("polydiff toy train --out")
    assert (ship / "checkpoint" / "model.safetensors").stat().st_size < 0.6 * (toy_run / "checkpoint" / "model.safetensors").stat().st_size
    domain = get_manager().domain("toy")
    full, shipped = load_run(domain, toy_run), load_run(domain, ship)
    x, sigma = torch.randn(64, 2, generator=torch.Generator().manual_seed(0)), torch.full((64,), 0.5)
    with torch.no_grad():
        assert torch.allclose(full.denoiser(x, sigma), shipped.denoiser(x, sigma), atol=2e-3)
    assert polydiff("toy", "export", toy_run, "--out", tmp_path / "x", "--dtype", "int8").returncode == 2


@pytest.mark.gpu
def test_train_and_sample_on_cuda_in_bf16(tmp_path):
    """The trainer's generator lives on CUDA (noise levels, label dropout) and bf16 autocast trains; sampling in bf16."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text("[train]\nsteps = 40\nbatch_size = 128\nlog_every = 10\nckpt_every = 20\nbf16 = true\n\n"
                   "[network]\nwidth = 32\n")
    done = polydiff("toy", "train", "--out", tmp_path / "r", "--config", cfg, "--device", "cuda")
    assert done.returncode == 0, done.stderr
    losses = [json.loads(line)["loss"] for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 4 and np.isfinite(losses).all()
    done = polydiff("toy", "sample", "--run", tmp_path / "r", "--steps", "10", "-n", "300", "--class", "1",
                    "--out", tmp_path / "s", "--device", "cuda", "--precision", "bf16")
    assert done.returncode == 0, done.stderr
    assert np.isfinite(np.load(tmp_path / "s" / "samples.npy")).all()


def test_a_runtime_failure_exits_1_in_one_line(tmp_path):
    done = polydiff("toy", "train", "--device", "cuda", "--steps", "1", "--out", tmp_path / "r")
    if done.returncode == 0:
        pytest.skip("a CUDA device is present")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: --device cuda was asked for")


def test_debug_shows_the_traceback():
    done = polydiff("--debug", "toy", "sample", "--run", "/nonexistent/run")
    assert done.returncode == 2 and "Traceback" in done.stderr


def test_example_plugin_installs_and_is_found(toy_run, tmp_path):
    """Install the example third-party package into this environment; its sampler and data set become usable."""
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e",
                          str(ROOT / "examples" / "polydiff-example-plugin")], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr
    listed = polydiff("plugins")
    line = next(l for l in listed.stdout.splitlines() if l.startswith("example"))
    assert "polydiff-example-plugin 0.1.0" in line and "edm_stochastic" in line and "toy:spirals" in line
    done = polydiff("toy", "sample", "--run", toy_run, "--sampler", "edm_stochastic", "--steps", "8", "-n", "100",
                    "--out", tmp_path, "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert np.load(tmp_path / "samples.npy").shape == (100, 2)
    cfg = tmp_path / "spirals.toml"
    cfg.write_text('[data]\ndataset = "spirals"\n[train]\nsteps = 10\nlog_every = 5\n')
    trained = polydiff("toy", "train", "--config", cfg, "--out", tmp_path / "spirals", "--device", "cpu")
    assert trained.returncode == 0, trained.stderr


def test_every_capability_command_runs_and_reports(toy_run, tmp_path):
    """distill, personalize, edit, train-autoencoder and train-control through the CLI, each one report line."""
    points = tmp_path / "points.npy"
    np.save(points, (np.random.default_rng(0).normal(size=(20, 2)) * 0.1).astype(np.float32))
    ae_cfg = tmp_path / "ae.toml"
    ae_cfg.write_text("[train]\nbatch_size = 64\nlog_every = 5\nckpt_every = 1000\n")
    common = ("--device", "cpu")
    commands = {
        "distill": ("--run", toy_run, "--out", tmp_path / "student", "--steps", "2", "--rounds", "1",
                    "--round-steps", "5"),
        "personalize": ("--run", toy_run, "--instances", points, "--name", "blob", "--out", tmp_path / "blob",
                        "--steps", "5", "--prior-samples", "20"),
        "edit": ("--run", toy_run, "--input", points, "--to", "1", "--out", tmp_path / "edited", "--steps", "4"),
        "train-autoencoder": ("--out", tmp_path / "ae", "--config", ae_cfg, "--steps", "5"),
        "train-control": ("--run", toy_run, "--control", "x", "--out", tmp_path / "control", "--steps", "5"),
    }
    for name, args in commands.items():
        done = polydiff("toy", name, *args, *common)
        assert done.returncode == 0, (name, done.stderr)
        report = done.stdout.strip().splitlines()
        assert report and str(tmp_path) in report[-1], (name, done.stdout)
    assert (tmp_path / "student" / "config.json").is_file() and (tmp_path / "blob" / "config.json").is_file()
    edited = json.loads((tmp_path / "edited" / "samples.json").read_text())
    assert edited["command"].startswith("polydiff toy edit")
    assert np.load(tmp_path / "edited" / "samples.npy").shape == (20, 2)
    assert (tmp_path / "ae" / "reconstruction.json").is_file() and (tmp_path / "control" / "config.json").is_file()
    again = polydiff("toy", "distill", *commands["distill"], *common)
    assert again.returncode == 2 and again.stderr.count("error:") == 1


def test_demo_uses_a_shipped_student_only_where_it_met_its_goal(tmp_path):
    """The shipped toy student records that it misses its goal, so the demo keeps the teacher and says why; the same
    student recorded as meeting it is what the demo samples, said in the source line."""
    import dataclasses
    import shutil

    from polydiff.cli.app import _demo_run
    from polydiff.plugins.manager import get_manager

    toy = get_manager().domain("toy")
    run, source = _demo_run(toy, "cpu")
    assert run.path.resolve() == Path(toy.shipped_run).resolve()
    assert "moons-4step misses its goal: energy distance 0.0037" in source
    shutil.copytree(Path(toy.shipped_run).parent, tmp_path / "checkpoints")
    record = tmp_path / "checkpoints" / "moons-4step" / "goal.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "met": True}))
    met = dataclasses.replace(toy, shipped_run=tmp_path / "checkpoints" / "moons")
    run, source = _demo_run(met, "cpu")
    assert run.path == tmp_path / "checkpoints" / "moons-4step" and run.config["sample"]["steps"] == 4
    assert source.startswith("shipped 4-step student moons-4step (meets its goal")
