"""``train-control``: a ControlNet branch (``polydiff.core.control``) on a frozen run of any domain whose network
exposes its residual features, trained through the shared ``Trainer``; ``sample --control FILE`` samples with it.

A domain declares the kinds of control it can compute from a clean training example (proposed as
``Domain.controls: dict[str, Control]``: points, the partial scan seen from a random camera; audio, the energy
envelope); ``train-control --run BASE --control KIND --out RUN`` trains the branch on the base run's data, computing
each example's control on the fly. The control run is an ordinary run folder whose config is the base's plus a
``control`` section (``ControlSection``: the kind, the base run, the control's shape, the encoder, the control dropout
and the default guidance scale on the control) and whose checkpoint holds the whole controlled network (the frozen
base included), so it loads on its own; ``export`` leaves the frozen base out when it is a shipped checkpoint, which
every install has (the branch alone ships, half the size, and loads on top of it).

Design: like latent runs, a control run is trained and loaded through a *controlled view* of its domain
(``controlled_domain``): its network is the ControlNet around the domain's network, its ``sample`` options add
``control`` and ``control_scale``, and its ``generate`` is the domain's own, handed a ``ControlRun`` whose ``draw``
adds each sample's control to the condition it draws with (``core.control.with_control``; a dict of per-row tensors,
so batched guidance and the domains' own row operations keep every control with its sample) and whose ``guided``
keeps the control in the null condition. The domain's code, classifier-free guidance on its own condition and the
guidance methods therefore work unchanged; guidance on the control (``ControlGuided``) is the run's denoiser as the
domain's code sees it. ``evaluate`` scores samples controlled by the test split's own controls.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polydiff.core.checkpoint import load_checkpoint
from polydiff.core.control import (ControlGuided, ControlNet, Controllable, control_encoder, encoder_kind,
                                   find_control_net, split_control, with_control)
from polydiff.core.training import Trainer, TrainConfig

from .capabilities import ControlSampleOptions, TrainControlOptions
from .config import ControlSection, merge, read_config_file, validate_config, validate_section
from .domain import Batch, Control, Domain, EvaluateRequest, SampleRequest, Samples
from .errors import ConfigError, OptionError, UsageError
from .folders import locked, prepare_train_folder
from .manager import get_manager
from .options import fields_of, option
from .personalize import cat_rows, load_any, read_array
from .runs import SHIPPED, Run, build_denoiser, build_schedule, default_loss, load_run, shipped_folder, shipped_name

EVALUATE_CONTROLS = 2000
DEFAULT_STEPS = 1000


def controls_of(domain: Domain) -> dict[str, Control]:
    """The control kinds a domain declares (``Domain.controls``; {} until the contract has the field)."""
    return dict(getattr(domain, "controls", None) or {})


def _unknown_control(kind: str) -> Control:
    """A stand-in for a kind the domain no longer declares: the run samples from control files, but cannot compute
    controls from data."""

    def compute(batch: Batch, generator: torch.Generator) -> torch.Tensor:
        raise UsageError(f"the domain no longer declares the control {kind!r}, so it cannot compute it from data")

    return Control(compute, f"{kind} (not declared by the domain)")


# ---- the controlled view ------------------------------------------------------------------------------------------


def _signal_value(value: Any) -> Any:
    """``--control``: an existing file (as a Path), or controls given as an array or tensor (Python callers)."""
    if torch.is_tensor(value) or isinstance(value, np.ndarray):
        return value
    path = Path(value)
    if not path.exists():
        raise ValueError(f"{path} does not exist; give a control file")
    return path


def _with_control_options(cls: type | None, names: tuple[str, ...], domain: Domain) -> type:
    """The domain's options dataclass ``cls`` with ``ControlSampleOptions``' fields ``names`` added."""
    own = dataclasses.fields(cls) if cls is not None else ()
    hints = typing.get_type_hints(cls) if cls is not None else {}
    clash = {f.name for f in own} & set(names)
    if clash:
        raise UsageError(f"the {domain.name} domain declares option(s) {', '.join(sorted(clash))}, which control runs "
                         "add; rename them")
    spec = [(f.name, hints[f.name], dataclasses.field(default=f.default, default_factory=f.default_factory,
                                                      metadata=f.metadata)) for f in own]
    extra = {f.name: f for f in fields_of(ControlSampleOptions)}
    for name in names:
        f = extra[name]
        if name == "control":
            spec.append((name, Any, option(None, f.spec.help, parse=_signal_value)))
        else:
            spec.append((name, f.type, option(f.default, f.spec.help, min=f.spec.min)))
    return dataclasses.make_dataclass(f"Controlled{cls.__name__ if cls else 'Options'}", spec)


def _inner_options(domain: Domain, command: str, opts: Any) -> Any:
    """The domain's own options instance inside a controlled one."""
    cls = domain.options.get(command)
    if cls is None:
        return None
    return cls(**{f.name: getattr(opts, f.name) for f in dataclasses.fields(cls)})


