"""Editing: redraw a user's example under another class and keep what the class does not decide, for every
class-conditional domain.

``edit_command(domain, options)`` reads the input with the domain's instance reader (``personalize.instance_reader``),
takes its source class from ``--from``, from the labels the reader found, or else infers it with a diffusion
classifier (``core.inversion.classify``), then either

- ``invert`` (default): inverts it along the probability-flow ODE of the run's deterministic sampler (``heun`` when
  the run samples with a stochastic one) under the source class, up to the level ``--strength`` picks (1 = all the
  way to sigma_max), and regenerates from there under ``--to``; or
- ``sdedit``: noises it to that level and samples from there under ``--to`` (``core.guidance.sdedit``); or
- ``ddpm``: edit-friendly DDPM inversion (``core.inversion.ddpm_noise_maps``): noise maps under the source class
  for ``euler_ancestral``, replayed under ``--to`` (``SampleRequest.step_noise``), so the input's structure is kept
  at every level instead of only at the start.

All three regenerate through the domain's own ``generate``, started from the inverted (or noised) input instead of fresh
noise, so the result is the domain's ``Samples`` and is written by its ``save_samples`` (``plugins.outputs``). The
start goes in ``SampleRequest.start`` (``Run.draw`` takes its rows in order).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from polydiff.core.inversion import INVERTIBLE, classify, ddpm_noise_maps, invert, strength_grid
from polydiff.core.noise import gaussian

from .capabilities import EDIT_METHODS, EditOptions
from .domain import Batch, SampleRequest, Samples
from .errors import OptionError
from .options import as_dict
from .outputs import sample_folder, write_samples
from .personalize import instance_reader, labels_of, load_any, with_labels
from .runs import Run

Tensor = torch.Tensor
DDPM_SAMPLER = "euler_ancestral"
"""The sampler whose steps the ``ddpm`` method's noise maps are solved for."""
INPUTS_FOLDER = "input"
"""Where ``edit`` writes its inputs as the domain writes samples (with their preview), inside its output folder."""


def _generate_from(run: Run, request: SampleRequest, start: Tensor) -> Samples:
    """The domain's ``generate`` started from ``start`` (``Run.draw`` takes its rows in order)."""
    request.start = start
    return run.domain.generate(run, request)


def edit_sampler(run: Run, method: str, sampler: str | None) -> str:
    """The sampler of an edit: the one asked for (an invertible one for ``invert``), else the run's when it can be
    inverted, else ``heun``; ``euler_ancestral`` for ``ddpm``."""
    if method == "ddpm":
        if sampler not in (None, DDPM_SAMPLER):
            raise OptionError("--sampler", f"--method ddpm replays noise maps of {DDPM_SAMPLER}, not {sampler!r}")
        return DDPM_SAMPLER
    if sampler is not None:
        if method == "invert" and sampler not in INVERTIBLE:
            raise OptionError("--sampler", f"{sampler!r} cannot be inverted; use one of {', '.join(INVERTIBLE)}")
        return sampler
    own = run.config["sample"]["sampler"]
    return own if method == "sdedit" or own in INVERTIBLE else "heun"


def _label(run: Run, value: str, n: int, flag: str) -> Tensor:
    """Labels [n] of class ``value`` of the run, or an error naming ``flag``."""
    try:
        return run.labels(value, n)
    except OptionError as exc:
        raise OptionError(flag, str(exc).split(": ", 1)[-1]) from None


def source_labels(run: Run, batch: Batch, source: str | None, generator: torch.Generator,
                  infer: bool = True) -> tuple[Tensor | None, str]:
    """The source class of each input and how it was found: ``--from``, the reader's labels, or (with ``infer``)
    the model's guess; (None, "unknown") when it is not needed (SDEdit)."""
    n = batch.x0.shape[0]
    if source is not None:
        return _label(run, source, n, "--from"), "given"
    found = labels_of(batch.cond)
    if found is not None and bool((found >= 0).all()):
        return found.long().cpu(), "read"
    if not infer:
        return None, "unknown"
    k = len(run.class_names())
    conds = [with_labels(batch.cond, torch.full((n,), c, dtype=torch.long, device=run.device), run.domain)
             for c in range(k)]
    levels = run.sigmas(8)[:-1]
    return classify(run.denoiser, batch.x0.to(run.device), conds, levels, generator=generator).cpu(), "inferred"


