"""text3d's documented commands with tiny settings: train-prior (= the generic train), sample-prior, generate (with a
distillation preset), the older ``sample`` spellings calling the same code, and one-line errors (exit 2 for usage)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trimesh
from PIL import Image
from safetensors import safe_open
from typer.testing import CliRunner

from polydiff.cli.app import build_app, main
from polydiff.domains.text3d.sampling import distill_config
from polydiff.plugins.manager import get_manager
from polydiff.plugins.runs import load_run


def _invoke(*args: str) -> str:
    res = CliRunner().invoke(build_app(), ["text3d", *map(str, args)])
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory: pytest.TempPathFactory, tiny: dict) -> Path:
    path = tmp_path_factory.mktemp("text3d_cfg") / "tiny.json"
    path.write_text(json.dumps(tiny))
    return path


@pytest.fixture(scope="module")
def run_dir(tiny_config: Path) -> Path:
    out = tiny_config.parent / "prior"
    assert "train-prior" in _invoke("--help")
    _invoke("train-prior", "--out", out, "--config", tiny_config, "--seed", "3", "--device", "cpu")
    return out


def test_train_prior_is_the_generic_train(run_dir: Path, tiny_config: Path, tmp_path: Path) -> None:
    for name in ("config.json", "metrics.jsonl", "loss.png", "checkpoint/model.safetensors", "command.txt"):
        assert (run_dir / name).is_file(), name
    assert len((run_dir / "command.txt").read_text().splitlines()) == 1
    _invoke("train", "--out", tmp_path / "generic", "--config", tiny_config, "--seed", "3", "--device", "cpu")
    ours, generic = (json.loads((d / "config.json").read_text()) for d in (run_dir, tmp_path / "generic"))
    assert ours == generic and ours["train"]["seed"] == 3 and ours["data"]["size"] == 16


def test_sample_prior_and_sample_images_write_the_same_pngs(run_dir: Path, tmp_path: Path) -> None:
    common = ["-n", "2", "--run", run_dir, "--steps", "2", "--seed", "1", "--device", "cpu"]
    _invoke("sample-prior", "a blue chair", "--out", tmp_path / "new", *common)
    _invoke("sample", "--images", "--prompt", "a blue chair", "--out", tmp_path / "old", *common)
    for name, size in (("prior_00.png", (16, 16)), ("prior_01.png", (16, 16)), ("prior_samples.png", (32, 16))):
        with Image.open(tmp_path / "new" / name) as im:
            assert im.size == size
        assert (tmp_path / "new" / name).read_bytes() == (tmp_path / "old" / name).read_bytes(), name
    assert json.loads((tmp_path / "new" / "samples.json").read_text())["prompt"] == "a blue chair"


def _field_config(path: Path) -> dict:
    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["config"])


def test_generate_writes_mesh_gif_and_loss_and_takes_a_distillation_preset(run_dir: Path, tmp_path: Path) -> None:
    _invoke("generate", "a red mug", "--run", run_dir, "--out", tmp_path / "run_cfg", "--device", "cpu")
    out = tmp_path / "run_cfg"
    assert len(trimesh.load(out / "object_00.glb", force="mesh").faces) > 0
    assert (out / "object_00.obj").is_file() and (out / "object_00_loss.png").is_file()
    with Image.open(out / "object_00_turntable.gif") as gif:
        assert gif.n_frames == 24
    assert _field_config(out / "object_00_field.safetensors")["n_samples"] == 16  # the tiny settings' distill.n_samples

    _invoke("generate", "a red mug", "--run", run_dir, "--out", tmp_path / "quick", "--preset", "quick", "--iters", "2",
            "--method", "sjc", "--guidance-scale", "5", "--device", "cpu", "--preview-size", "32")
    used = _field_config(tmp_path / "quick" / "object_00_field.safetensors")
    assert (used["n_samples"], used["resolution"], used["size"]) == (48, 32, 16)  # quick's settings, the prior's size
    assert (used["method"], used["guidance_scale"], used["steps"]) == ("sjc", 5.0, 2)


def test_distill_config_takes_a_preset_but_keeps_the_priors_size(run_dir: Path) -> None:
    run = load_run(get_manager().domain("text3d"), run_dir)
    assert distill_config(run).n_samples == 16
    full = distill_config(run, {"steps": 7}, preset="full")
    assert (full.steps, full.resolution, full.n_samples, full.size) == (7, 64, 96, 16)
    with pytest.raises(ValueError, match="no preset 'huge'"):
        distill_config(run, preset="huge")


@pytest.mark.parametrize("args, code, message", [
    (["generate"], 2, "PROMPT: missing"),
    (["sample-prior", " "], 2, "empty prompt"),
    (["generate", "a red mug", "--method", "dreamfusion"], 2, "'dreamfusion' is not one of sds, sjc"),
    (["generate", "a red mug", "--preset", "huge"], 2, "'huge' is not one of quick, full"),
    (["generate", "a red mug"], 1, "ships no checkpoint: train one with `polydiff text3d train"),
    (["sample-prior", "a red mug", "--run", "no/such/run"], 2, "is not a run folder"),
])
def test_bad_input_is_one_line(args: list[str], code: int, message: str, monkeypatch, capsys) -> None:
    monkeypatch.setattr(get_manager().domain("text3d"), "shipped_run", None)
    with pytest.raises(SystemExit) as done:
        main(["text3d", *args])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert done.value.code == code and len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err


def test_missing_prompt_in_a_subprocess() -> None:
    done = subprocess.run([sys.executable, "-m", "polydiff.cli", "text3d", "generate", "--out", "unused"],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2 and done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: PROMPT: missing: give it as the first argument")
    assert "Traceback" not in done.stderr