def _drop_cond(domain: Domain, cond: Any, p: float, generator: torch.Generator) -> Any:
    """The domain's condition dropout inside a controlled condition (the control's own dropout is separate)."""
    base, control, keep = split_control(cond)
    if control is None:
        return domain.drop_cond(cond, p, generator)
    return with_control(domain.drop_cond(base, p, generator) if base is not None else None, control, keep)


def _null_cond(domain: Domain, cond: Any) -> Any:
    """The domain's null condition, keeping the control (guidance on the domain's condition, as with prompts)."""
    base, control, keep = split_control(cond)
    if control is None:
        return domain.null_cond(cond)
    return with_control(domain.null_cond(base) if base is not None else None, control, keep)


def build_encoder(control: Control, spec: dict[str, Any], net: nn.Module) -> nn.Module:
    """The control encoder a ``control`` section describes, giving hints for the network's first feature."""
    channels, axis = net.feature_channels()[0], net.feature_axis
    if spec["encoder"] == "domain":
        if control.encoder is None:
            raise UsageError(f"the control {spec['kind']!r} has no encoder of the domain's")
        return control.encoder(list(spec["control_shape"]), channels, axis)
    return control_encoder(spec["encoder"], spec["control_shape"], channels, spec["width"])


def _controlled_network(domain: Domain, control: Control, cfg: dict[str, Any]) -> ControlNet:
    """The domain's network (weights loaded later) wrapped as a ControlNet."""
    net = domain.build_network(cfg)
    if not isinstance(net, Controllable):
        raise UsageError(f"the {domain.name} network ({type(net).__name__}) does not expose its residual features, so "
                         "it cannot be controlled (see polydiff.core.control)")
    spec = cfg["control"]
    return ControlNet(net, build_encoder(control, spec, net), learned_null=spec["dropout"] > 0)


def controlled_domain(domain: Domain, kind: str, control: Control) -> Domain:
    """The controlled view of ``domain`` for control ``kind`` (see the module docstring)."""
    options = dict(domain.options)
    options["sample"] = _with_control_options(domain.options.get("sample"), ("control", "control_scale"), domain)
    options["evaluate"] = _with_control_options(domain.options.get("evaluate"), ("control_scale",), domain)
    return dataclasses.replace(
        domain,
        sections={**domain.sections, "control": ControlSection},
        build_network=partial(_controlled_network, domain, control),
        generate=partial(_controlled_generate, domain, control),
        evaluate=partial(_controlled_evaluate, domain, control),
        options=options,
        drop_cond=partial(_drop_cond, domain) if domain.drop_cond is not None else None,
        null_cond=partial(_null_cond, domain) if domain.null_cond is not None else None,
        loss=None,  # the branch learns the diffusion loss (a domain's override is for its other networks: vocoders)
        shipped_run=None,
    )


def _count(cond: Any) -> int | None:
    """The rows of a condition: the first dimension of its first tensor (None: no tensor in it)."""
    if torch.is_tensor(cond):
        return cond.shape[0]
    if isinstance(cond, dict):
        for value in cond.values():
            found = _count(value)
            if found is not None:
                return found
    return None