def _start(run: Run, batch: Batch, method: str, grid: Tensor, sampler: str, source: Tensor | None,
           request: SampleRequest, refine: int) -> tuple[Tensor, Tensor | None]:
    """The edit's starting point at ``grid[0]`` (the input inverted under its source class, or a noised copy) and,
    for ``ddpm``, the noise maps of its steps."""
    x0 = batch.x0.float()
    noise = run.domain.noise(batch) if run.domain.noise is not None else gaussian
    if method == "sdedit":
        return x0 + noise(x0, request.generator) * grid[0], None
    cond = with_labels(batch.cond, source.to(run.device), run.domain)
    guided = run.guided(cond, request.settings)
    if method == "ddpm":
        return ddpm_noise_maps(guided, x0, grid, cond=cond, generator=request.generator, noise=noise)
    return invert(guided, x0, grid, sampler, cond=cond, refine=refine), None


def edit_run(run: Run, batch: Batch, to: str, *, source: str | None = None, method: str = "invert",
             strength: float = 1.0, steps: int | None = None, sampler: str | None = None,
             guidance_scale: float | None = None, refine: int = 2, seed: int = 0, **options: Any) -> Samples:
    """The inputs of ``batch`` (in the network's space) redrawn as class ``to`` by the domain's ``generate``; the
    facts of the edit (source classes and how they were found, method, level) are in ``meta["edit"]``. ``options``
    are the domain's ``sample`` options (e.g. the points' ``points=`` so that it draws clouds of the inputs' size)."""
    if method not in EDIT_METHODS:
        raise OptionError("--method", f"{method!r} is not one of {', '.join(EDIT_METHODS)}")
    if not 0 < strength <= 1:
        raise OptionError("--strength", f"must be in (0, 1], got {strength}")
    batch, n = batch.to(run.device), batch.x0.shape[0]
    target = _label(run, to, n, "--to")
    sampler = edit_sampler(run, method, sampler)
    request = run.request(n, labels=target, sampler=sampler, steps=steps, guidance_scale=guidance_scale, seed=seed,
                          **options)
    src, how = source_labels(run, batch, source, request.generator, infer=method != "sdedit")
    grid = strength_grid(run.sigmas(request.settings.steps), strength)
    request.sigmas = grid
    start, request.step_noise = _start(run, batch, method, grid, sampler, src, request, refine)
    samples = _generate_from(run, request, start)
    samples.settings = request.settings
    names = run.class_names()
    samples.meta["edit"] = {"method": method, "strength": strength, "sigma_start": float(grid[0]),
                            "source": None if src is None else [names[i] for i in src.tolist()], "source_from": how,
                            "target": names[int(target[0])], "refine": refine if method == "invert" else None}
    return samples


def rendered_inputs(run: Run, batch: Batch, labels: Tensor, **options: Any) -> Samples:
    """The inputs written the way the domain writes its samples (files and preview), for comparing with the edit: the
    domain's ``generate`` started from the inputs on a one-point grid, so no denoising step runs."""
    request = run.request(batch.x0.shape[0], labels=labels, **options)
    request.sigmas = torch.zeros(1)
    return _generate_from(run, request, batch.to(run.device).x0)


def _input_labels(run: Run, samples: Samples, n: int) -> Tensor:
    """The inputs' classes as the edit found them (the target's where it did not look)."""
    names, facts = run.class_names(), samples.meta["edit"]
    classes = facts["source"] if facts["source"] is not None else [facts["target"]] * n
    return torch.tensor([names.index(c) for c in classes])


def edit_command(domain, options: EditOptions, device: str = "cpu", *, command: str | None = None) -> Samples:
    """What ``polydiff <domain> edit`` does: read ``--input``, edit it into ``--to`` and write the domain's files
    with ``samples.json`` into ``--out`` (or a new numbered folder, recorded as ``meta["out"]``)."""
    for name in ("input", "to"):
        if getattr(options, name) is None:
            raise OptionError(f"--{name}", "is required")
    run = load_any(domain, options.run, device)
    batch = instance_reader(domain)(Path(options.input), run.config)
    batch = batch if isinstance(batch, Batch) else Batch(batch)
    samples = edit_run(run, batch, options.to, source=options.source, method=options.method,
                       strength=options.strength, steps=options.steps, sampler=options.sampler,
                       guidance_scale=options.guidance_scale, refine=options.refine, seed=options.seed)
    out = sample_folder(domain, options.out)
    samples.meta.update(out=str(out), inputs_written_to=INPUTS_FOLDER)
    record = {"run": str(run.path), "input": str(options.input), "options": as_dict(options), "command": command}
    write_samples(domain, samples, out, record=record, overwrite=options.overwrite)
    inputs = rendered_inputs(run, batch, _input_labels(run, samples, batch.x0.shape[0]), seed=options.seed)
    write_samples(domain, inputs, out / INPUTS_FOLDER, record={"run": str(run.path), "input": str(options.input)},
                  overwrite=options.overwrite)
    return samples
