"""Control runs (plugins/control.py) on the toy domain: the control is a point's x coordinate (a one-dimensional
partial observation). A ControlNet branch on a frozen toy run starts exactly at the base and, after a short training,
draws points whose x follows the control.

Measured (base: width 64, depth 2, 400 steps of 256 on 8000 moons points; branch: 300 steps): controls evenly spread
over [-1.5, 1.5] give samples whose x correlates with the control at 0.998 (mean absolute error 0.04), against
-0.001 for the base run.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from polydiff.core.control import ControlNet, with_control
from polydiff.plugins.capabilities import TrainControlOptions
from polydiff.plugins.control import (Control, control_config, controlled_domain, load_control_run, train_control,
                                      train_control_command)
from polydiff.plugins.errors import OptionError, RunExistsError, UsageError
from polydiff.plugins.manager import get_manager
from polydiff.plugins.options import build_options
from polydiff.plugins.runs import build_denoiser, resolve_config, train

X = Control(lambda batch, generator: batch.x0[:, :1], "the x coordinate of the point")
BASE = {"data": {"n_train": 8000, "n_test": 2000}, "network": {"width": 64, "depth": 2},
        "train": {"steps": 400, "batch_size": 256, "log_every": 50, "ckpt_every": 1000, "progress": False,
                  "warmup": 0}}
CONTROLS = torch.linspace(-1.5, 1.5, 500)[:, None]
FOLLOWS = 0.95  # correlation of the samples' x with the control (measured 0.998)
IGNORES = 0.2  # |correlation| for the base run (measured 0.001)


@pytest.fixture(scope="module")
def toy():
    return get_manager().domain("toy")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return tmp_path_factory.mktemp("control")


@pytest.fixture(scope="module")
def base(toy, folders):
    return train(toy, resolve_config(toy, "quick", BASE), folders / "base")


@pytest.fixture(scope="module")
def controlled(base, folders):
    return train_control(base, X, folders / "x", kind="x", steps=300, command="polydiff toy train-control")


def _corr(points: np.ndarray, controls: torch.Tensor) -> float:
    return float(np.corrcoef(points[:, 0], controls[:, 0].numpy())[0, 1])


def test_at_initialisation_the_control_run_is_the_base(toy, base) -> None:
    view = controlled_domain(toy, "x", X)
    cfg = control_config(base, "x", X, [1], base.config["train"], 0.0, 1.0)
    den = build_denoiser(view, cfg)
    den.net.load_base(base.denoiser.net.state_dict())
    g = torch.Generator().manual_seed(0)
    x, sigma = torch.randn(64, 2, generator=g) * 3, torch.rand(64, generator=g) * 10 + 0.01
    labels, control = torch.randint(0, 2, (64,), generator=g), torch.randn(64, 1, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(den(x, sigma, with_control(labels, control)), base.denoiser(x, sigma, labels),
                                   rtol=0, atol=1e-6)


def test_controlled_samples_follow_the_control(base, controlled) -> None:
    points = controlled.sample(500, control=CONTROLS, seed=1)["points"]
    assert _corr(points, CONTROLS) > FOLLOWS
    assert abs(_corr(base.sample(500, seed=1)["points"], CONTROLS)) < IGNORES
    assert np.abs(points[:, 0] - CONTROLS[:, 0].numpy()).mean() < 0.1
    stronger = controlled.sample(500, control=CONTROLS, control_scale=2.0, seed=1)["points"]
    assert _corr(stronger, CONTROLS) > FOLLOWS
    upper = controlled.sample(500, control=CONTROLS, label=0, guidance_scale=2.0, seed=1)["points"]
    assert _corr(upper, CONTROLS) > FOLLOWS and upper[:, 1].mean() > 0.2  # moon 0 (the upper one), x as controlled


def test_the_control_run_folder_loads_and_reads_control_files(toy, base, controlled, folders, tmp_path) -> None:
    cfg = json.loads((folders / "x" / "config.json").read_text())
    assert cfg["control"]["kind"] == "x" and cfg["control"]["control_shape"] == [1]
    assert cfg["control"]["base_run"] == str((folders / "base").resolve()) and cfg["control"]["encoder"] == "vector"
    run = load_control_run(toy, folders / "x", control=X)
    assert isinstance(run.denoiser.net, ControlNet)
    a = controlled.sample(100, control=CONTROLS[:100], seed=4)
    b = run.sample(100, control=CONTROLS[:100], seed=4)
    assert (a["points"] == b["points"]).all() and b.meta["control"] == {"kind": "x", "scale": 1.0, "file": None}
    path = tmp_path / "one.npy"
    np.save(path, np.array([[0.8]], dtype=np.float32))
    one = run.sample(200, control=path, seed=0)
    assert abs(one["points"][:, 0].mean() - 0.8) < 0.1 and one.meta["control"]["file"] == str(path)
    with pytest.raises(OptionError, match="--control"):
        run.sample(10, control=torch.zeros(10, 2))
    assert "energy_distance" in run.evaluate(500)
    with pytest.raises(RunExistsError, match="--overwrite"):
        train_control(base, X, folders / "x", kind="x", steps=5)


def test_control_dropout_learns_a_null_control_for_guidance(base, tmp_path) -> None:
    run = train_control(base, X, tmp_path / "drop", kind="x", steps=60, dropout=0.2, guidance_scale=2.0)
    net = run.denoiser.net
    assert net.null_hint is not None and run.config["control"]["dropout"] == 0.2
    assert run.sample(50, control=CONTROLS[:50], seed=0).meta["control"]["scale"] == 2.0


def test_the_command_and_what_it_refuses(toy, base, folders, tmp_path) -> None:
    options = {"run": folders / "base", "control": "x", "out": tmp_path / "cmd", "steps": 10}
    silent = dataclasses.replace(toy, controls={})
    with pytest.raises(OptionError, match="controls: none"):
        train_control_command(silent, build_options(TrainControlOptions, options))
    declaring = dataclasses.replace(toy, controls={"x": X})
    run = train_control_command(declaring, build_options(TrainControlOptions, options), progress=False)
    assert run.config["train"]["steps"] == 10 and load_control_run(declaring, tmp_path / "cmd").config["control"]
    with pytest.raises(OptionError, match="--out"):
        train_control_command(declaring, build_options(TrainControlOptions, {**options, "out": None}))
    latent = dataclasses.replace(base, config={**base.config, "latent": {"shape": [2]}})
    with pytest.raises(UsageError, match="latent run"):
        train_control(latent, X, tmp_path / "no", kind="x")


def test_resume_with_more_steps_extends_the_run_exactly(base, tmp_path) -> None:
    """``train-control --resume --steps N`` extends a finished run to N steps, the same weights as one run of N
    steps (as ``train --resume --steps`` does); without --steps the run keeps its own length."""
    from safetensors.torch import load_file

    whole = train_control(base, X, tmp_path / "whole", kind="x", steps=20)
    train_control(base, X, tmp_path / "legs", kind="x", steps=10)
    legs = train_control(base, X, tmp_path / "legs", kind="x", steps=20, resume=True)
    assert legs.config["train"]["steps"] == 20 == whole.config["train"]["steps"]
    a, b = (load_file(str(p / "checkpoint" / "model.safetensors")) for p in (tmp_path / "whole", tmp_path / "legs"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    again = train_control(base, X, tmp_path / "legs", kind="x", resume=True)
    assert again.config["train"]["steps"] == 20


def test_a_control_run_of_the_shipped_run_records_no_machine_path(toy, tmp_path) -> None:
    from polydiff.plugins.runs import load_run

    run = train_control(load_run(toy, None), X, tmp_path / "c", kind="x", steps=1)
    assert run.config["control"]["base_run"] == "shipped:moons"


def test_exporting_a_control_run_of_a_shipped_base_ships_the_branch_alone(toy, tmp_path) -> None:
    from polydiff.core.checkpoint import load_checkpoint
    from polydiff.plugins.control import BASE_PREFIX
    from polydiff.plugins.runs import export_run, load_run

    run = train_control(load_run(toy, None), X, tmp_path / "c", kind="x", steps=3)
    whole = export_run(tmp_path / "c", tmp_path / "branch", "float32")
    tensors, state = load_checkpoint(whole / "checkpoint")
    assert state["base_weights"] == "base_run" and not any(k.startswith(BASE_PREFIX) for k in tensors["model"])
    assert any(k.startswith("net.branch.") for k in tensors["model"])
    shipped = load_control_run(toy, whole)
    g = torch.Generator().manual_seed(0)
    x, sigma = torch.randn(32, 2, generator=g), torch.rand(32, generator=g) * 5 + 0.01
    cond = with_control(torch.randint(0, 2, (32,), generator=g), torch.randn(32, 1, generator=g))
    with torch.no_grad():
        torch.testing.assert_close(shipped.denoiser(x, sigma, cond), run.denoiser(x, sigma, cond), rtol=0, atol=1e-6)


def test_a_control_run_on_a_trained_base_exports_whole(base, controlled, tmp_path) -> None:
    from polydiff.core.checkpoint import load_checkpoint
    from polydiff.plugins.control import BASE_PREFIX
    from polydiff.plugins.runs import export_run

    out = export_run(controlled.path, tmp_path / "whole", "float32")
    tensors, state = load_checkpoint(out / "checkpoint")
    assert "base_weights" not in state and any(k.startswith(BASE_PREFIX) for k in tensors["model"])
    again = load_control_run(get_manager().domain("toy"), out)
    x, sigma = torch.randn(8, 2), torch.full((8,), 0.5)
    cond = with_control(torch.zeros(8, dtype=torch.long), torch.ones(8, 1))
    with torch.no_grad():
        torch.testing.assert_close(again.denoiser(x, sigma, cond), controlled.denoiser(x, sigma, cond))


def test_config_shifts_the_training_noise_levels_and_refuses_the_bases_other_settings(toy, folders, tmp_path) -> None:
    from polydiff.plugins.errors import ConfigError

    declaring = dataclasses.replace(toy, controls={"x": X})
    good = tmp_path / "c.toml"
    good.write_text("[train]\nema_decay = 0.99\n[diffusion.schedule_args]\nP_mean = 0.0\n")
    options = {"run": folders / "base", "control": "x", "out": tmp_path / "cfg", "steps": 2, "config": good}
    run = train_control_command(declaring, build_options(TrainControlOptions, options), progress=False)
    assert run.config["train"]["ema_decay"] == 0.99 and run.config["diffusion"]["schedule_args"] == {"P_mean": 0.0}
    assert json.loads((tmp_path / "cfg" / "config.json").read_text())["diffusion"]["schedule_args"]["P_mean"] == 0.0
    for text, says in (("[network]\nwidth = 8\n", r"not \[network\]"),
                       ("[diffusion]\nparameterization = 'eps'\n", "diffusion.parameterization is fixed")):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=says):
            train_control_command(declaring, build_options(TrainControlOptions, {**options, "config": bad,
                                                                                 "out": tmp_path / "no"}))
    assert not (tmp_path / "no").exists()