@dataclass
class ControlRun(Run):
    """A control run as the domain's code sees it: its domain is the controlled view, its ``denoiser`` guides on the
    control at ``scale``, and ``draw`` follows the next rows of ``signal`` (cycling; one row serves every sample)."""

    signal: torch.Tensor | None = None
    scale: float = 1.0
    taken: int = 0

    def rows(self, n: int, consume: bool = True) -> torch.Tensor | None:
        """The controls of the next ``n`` samples."""
        if self.signal is None:
            return None
        idx = (self.taken + torch.arange(n)) % self.signal.shape[0]
        if consume:
            self.taken += n
        return self.signal[idx].to(self.device)

    def guided(self, cond: Any, settings: Any, base: Any = None) -> Any:
        """``Run.guided`` with the next samples' controls in the condition (the domain's code calls it with its own
        condition, before ``draw``)."""
        n = _count(cond)
        rows = None if n is None else self.rows(n, consume=False)
        return super().guided(cond if rows is None else with_control(cond, rows), settings, base)

    def draw(self, like: torch.Tensor, request: SampleRequest, *, cond: Any = None, denoiser: Any = None,
             noise: Any = None, sigmas: torch.Tensor | None = None) -> torch.Tensor:
        den = self.guided(cond, request.settings) if denoiser is None else denoiser
        rows = self.rows(like.shape[0])
        if rows is not None:
            cond = with_control(cond, rows)
        return super().draw(like, request, cond=cond, denoiser=den, noise=noise, sigmas=sigmas)


def control_view(view: Domain, run: Run, signal: torch.Tensor | None, scale: float) -> ControlRun:
    """``run`` as the domain's code sees it while following ``signal``."""
    denoiser = ControlGuided(run.denoiser, scale) if signal is not None and scale != 1.0 else run.denoiser
    return ControlRun(view, run.config, denoiser, run.path, run.device, signal=signal, scale=scale)


def read_signal(control: Control, value: Any, config: dict[str, Any]) -> torch.Tensor | None:
    """Controls [m, ...] from ``--control``: a file read by the domain (default: a .npy/.pt array) or an array;
    a single control (shaped like one) is one row for every sample."""
    if value is None:
        return None
    if torch.is_tensor(value) or isinstance(value, np.ndarray):
        signal = torch.as_tensor(value).float()
    elif control.read is not None:
        signal = control.read(Path(value), config)
    else:
        signal = read_array(Path(value)).x0 if Path(value).suffix in (".npy", ".pt") else None
        if signal is None:
            raise OptionError("--control", f"{value}: expected a .npy or .pt array of controls")
    shape = list(config["control"]["control_shape"])
    if list(signal.shape) == shape:
        signal = signal[None]
    if list(signal.shape[1:]) != shape:
        raise OptionError("--control", f"controls of this run are shaped {shape} (one per sample, or one for all); "
                                       f"got {list(signal.shape)}")
    return signal.float()


def _scale(run: Run, opts: Any) -> float:
    value = getattr(opts, "control_scale", None)
    return float(run.config["control"]["guidance_scale"] if value is None else value)


def _controlled_generate(domain: Domain, control: Control, run: Run, request: SampleRequest) -> Samples:
    """The domain's ``generate``, drawing with the request's ``control`` rows."""
    opts = request.options
    signal = read_signal(control, getattr(opts, "control", None), run.config)
    view = control_view(run.domain, run, signal, _scale(run, opts))
    samples = domain.generate(view, dataclasses.replace(request, options=_inner_options(domain, "sample", opts)))
    value = getattr(opts, "control", None)
    samples.meta["control"] = {"kind": run.config["control"]["kind"], "scale": view.scale,
                               "file": str(value) if isinstance(value, (str, Path)) else None}
    return samples


@torch.no_grad()
def split_controls(domain: Domain, control: Control, config: dict[str, Any], split: str, n: int,
                   generator: torch.Generator) -> torch.Tensor:
    """The controls of the first ``n`` examples of a split, in order."""
    dataset = domain.build_dataset(config["data"], split)
    parts, count = [], min(n, len(dataset))
    for start in range(0, count, 256):
        parts.append(control.compute(example_batch(domain, dataset, range(start, min(start + 256, count))),
                                     generator).cpu())
    return cat_rows(parts)


