"""``distill``: a few-step student of any domain's run (issue 19), by progressive and guided distillation
(``polydiff.core.distillation``), every round trained through the shared ``Trainer`` (EMA, checkpoints, exact
resume, DDP).

A distillation into ``--out STUDENT`` leaves::

    STUDENT/rounds/plan.json     the plan: teacher, grid distilled, rounds, guidance range, the rounds' train section
    STUDENT/rounds/round_0/      the guidance stage (guided distillation only): the student learns the guided teacher
    STUDENT/rounds/round_K/      round K = 1..R: N / 2^(K-1) -> N / 2^K steps; each round folder is a run folder
    STUDENT/config.json, checkpoint/, metrics.jsonl (every round, with its number), loss.png, command.txt

The final student is an ordinary run folder: its ``sample`` section names its own grid (DDIM, N / 2^R steps: the
teacher grid's every 2^R-th point, which for Karras and exponential grids is such a grid with a larger sigma_min),
so ``sample``, ``evaluate``, ``export`` and sweeps use it as they use any run. What was distilled is recorded in the
config (``distillation_of``): ``distilled_from`` (the teacher folder, or ``shipped:<folder>``), the teacher's own
``sample`` section, the teacher sampler and grid, the student's steps and rounds, the guidance range and how the
scale is embedded.

Resume is exact: the plan is read back, finished rounds are skipped, an interrupted round continues from its
checkpoint (the Trainer restores weights, EMA, optimizer and RNG states), and each round's teacher is always read
from the previous round's checkpoint, in an uninterrupted run as in a resumed one. Each round starts from a seed of
its own, so it does not depend on what ran before it in the process.

This module imports nothing heavy at import time: the CLI reads ``DistillOptions`` to build ``polydiff <domain>
distill`` without loading torch.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import merge, read_config_file, validate_config
from .errors import ConfigError, OptionError, RunExistsError, UsageError
from .folders import holds_run, locked, prepare_train_folder
from .options import option

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .domain import Domain
    from .runs import Run

TEACHER_SAMPLERS = ("ddim", "euler", "heun")
WEIGHTINGS = ("snr_trunc", "snr+1")
GUIDANCE_METHOD = "distilled"
ROUNDS = "rounds"
PLAN = "plan.json"
KEY = "distillation"
"""Where a run config records its distillation: ``config["fitted"]["distillation"]`` until ``plugins/config.py``
gives it a top-level section of its own; ``distillation_of`` reads both places."""


def parse_scale_range(text: Any) -> str:
    """``LO,HI`` (0 <= LO <= HI) normalised to ``"LO,HI"``; also takes a pair (a Python caller's tuple)."""
    parts = [p for p in str(text).strip("()[] ").replace(" ", "").split(",") if p]
    if len(parts) != 2:
        raise ValueError(f"expected 'LO,HI' (e.g. 1,4), got {text!r}")
    lo, hi = (float(p) for p in parts)
    if not 0 <= lo <= hi:
        raise ValueError(f"need 0 <= LO <= HI, got {lo:g},{hi:g}")
    return f"{lo:g},{hi:g}"


def scale_range(text: str | None) -> tuple[float, float] | None:
    """The pair of a checked ``--guidance-scale-range`` value (None: no guided distillation)."""
    if text is None:
        return None
    lo, hi = parse_scale_range(text).split(",")
    return float(lo), float(hi)


@dataclass
class DistillOptions:
    """What ``polydiff <domain> distill`` takes (the CLI adds ``--device``, ``--threads`` and ``--seed``)."""

    out: Path | None = option(None, "Student run folder to write (required).")
    run: Path | None = option(None, "Teacher run folder (default: the shipped checkpoint; with --resume: the "
                              "teacher the distillation started from).", exists=True)
    steps: int = option(4, "Sampling steps of the student (one network pass each).", min=1)
    rounds: int | None = option(None, "Halvings of the teacher grid (default: enough to reach --steps from the "
                                "teacher's own step count); the teacher grid has steps * 2^rounds steps.", min=0)
    guidance_scale_range: str | None = option(
        None, "Guided distillation: 'LO,HI', the classifier-free guidance scales the student takes as an input "
        "(one pass per step); 'W,W' bakes one scale in.", parse=parse_scale_range)
    preset: str | None = option(None, "Preset whose train section the rounds use (default: the teacher's own).")
    config: Path | None = option(None, "TOML file with a [train] table overriding the rounds' training.", exists=True)
    round_steps: int | None = option(None, "Training steps per round (default: a quarter of the teacher's).", min=1)
    sigma_max: float | None = option(
        None, "Distil only the grid below this noise level (default: the teacher's sigma_max); for a teacher that "
        "starts from a noised initial guess, e.g. molecules' ETKDG starts at init_sigma.", min=1e-6)
    teacher_sampler: str = option("ddim", "Deterministic teacher sampler whose steps are distilled.",
                                  choices=TEACHER_SAMPLERS)
    resume: bool = option(False, "Continue the distillation in --out (its plan; finished rounds are kept).",
                          flags=("--resume",))
    overwrite: bool = option(False, "Replace the student and rounds in --out.", flags=("--overwrite",))


# ---- the record in a run config ----------------------------------------------------------------------------------

def distillation_of(cfg: dict[str, Any]) -> dict[str, Any] | None:
    """What a run config records of its distillation, or None for a run that was trained, not distilled."""
    return cfg.get(KEY)


def with_distillation(cfg: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` recording ``info`` in its ``distillation`` section (``plugins.config.DistillationSection``)."""
    return {**cfg, KEY: info}


# ---- shipped students ---------------------------------------------------------------------------------------------

GOAL = "goal.json"
"""A shipped student's verdict against its goal: ``{"met": bool, "goal": str, "measured": str, "command": str}``,
written from the benchmark that measured it, so ``demo`` uses a student only where it was shown to be good enough."""


def shipped_student(domain: "Domain") -> Path | None:
    """The few-step student shipped beside the domain's checkpoint (``<checkpoint>-4step``), if there is one."""
    if domain.shipped_run is None:
        return None
    folder = Path(domain.shipped_run).with_name(Path(domain.shipped_run).name + "-4step")
    return folder if (folder / "config.json").is_file() else None


def student_verdict(folder: Path) -> dict[str, Any] | None:
    """The student's ``goal.json`` (see ``GOAL``), or None when it records no measurement."""
    path = Path(folder) / GOAL
    return json.loads(path.read_text()) if path.is_file() else None


# ---- students: build and load ------------------------------------------------------------------------------------

# ---- the plan ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stage:
    """One training round: the student learns ``merge`` teacher steps (on a grid of ``teacher_steps``) as one."""

    index: int
    merge: int
    teacher_steps: int
    scale_range: tuple[float, float] | None
    scale_student: bool

    @property
    def student_steps(self) -> int:
        return self.teacher_steps // self.merge

    @property
    def halvings(self) -> int:
        """Halvings of the plan's teacher grid done when this round ends (the guidance stage does none)."""
        return self.index


def stages(plan: dict[str, Any]) -> list[Stage]:
    """The rounds of a plan: the guidance stage (guided distillation), then one round per halving."""
    found = plan["guidance_scale_range"]
    span = tuple(found) if found else None
    ranged = span is not None and span[0] < span[1]
    out = [Stage(0, 1, plan["teacher_steps"], span, ranged)] if plan["guidance_stage"] else []
    for k in range(1, plan["rounds"] + 1):
        out.append(Stage(k, 2, plan["teacher_steps"] // 2 ** (k - 1), span if ranged else None, True))
    return out


def _round_train(teacher: "Run", train: dict[str, Any] | None) -> dict[str, Any]:
    """The rounds' train section: the teacher's (or a preset's, given as ``train``) with a quarter of its steps
    unless ``train`` says how many, checked against ``TrainConfig``.

    The teacher's schedule was made for a long run from scratch; a round is short and starts from trained weights,
    so unless ``train`` sets them: warm-up takes at most a tenth of the round, the learning rate anneals to zero
    from there (as Salimans & Ho anneal within each round; ``linear`` if the teacher's did not decay), and the EMA's
    horizon is at most a tenth of the round, so the round's student is not mostly its initial weights."""
    from polydiff.core.training import TrainConfig

    given = train or {}
    base = dict(teacher.config["train"])
    base["steps"] = max(1, base["steps"] // 4)
    section = merge(base, given)
    n = int(section["steps"])
    if "warmup" not in given:
        section["warmup"] = min(int(section["warmup"]), n // 10)
    if "decay_from" not in given:
        section["decay_from"] = section["warmup"]
    if "lr_decay" not in given and section.get("lr_decay", "none") == "none":
        section["lr_decay"] = "linear"
    if "ema_decay" not in given:
        section["ema_decay"] = min(float(section["ema_decay"]), max(0.0, 1.0 - 10.0 / n))
    try:
        TrainConfig.from_dict(section)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[train] {exc}") from None
    return section


def _guidance_plan(teacher: "Run", span: tuple[float, float] | None) -> dict[str, Any]:
    """How guidance is distilled: the range, whether a guidance stage runs, and how the student embeds the scale."""
    from polydiff.core.distillation import GuidanceConditioned, takes_guidance_scale

    inherited = distillation_of(teacher.config) or {}
    if inherited.get("guidance_embedding"):
        if span is not None:
            raise OptionError("--guidance-scale-range", "the teacher already takes the guidance scale as an input "
                              f"(range {inherited['guidance_scale_range']}); distil it without a range")
        return {"guidance_scale_range": inherited["guidance_scale_range"], "guidance_stage": False,
                "guidance_embedding": inherited["guidance_embedding"]}
    if span is None:
        return {"guidance_scale_range": None, "guidance_stage": False, "guidance_embedding": None}
    if teacher.domain.null_cond is None:
        raise OptionError("--guidance-scale-range", f"the {teacher.domain.name} domain has no null condition, so "
                          "its runs have no classifier-free guidance to distil")
    if span[0] == span[1]:
        return {"guidance_scale_range": list(span), "guidance_stage": True, "guidance_embedding": None}
    net = teacher.denoiser.net
    if not takes_guidance_scale(net):
        raise OptionError("--guidance-scale-range", f"{type(net).__name__} cannot take the guidance scale as an "
                          "input (no noise embedding found); give one scale as 'W,W'")
    return {"guidance_scale_range": list(span), "guidance_stage": True,
            "guidance_embedding": GuidanceConditioned(net).spec()}


def make_plan(teacher: "Run", *, steps: int = 4, rounds: int | None = None,
              guidance_scale_range: tuple[float, float] | None = None, train: dict[str, Any] | None = None,
              teacher_sampler: str = "ddim", weighting: str = "snr_trunc", grid: str | None = None,
              sigma_max: float | None = None, seed: int = 0) -> dict[str, Any]:
    """Everything a distillation does, fixed before it starts (written to ``rounds/plan.json``). ``sigma_max`` (at
    most the teacher's) distils the grid that starts there, for samplers that start part-way down the noise."""
    from polydiff.core.distillation import RAMP_GRIDS

    s = teacher.config["sample"]
    kind = grid or (s["grid"] if s["grid"] in RAMP_GRIDS else "karras")
    if kind not in RAMP_GRIDS:
        raise OptionError("--grid", f"distillation halves a {' or '.join(RAMP_GRIDS)} grid, not {kind!r}")
    if teacher_sampler not in TEACHER_SAMPLERS:
        raise OptionError("--teacher-sampler", f"must be one of {', '.join(TEACHER_SAMPLERS)}, not {teacher_sampler!r}")
    if weighting not in WEIGHTINGS:
        raise OptionError("--weighting", f"must be one of {', '.join(WEIGHTINGS)}, not {weighting!r}")
    if steps < 1:
        raise OptionError("--steps", f"must be at least 1, got {steps}")
    top = float(s["sigma_max"]) if sigma_max is None else float(sigma_max)
    if not float(s["sigma_min"]) < top <= float(s["sigma_max"]):
        raise OptionError("--sigma-max", f"must lie in ({s['sigma_min']}, {s['sigma_max']}] (the teacher's sigma "
                          f"range); got {sigma_max}")
    guidance = _guidance_plan(teacher, guidance_scale_range)
    if rounds is None:
        rounds = max(1, math.ceil(math.log2(max(s["steps"], 1) / steps)))
    if rounds < (0 if guidance["guidance_stage"] else 1):
        raise OptionError("--rounds", f"must be at least 1 without a guidance range, got {rounds}")
    from .runs import shipped_name

    return {"teacher": str(Path(teacher.path).resolve()), "teacher_shipped": shipped_name(teacher),
            "teacher_sample": dict(s), "teacher_sampler": teacher_sampler,
            "grid": kind, "teacher_steps": steps * 2**rounds, "sigma_min": s["sigma_min"], "sigma_max": top,
            "steps": steps, "rounds": rounds, "weighting": weighting, "train": _round_train(teacher, train),
            "seed": seed, **guidance}


def teacher_grid(plan: dict[str, Any]) -> "torch.Tensor":
    """The grid of the plan's teacher sampler: ``teacher_steps`` steps of the plan's grid kind."""
    from polydiff.core.schedules import make_grid

    return make_grid(plan["grid"], plan["teacher_steps"], plan["sigma_min"], plan["sigma_max"])


def stage_config(teacher_cfg: dict[str, Any], plan: dict[str, Any], stage: Stage) -> dict[str, Any]:
    """The run config of a round's student: the teacher's, sampling with DDIM on the student's own grid, trained
    with the plan's train section, and recording what was distilled."""
    from polydiff.core.distillation import student_grid

    steps, sigma_min = student_grid(teacher_grid(plan), stage.halvings)
    sample = {"sampler": "ddim", "steps": steps, "grid": plan["grid"], "sigma_min": sigma_min,
              "sigma_max": plan["sigma_max"]}
    span = plan["guidance_scale_range"]
    if plan["guidance_embedding"]:
        lo, hi = span
        scale = min(max(float(teacher_cfg["sample"]["guidance_scale"]), lo), hi)
        sample.update(guidance=GUIDANCE_METHOD, guidance_scale=scale)
    elif span:
        sample.update(guidance="cfg", guidance_scale=1.0)
    teacher = plan.get("teacher_shipped") or plan["teacher"]  # no machine's path in a shipped run
    info = {"distilled_from": teacher, "method": "progressive", "teacher_sample": plan["teacher_sample"],
            "teacher_sampler": plan["teacher_sampler"],
            "teacher_grid": {k: plan[k] for k in ("grid", "teacher_steps", "sigma_min", "sigma_max")},
            "steps": steps, "rounds": stage.halvings, "round": stage.index, "weighting": plan["weighting"],
            "guidance_scale_range": span, "guidance_embedding": plan["guidance_embedding"]}
    train = {**plan["train"], "seed": plan["seed"] + stage.index}
    return with_distillation(merge(teacher_cfg, {"sample": sample, "train": train}), info)


# ---- one round ---------------------------------------------------------------------------------------------------

def stage_loss(domain: "Domain", cfg: dict[str, Any], teacher: Any, grid: "torch.Tensor", stage: Stage,
               plan: dict[str, Any]):
    """The Trainer's loss for a round: the domain's batches, condition dropout and noise, and the round's target."""
    from polydiff.core.distillation import distillation_loss

    from .domain import Batch

    dropout = cfg["diffusion"]["cond_dropout"]
    sigma_data = cfg["diffusion"]["sigma_data"]

    def loss(model, batch, generator):
        batch = batch if isinstance(batch, Batch) else Batch(batch)
        cond = batch.cond
        if dropout > 0 and domain.drop_cond is not None and cond is not None:
            cond = domain.drop_cond(cond, dropout, generator)
        noise = domain.noise(batch) if domain.noise is not None else None
        return distillation_loss(model, teacher, batch.x0, grid, merge=stage.merge, method=plan["teacher_sampler"],
                                 cond=cond, scale_range=stage.scale_range, scale_student=stage.scale_student,
                                 noise=noise, group=batch.group, generator=generator, weighting=plan["weighting"],
                                 sigma_data=sigma_data)

    return loss


def _stage_teacher(domain: "Domain", stage: Stage, teacher_module: "nn.Module") -> Any:
    """What the round's target is computed from: the guided teacher in the guidance stage, else the teacher."""
    from polydiff.core.distillation import guided_by_scale

    if stage.merge == 1:
        return guided_by_scale(teacher_module, domain.null_cond)
    return teacher_module


def _init_student(student: "nn.Module", teacher_module: "nn.Module") -> None:
    """Start the student as its teacher (a new guidance embedding keeps its zero initialisation)."""
    from polydiff.core.distillation import GuidanceConditioned

    if isinstance(student.net, GuidanceConditioned) and not isinstance(teacher_module.net, GuidanceConditioned):
        student.net.net.load_state_dict(teacher_module.net.state_dict())
    else:
        student.load_state_dict(teacher_module.state_dict())


def _checkpoint_step(folder: Path) -> int:
    """The step of a round folder's checkpoint (0 when it has none)."""
    from polydiff.core.checkpoint import find_checkpoint

    found = find_checkpoint(folder / "checkpoint")
    return int(json.loads((found / "state.json").read_text())["step"]) if found else 0


def _load_round(domain: "Domain", folder: Path) -> "nn.Module":
    """A finished round's EMA student, the next round's teacher (frozen, in eval mode)."""
    from polydiff.core.training import load_weights

    from .runs import build_denoiser

    cfg = json.loads((folder / "config.json").read_text())
    module = build_denoiser(domain, cfg)
    load_weights(folder, module, ema=True)
    return module.eval().requires_grad_(False)


def run_stage(domain: "Domain", plan: dict[str, Any], stage: Stage, teacher_cfg: dict[str, Any],
              teacher_module: "nn.Module", dataset: Any, folder: Path, device: str,
              stop_after: int | None = None) -> tuple["nn.Module", dict[str, Any], int]:
    """Train one round into ``folder`` (continuing its checkpoint if it has one); returns the EMA student, its
    config and the steps trained in this call."""
    import torch

    from polydiff.core.distillation import student_sigmas
    from polydiff.core.training import Trainer, TrainConfig

    from .manager import get_manager
    from .runs import build_denoiser

    cfg = validate_config(stage_config(teacher_cfg, plan, stage), domain.sections)
    torch.manual_seed(cfg["train"]["seed"])
    student = build_denoiser(domain, cfg)
    _init_student(student, teacher_module)
    grid = student_sigmas(teacher_grid(plan), max(stage.halvings - 1, 0))
    target_from = _stage_teacher(domain, stage, teacher_module)
    manager = get_manager()
    trainer = Trainer(student, stage_loss(domain, cfg, target_from, grid, stage, plan), dataset, folder,
                      TrainConfig.from_dict(cfg["train"]), collate=domain.collate, device=device, run_config=cfg,
                      on_step_end=lambda step, loss: manager.notify("polydiff_train_step_end", run_dir=folder,
                                                                    step=step, loss=loss),
                      stop_after=stop_after)
    teacher_module.to(trainer.device)
    start = _checkpoint_step(folder)
    ema = trainer.fit(resume=start > 0)
    return ema.eval(), cfg, trainer.step - start


# ---- the workflow ------------------------------------------------------------------------------------------------

def _prepare_out(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse an ``--out`` holding a student or rounds unless resuming or overwriting (clear it then), and a
    resume into a run that is not a distillation."""
    rounds = out / ROUNDS
    if resume and holds_run(out) and not (rounds / PLAN).is_file():
        raise RunExistsError(f"{out} holds a run that is not a distillation; choose another --out")
    if resume or not (holds_run(out) or rounds.exists()):
        return
    if not overwrite:
        raise RunExistsError(f"{out} already holds a distillation; pass --resume to continue it, --overwrite to "
                             "replace it, or choose another --out")
    prepare_train_folder(out, resume=False, overwrite=True)
    shutil.rmtree(rounds)


def _read_plan(out: Path, teacher: "Run", train: dict[str, Any] | None) -> dict[str, Any] | None:
    """The saved plan of a resumed distillation with this call's train overrides (None if there is none)."""
    path = out / ROUNDS / PLAN
    if not path.is_file():
        return None
    plan = json.loads(path.read_text())
    if plan["teacher"] != str(Path(teacher.path).resolve()):
        raise UsageError(f"{out} distils {plan['teacher']}, not {teacher.path}; resume it with --run {plan['teacher']}")
    return {**plan, "train": merge(plan["train"], train or {})}


def _finish(out: Path, done: list[tuple[Stage, Path]]) -> None:
    """Write the last round's student into ``out`` as an ordinary run folder, with every round's metrics."""
    from polydiff.core.checkpoint import find_checkpoint, write_json
    from polydiff.core.training import plot_losses

    last = done[-1][1]
    staged, target = out / "checkpoint.tmp", out / "checkpoint"
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(find_checkpoint(last / "checkpoint"), staged)
    if target.exists():
        shutil.rmtree(target)
    os.replace(staged, target)
    rows, offset = [], 0
    for stage, folder in done:
        metrics = folder / "metrics.jsonl"
        text = metrics.read_text() if metrics.is_file() else ""
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        rows += [{**r, "round": stage.index, "round_step": r["step"], "step": offset + r["step"]} for r in lines]
        offset += _checkpoint_step(folder)
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    plot_losses(out / "metrics.jsonl", out / "loss.png")
    write_json(out / "config.json", json.loads((last / "config.json").read_text()))


def _train_rounds(teacher: "Run", plan: dict[str, Any], out: Path, device: str,
                  stop_after: int | None) -> tuple[list[tuple[Stage, Path]], "Run | None"]:
    """Train the plan's rounds that are not finished, each from the previous one's checkpoint; returns the finished
    rounds, and the round in progress as a Run when ``stop_after`` steps ran out first."""
    from tqdm.auto import tqdm

    from .runs import Run, load_run

    domain, todo = teacher.domain, stages(plan)
    dataset = domain.build_dataset(teacher.config["data"], "train")
    teacher_cfg = {**teacher.config, "fitted": teacher.fitted}
    bar = tqdm(total=len(todo), desc="distill", unit="round", disable=not plan["train"].get("progress", True))
    done: list[tuple[Stage, Path]] = []
    left = stop_after
    try:
        for stage in todo:
            folder = out / ROUNDS / f"round_{stage.index}"
            bar.set_description(f"distill round {stage.index}/{plan['rounds']} "
                                f"({stage.teacher_steps} -> {stage.student_steps} steps)")
            if _checkpoint_step(folder) < plan["train"]["steps"]:
                if left == 0:
                    return done, load_run(domain, done[-1][1]) if done else None
                module = _load_round(domain, done[-1][1]) if done else _copy_teacher(teacher)
                ema, cfg, trained = run_stage(domain, plan, stage, teacher_cfg, module, dataset, folder, device, left)
                if _checkpoint_step(folder) < cfg["train"]["steps"]:
                    return done, Run(domain, cfg, ema, folder, next(ema.parameters()).device)
                left = None if left is None else left - trained
            done.append((stage, folder))
            bar.update(1)
    finally:
        bar.close()
    return done, None


def distill_run(teacher: "Run", out: Path, *, steps: int = 4, rounds: int | None = None,
                guidance_scale_range: tuple[float, float] | None = None, train: dict[str, Any] | None = None,
                teacher_sampler: str = "ddim", weighting: str = "snr_trunc", grid: str | None = None,
                sigma_max: float | None = None, device: str = "cpu", resume: bool = False, overwrite: bool = False,
                seed: int = 0, command: str | None = None, stop_after: int | None = None) -> "Run":
    """Distil ``teacher`` into a student of ``steps`` DDIM steps in the run folder ``out`` and return it.

    ``train`` overrides the rounds' train section (``steps`` per round, ``lr``, ...); ``guidance_scale_range``
    (lo, hi) makes a guidance-conditioned student (lo == hi: one scale baked in); ``sigma_max`` distils only the
    grid below it (the student then samples from there, as molecules' ETKDG starts do). ``resume`` continues ``out``
    exactly (its saved plan; this call's ``train`` overrides are merged in); ``stop_after`` returns after that many
    training steps in this call (time-boxed runs, tests), with the round in progress as the Run. Under ``torchrun``
    rank 0 guards and writes the folder; the other ranks return the last round's student.
    """
    from polydiff.core.training import distributed_context

    from .runs import load_run

    out = Path(out)
    if out.resolve() == Path(teacher.path).resolve():
        raise OptionError("--out", "write the student into a new folder, not the teacher's")
    first = distributed_context()[0] == 0
    with locked(out) if first else contextlib.nullcontext(out):
        if first:
            _prepare_out(out, resume=resume, overwrite=overwrite)
        plan = (_read_plan(out, teacher, train) if resume else None) or make_plan(
            teacher, steps=steps, rounds=rounds, guidance_scale_range=guidance_scale_range, train=train,
            teacher_sampler=teacher_sampler, weighting=weighting, grid=grid, sigma_max=sigma_max, seed=seed)
        if first:
            (out / ROUNDS).mkdir(parents=True, exist_ok=True)
            (out / ROUNDS / PLAN).write_text(json.dumps(plan, indent=2, sort_keys=True))
            if command:
                with open(out / "command.txt", "a") as f:
                    f.write(command + "\n")
        done, partial = _train_rounds(teacher, plan, out, device, stop_after)
        if partial is not None:
            return partial
        if not first:
            return load_run(teacher.domain, done[-1][1], device)
        _finish(out, done)
    return load_run(teacher.domain, out, device)


def _copy_teacher(teacher: "Run") -> "nn.Module":
    """A frozen copy of the teacher's denoiser (the caller's Run is left as it was)."""
    import copy

    return copy.deepcopy(teacher.denoiser).eval().requires_grad_(False)


def distill_command(domain: "Domain", options: DistillOptions, device: str = "cpu", *, seed: int = 0,
                    command: str | None = None) -> "Run":
    """What ``polydiff <domain> distill`` does: load the teacher, read ``--preset`` and ``--config`` into the rounds'
    train section, and ``distill_run``."""
    from .runs import load_run

    if options.out is None:
        raise OptionError("--out", "give the folder to write the student into")
    out = Path(options.out)
    teacher_dir = options.run
    plan_path = out / ROUNDS / PLAN
    if teacher_dir is None and options.resume and plan_path.is_file():
        teacher_dir = Path(json.loads(plan_path.read_text())["teacher"])
    teacher = load_run(domain, teacher_dir, device)
    train: dict[str, Any] = dict(domain.preset(options.preset).get("train", {})) if options.preset else {}
    if options.config is not None:
        extra = read_config_file(options.config)
        unknown = sorted(set(extra) - {"train"})
        if unknown:
            raise ConfigError(f"{options.config}: distill reads only a [train] table, not [{unknown[0]}]")
        train = merge(train, extra.get("train", {}))
    if options.round_steps is not None:
        train["steps"] = options.round_steps
    return distill_run(teacher, out, steps=options.steps, rounds=options.rounds,
                       guidance_scale_range=scale_range(options.guidance_scale_range), train=train,
                       teacher_sampler=options.teacher_sampler, sigma_max=options.sigma_max, device=device,
                       resume=options.resume,
                       overwrite=options.overwrite, seed=seed, command=command)
