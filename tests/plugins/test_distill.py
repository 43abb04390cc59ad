"""``distill`` on the toy domain: a tiny teacher distilled for a round becomes an ordinary run folder that loads,
records what it was distilled from and samples on its own grid; a killed distillation resumes to the same weights;
guided distillation gives a student that takes the guidance scale; the declared options build the command."""
import json

import pytest
import torch
from safetensors.torch import load_file

from polydiff.core.distillation import GuidanceConditioned, student_sigmas
from polydiff.plugins import distill
from polydiff.plugins.errors import ConfigError, OptionError, RunExistsError
from polydiff.plugins.manager import get_manager
from polydiff.plugins.options import build_options, fields_of
from polydiff.plugins.runs import load_run, resolve_config, train

TINY = {"data": {"n_train": 1024, "n_test": 256}, "network": {"width": 32, "depth": 1},
        "train": {"steps": 40, "batch_size": 128, "log_every": 10, "ckpt_every": 20, "progress": False, "warmup": 0},
        "sample": {"steps": 8}}
ROUND = {"steps": 12, "batch_size": 64, "ckpt_every": 5, "log_every": 4, "progress": False}


@pytest.fixture(scope="module")
def toy():
    return get_manager().domain("toy")


@pytest.fixture(scope="module")
def teacher(toy, tmp_path_factory):
    return train(toy, resolve_config(toy, "quick", TINY), tmp_path_factory.mktemp("teacher") / "run")


def weights(folder):
    return load_file(str(folder / "checkpoint" / "model.safetensors"))


def test_a_round_makes_an_ordinary_run_folder(toy, teacher, tmp_path):
    out = tmp_path / "student"
    distill.distill_run(teacher, out, steps=4, train=ROUND, command="polydiff toy distill")
    student = load_run(toy, out)
    s, info = student.config["sample"], distill.distillation_of(student.config)
    assert (s["sampler"], s["steps"], s["grid"]) == ("ddim", 4, "karras")
    assert info["distilled_from"] == str(teacher.path.resolve()) and info["rounds"] == 1
    assert info["teacher_sample"]["sampler"] == "heun" and info["teacher_grid"]["teacher_steps"] == 8
    plan = json.loads((out / "rounds" / "plan.json").read_text())
    torch.testing.assert_close(student.sigmas(), student_sigmas(distill.teacher_grid(plan), 1), rtol=1e-5, atol=0)
    samples = student.sample(64, seed=1)
    assert samples["points"].shape == (64, 2) and samples.settings.steps == 4
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {r["round"] for r in rows} == {1} and rows[-1]["step"] == 12
    assert (out / "loss.png").is_file() and (out / "command.txt").read_text() == "polydiff toy distill\n"
    with pytest.raises(RunExistsError, match="--resume"):
        distill.distill_run(teacher, out, steps=4, train=ROUND)
    distill.distill_run(teacher, out, steps=4, train={**ROUND, "steps": 3}, overwrite=True)
    assert load_run(toy, out).config["train"]["steps"] == 3


def test_resume_of_a_killed_distillation_is_exact(teacher, tmp_path):
    """Two rounds (8 -> 4 -> 2 steps), killed at step 7 of round 1 (last checkpoint: 5), then at step 6 of round 2."""
    whole = tmp_path / "whole"
    distill.distill_run(teacher, whole, steps=2, train=ROUND)
    cut = tmp_path / "cut"
    partial = distill.distill_run(teacher, cut, steps=2, train=ROUND, stop_after=7)
    assert partial.path == cut / "rounds" / "round_1" and not (cut / "config.json").exists()
    distill.distill_run(teacher, cut, steps=2, train=ROUND, resume=True, stop_after=13)
    assert (cut / "rounds" / "round_2" / "checkpoint").is_dir() and not (cut / "config.json").exists()
    distill.distill_run(teacher, cut, steps=2, train=ROUND, resume=True)
    a, b = weights(whole), weights(cut)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logged = [[(r["round"], r["step"]) for r in map(json.loads, (f / "metrics.jsonl").read_text().splitlines())]
              for f in (whole, cut)]
    assert logged[0] == logged[1] and logged[0][-1] == (2, 24)


def test_guided_student_takes_the_scale_in_one_pass(toy, teacher, tmp_path):
    out = tmp_path / "guided"
    run = distill.distill_run(teacher, out, steps=4, guidance_scale_range=(1.0, 3.0), train=ROUND)
    assert (out / "rounds" / "round_0").is_dir() and (out / "rounds" / "round_1").is_dir()
    assert isinstance(run.denoiser.net, GuidanceConditioned) and run.denoiser.net.site == "noise_emb"
    student = load_run(toy, out)
    assert student.config["sample"]["guidance"] == "distilled"
    calls = []
    student.denoiser.register_forward_hook(lambda *args: calls.append(1))
    one = student.sample(32, label=0, guidance_scale=1.0, seed=3)["points"]
    three = student.sample(32, label=0, guidance_scale=3.0, seed=3)["points"]
    assert len(calls) == 8  # one pass per step at either scale
    assert not (one == three).all()