def _controlled_evaluate(domain: Domain, control: Control, run: Run, request: EvaluateRequest) -> dict[str, float]:
    """The domain's ``evaluate``, its samples controlled by the test split's own controls (row i: example i)."""
    generator = torch.Generator().manual_seed(0)
    signal = split_controls(domain, control, run.config, "test", EVALUATE_CONTROLS, generator)
    view = control_view(run.domain, run, signal, _scale(run, request.options))
    return domain.evaluate(view, dataclasses.replace(request, options=_inner_options(domain, "evaluate",
                                                                                      request.options)))


# ---- training -----------------------------------------------------------------------------------------------------


def example_batch(domain: Domain, dataset: Any, idx: Any) -> Batch:
    """Examples ``idx`` of a dataset as a Batch, refusing ragged batches (controls are one per row)."""
    idx = list(idx)
    items = dataset[torch.as_tensor(idx)] if torch.is_tensor(dataset) else [dataset[i] for i in idx]
    batch = domain.collate(items) if domain.collate is not None else (
        items if torch.is_tensor(items) else torch.stack(items))
    batch = batch if isinstance(batch, Batch) else Batch(batch)
    if batch.group is not None:
        raise UsageError(f"control runs need one example per row; the {domain.name} domain's batches are ragged")
    return batch


def resolve_control(domain: Domain, control: str | Control, kind: str | None = None) -> tuple[str, Control]:
    """(kind, Control) for a kind the domain declares, or a Control given directly (named ``kind``)."""
    if isinstance(control, Control):
        if not kind:
            raise UsageError("name a control given as a Control object (kind=...)")
        return kind, control
    kinds = controls_of(domain)
    if control not in kinds:
        known = ", ".join(kinds) or "none"
        raise OptionError("--control", f"the {domain.name} domain declares no control {control!r}; controls: {known}")
    return control, kinds[control]


def _train_section(base: Run, steps: int, lr: float | None, batch_size: int | None, seed: int,
                   progress: bool) -> dict[str, Any]:
    """The base run's training settings with the branch's steps, learning rate, batch and seed; a constant
    learning rate without warm-up, as ControlNet trains."""
    t = base.config["train"]
    return {**t, "steps": steps, "lr": t["lr"] if lr is None else lr,
            "batch_size": t["batch_size"] if batch_size is None else batch_size, "seed": seed, "warmup": 0,
            "lr_decay": "none", "decay_from": 0, "ckpt_every": min(t["ckpt_every"], steps),
            "log_every": max(1, min(t["log_every"], steps // 10)), "progress": progress}


def control_config(base: Run, kind: str, control: Control, shape: list[int], train: dict[str, Any],
                   dropout: float, guidance_scale: float) -> dict[str, Any]:
    """The control run's config: the base's, the branch's train section, and the ``control`` section."""
    net = base.denoiser.net
    if not isinstance(net, Controllable):
        raise UsageError(f"the {base.domain.name} network ({type(net).__name__}) does not expose its residual "
                         "features, so it cannot be controlled (see polydiff.core.control)")
    encoder = "domain" if control.encoder is not None else encoder_kind(shape, net.feature_axis)
    where = shipped_name(base) or str(Path(base.path).resolve())  # no machine path in a shipped run
    section = {"kind": kind, "base_run": where, "control_shape": shape, "encoder": encoder,
               "dropout": dropout, "guidance_scale": guidance_scale}
    return {**base.config, "fitted": base.fitted, "train": train,
            "control": validate_section("control", section, ControlSection)}


def _loss(view: Domain, control: Control, cfg: dict[str, Any], dropout: float):
    """The base run's loss with each row's control computed from its clean example (dropped with ``dropout``)."""
    inner = default_loss(view, cfg)

    def loss(model: nn.Module, batch: Any, generator: torch.Generator) -> torch.Tensor:
        batch = batch if isinstance(batch, Batch) else Batch(batch)
        signal = control.compute(batch, generator)
        keep = None
        if dropout > 0:
            keep = torch.rand(signal.shape[0], generator=generator, device=generator.device) >= dropout
        return inner(model, Batch(batch.x0, with_control(batch.cond, signal.to(batch.x0.device), keep), batch.group),
                     generator)

    return loss


def control_override(extra: dict[str, Any], source: str = "the override") -> dict[str, Any]:
    """The part of a control run's config a user may change: the ``train`` table and the training noise levels
    (``diffusion.schedule_args``; a ControlNet learns most where the control decides the sample, at high noise).
    The rest is the frozen base's and stays (a ConfigError names the first other key)."""
    unknown = sorted(set(extra) - {"train", "diffusion"})
    if unknown:
        raise ConfigError(f"{source}: train-control reads only [train] and [diffusion.schedule_args], not "
                          f"[{unknown[0]}]")
    other = sorted(set(extra.get("diffusion", {})) - {"schedule_args"})
    if other:
        raise ConfigError(f"{source}: the base run's diffusion.{other[0]} is fixed; only diffusion.schedule_args "
                          "(the training noise levels) can change")
    return extra


def train_control(base: Run, control: str | Control, out: Path, *, kind: str | None = None,
                  steps: int | None = None, lr: float | None = None, batch_size: int | None = None,
                  dropout: float = 0.0, guidance_scale: float = 1.0, seed: int = 0,
                  device: str | torch.device | None = None, resume: bool = False, overwrite: bool = False,
                  command: str | None = None, progress: bool = False, stop_after: int | None = None,
                  override: dict[str, Any] | None = None) -> Run:
    """Train a ControlNet branch on the frozen ``base`` run for ``control`` (a kind the domain declares, or a
    ``Control`` named ``kind``) into the run folder ``out``; returns the control Run (``run.sample(n,
    control=...)``). ``steps``: 1000 by default; with ``resume``, the run's own unless given (a larger number extends
    the run, as ``train --resume --steps`` does). ``override``: ``train`` settings and the training noise levels
    (``diffusion.schedule_args``) merged over the control run's config (see ``control_override``)."""
    domain, out = base.domain, Path(out)
    if base.config.get("latent") or base.config.get("control"):
        raise UsageError(f"{base.path} is a {'latent' if base.config.get('latent') else 'control'} run; train the "
                         "control on a plain diffusion run")
    kind, control = resolve_control(domain, control, kind)
    view = controlled_domain(domain, kind, control)
    device = torch.device(device or base.device)
    with locked(out):
        prepare_train_folder(out, resume=resume, overwrite=overwrite)
        saved = out / "config.json"
        dataset = domain.build_dataset(base.config["data"], "train")
        if resume and saved.is_file():
            cfg = validate_config(json.loads(saved.read_text()), view.sections)
            if steps is not None:
                cfg = {**cfg, "train": {**cfg["train"], "steps": steps}}
        else:
            probe = example_batch(domain, dataset, [0, 1])
            shape = list(control.compute(probe, torch.Generator().manual_seed(seed)).shape[1:])
            train = _train_section(base, steps or DEFAULT_STEPS, lr, batch_size, seed, progress)
            cfg = validate_config(merge(control_config(base, kind, control, shape, train, dropout, guidance_scale),
                                        control_override(override or {})), view.sections)
        if command:
            with open(out / "command.txt", "a") as f:
                f.write(command + "\n")
        torch.manual_seed(cfg["train"]["seed"])
        model = build_denoiser(view, cfg)
        find_control_net(model).load_base(base.denoiser.net.state_dict())
        manager = get_manager()
        trainer = Trainer(model, _loss(view, control, cfg, cfg["control"]["dropout"]), dataset, out,
                          TrainConfig.from_dict(cfg["train"]), collate=domain.collate, device=device, run_config=cfg,
                          stop_after=stop_after,
                          on_step_end=lambda step, value: manager.notify("polydiff_train_step_end", run_dir=out,
                                                                         step=step, loss=value))
        ema = trainer.fit(resume=resume)
    return Run(view, cfg, ema.eval(), out, trainer.device)


# ---- loading and the command --------------------------------------------------------------------------------------


def is_control(run_dir: Path | None) -> bool:
    """Whether a run folder holds a control run."""
    path = Path(run_dir) / "config.json" if run_dir is not None else None
    return path is not None and path.is_file() and bool(json.loads(path.read_text()).get("control"))


BASE_WEIGHTS = "base_weights"
"""The checkpoint metadata key saying where a control run's frozen base weights are: ``"base_run"`` when an export
left them out (its base is a shipped checkpoint, loaded from there); absent when the checkpoint holds them."""
BASE_PREFIX = "net.base."
"""Where the frozen base sits in a controlled denoiser's state dict (``Denoiser.net`` is the ``ControlNet``)."""


def load_control_run(domain: Domain, run_dir: Path, device: str | torch.device = "cpu",
                     control: Control | None = None) -> Run:
    """Load a control run folder as a Run of its controlled view (what ``load_run`` does for a config with a
    ``control`` section once ``plugins/runs.py`` dispatches to it); ``control`` stands for a kind the domain does
    not declare."""
    run_dir = Path(run_dir)
    raw = json.loads((run_dir / "config.json").read_text())
    kind = (raw.get("control") or {}).get("kind")
    if not kind:
        raise UsageError(f"{run_dir} is not a control run (no [control] section)")
    control = control or controls_of(domain).get(kind) or _unknown_control(kind)
    view = controlled_domain(domain, kind, control)
    _, state = load_checkpoint(run_dir / "checkpoint", ())
    if state.get(BASE_WEIGHTS) != "base_run":
        run = load_run(view, run_dir, device)
        run.denoiser.requires_grad_(False)
        return run
    cfg = validate_config(raw, view.sections)
    denoiser = build_denoiser(view, cfg)
    base = load_any(domain, shipped_folder(domain, cfg["control"]["base_run"]), "cpu")
    net = find_control_net(denoiser)
    net.base.load_state_dict(base.denoiser.net.state_dict())
    tensors, _ = load_checkpoint(run_dir / "checkpoint", ("model",))
    missing, unexpected = denoiser.load_state_dict(tensors["model"], strict=False)
    if unexpected or any(not k.startswith(BASE_PREFIX) for k in missing):
        raise UsageError(f"{run_dir}: the checkpoint does not fit its control network (missing "
                         f"{[k for k in missing if not k.startswith(BASE_PREFIX)][:3]}, unexpected {unexpected[:3]})")
    device = torch.device(device)
    return Run(view, cfg, denoiser.to(device).eval().requires_grad_(False), run_dir, device)


def without_shipped_base(config: dict[str, Any], weights: dict[str, torch.Tensor]
                         ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """For ``export``: a control run's weights without its frozen base when the base is a shipped checkpoint (which
    every install has), and the checkpoint metadata saying so; other control runs keep every weight."""
    if not str(config["control"]["base_run"]).startswith(SHIPPED):
        return weights, {}
    return {k: v for k, v in weights.items() if not k.startswith(BASE_PREFIX)}, {BASE_WEIGHTS: "base_run"}


def train_control_command(domain: Domain, options: TrainControlOptions, device: str = "cpu",
                          command: str | None = None, progress: bool = True) -> Run:
    """What ``polydiff <domain> train-control`` does: load the base run and train the control branch."""
    for name in ("control", "out"):
        if getattr(options, name) is None:
            raise OptionError(f"--{name}", "is required")
    resolve_control(domain, options.control)
    override = None
    if options.config is not None:
        override = control_override(read_config_file(options.config), str(options.config))
    base = load_any(domain, options.run, device)
    if override:
        build_schedule(merge(base.config, override))  # a bad schedule argument, before the folder is made
    return train_control(base, options.control, options.out, steps=options.steps, lr=options.lr,
                         batch_size=options.batch_size, dropout=options.dropout, guidance_scale=options.guidance_scale,
                         seed=options.seed, device=device, resume=options.resume, overwrite=options.overwrite,
                         command=command, progress=progress, override=override)