def test_fixed_scale_student_is_a_plain_run(toy, teacher, tmp_path):
    out = tmp_path / "fixed"
    distill.distill_run(teacher, out, steps=4, guidance_scale_range=(2.0, 2.0), train=ROUND)
    student = load_run(toy, out)
    assert student.config["sample"]["guidance_scale"] == 1.0
    assert distill.distillation_of(student.config)["guidance_scale_range"] == [2.0, 2.0]


def test_options_build_the_command(toy, teacher, tmp_path):
    names = [f.name for f in fields_of(distill.DistillOptions)]
    assert {"run", "out", "steps", "rounds", "guidance_scale_range", "preset", "config", "overwrite", "resume",
            "round_steps"} <= set(names)
    assert build_options(distill.DistillOptions, {"guidance_scale_range": " 1, 4"}).guidance_scale_range == "1,4"
    assert distill.scale_range(distill.parse_scale_range((1.0, 4.0))) == (1.0, 4.0)
    with pytest.raises(OptionError, match="--guidance-scale-range"):
        build_options(distill.DistillOptions, {"guidance_scale_range": "4,1"})
    with pytest.raises(OptionError, match="--out"):
        distill.distill_command(toy, build_options(distill.DistillOptions, {"run": teacher.path}))
    bad = tmp_path / "bad.toml"
    bad.write_text("[sample]\nsteps = 2\n")
    opts = build_options(distill.DistillOptions, {"run": teacher.path, "out": tmp_path / "s", "config": bad})
    with pytest.raises(ConfigError, match=r"\[sample\]"):
        distill.distill_command(toy, opts)
    good = tmp_path / "good.toml"
    good.write_text("[train]\nlr = 0.0005\nprogress = false\n")
    opts = build_options(distill.DistillOptions, {"run": teacher.path, "out": tmp_path / "s", "config": good,
                                                  "round_steps": 4})
    student = distill.distill_command(toy, opts, "cpu", command="polydiff toy distill --out s")
    assert (student.config["train"]["lr"], student.config["train"]["steps"]) == (0.0005, 4)
    again = build_options(distill.DistillOptions, {"out": tmp_path / "s", "resume": True})
    assert distill.distill_command(toy, again).path == tmp_path / "s"


def test_a_round_fits_the_teachers_schedule_to_its_length_unless_told(teacher):
    """A short round warms up over at most a tenth of it, anneals to zero from there and keeps an EMA horizon of at
    most a tenth of it; keys the caller gives are kept as given."""
    from polydiff.core.training import TrainConfig, learning_rate

    section = distill.make_plan(teacher, steps=2, train={"steps": 200})["train"]
    cfg = TrainConfig.from_dict(section)
    assert cfg.warmup <= 20 and cfg.ema_decay <= 1 - 10 / 200
    assert learning_rate(cfg, 199) < 0.02 * cfg.lr < learning_rate(cfg, 100)
    given = distill.make_plan(teacher, steps=2, train={"steps": 200, "ema_decay": 0.999, "lr_decay": "none",
                                                       "warmup": 50})["train"]
    assert (given["ema_decay"], given["lr_decay"], given["warmup"]) == (0.999, "none", 50)


def test_a_student_of_the_shipped_run_records_no_machine_path(toy):
    """Distilling the shipped checkpoint records ``distilled_from = "shipped:<folder>"``, so a shipped student names
    no machine's folder; the plan keeps the resolved path for resume."""
    from polydiff.plugins.runs import load_run as load

    shipped = load(toy, None)
    plan = distill.make_plan(shipped, steps=4, train={"steps": 10})
    assert plan["teacher_shipped"] == "shipped:moons" and plan["teacher"] == str(shipped.path.resolve())
    cfg = distill.stage_config(shipped.config, plan, distill.stages(plan)[-1])
    assert cfg["distillation"]["distilled_from"] == "shipped:moons"


def test_sigma_max_distils_the_grid_below_it(toy, teacher, tmp_path):
    """``sigma_max`` (for samplers that start part-way down, as molecules' ETKDG starts do) makes the teacher grid and
    the student's own grid start there and trains only on levels at or below it; a level outside the teacher's range
    is refused naming the option."""
    top = 1.5
    plan = distill.make_plan(teacher, steps=4, train={"steps": 10}, sigma_max=top)
    grid = distill.teacher_grid(plan)
    assert float(grid[0]) == pytest.approx(top) and plan["teacher_steps"] == 8
    out = tmp_path / "part"
    distill.distill_run(teacher, out, steps=4, train={**ROUND, "steps": 2}, sigma_max=top)
    student = load_run(toy, out)
    assert student.config["sample"]["sigma_max"] == pytest.approx(top)
    assert float(student.sigmas()[0]) == pytest.approx(top)
    torch.testing.assert_close(student.sigmas(), student_sigmas(grid, 1), rtol=1e-5, atol=0)
    for bad in (teacher.config["sample"]["sigma_max"] * 2, teacher.config["sample"]["sigma_min"] / 2):
        with pytest.raises(OptionError, match="--sigma-max"):
            distill.make_plan(teacher, steps=4, sigma_max=bad)
