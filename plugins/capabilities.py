"""The option sets of the capability commands every domain gets (``personalize``, ``edit``; ``distill`` declares
its own in ``plugins/distill.py``): declarations only, so building the CLI imports no torch."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .options import option


@dataclass
class PersonalizeOptions:
    """What ``personalize`` takes: a base run, the new class's examples and its name, and the fine-tune."""

    run: Path | None = option(None, "Base run folder (default: the domain's shipped run).", exists=True)
    instances: Path | None = option(None, "File or folder of the new class's examples, in the domain's format.",
                                    exists=True)
    name: str | None = option(None, "Name of the new class (then `sample --class NAME`).")
    out: Path | None = option(None, "Run folder to write (a new one; see --overwrite).")
    related: str | None = option(None, "Class whose samples preserve the prior (default: all classes); the new "
                                       "class's embedding starts from it.")
    prior_weight: float = option(1.0, "Weight of the prior-preservation loss on the base model's samples (0: none).",
                                 min=0.0)
    prior_samples: int = option(100, "Base-model samples drawn for prior preservation.", min=1)
    lora_rank: int | None = option(None, "Train low-rank adapters of this rank (and the new label row) instead of "
                                         "every weight; the run then holds only those.", min=1)
    lora_alpha: float | None = option(None, "LoRA scale numerator (default: the rank, i.e. scale 1).", min=0.0)
    steps: int = option(400, "Fine-tuning steps.", min=1)
    lr: float | None = option(None, "Learning rate (default: the base run's; with --lora-rank twice that).",
                              min=0.0)
    seed: int = option(0, "Seed of the prior samples and the training noise.")
    overwrite: bool = option(False, "Replace a run already in --out.")


@dataclass
class EditOptions:
    """What ``edit`` takes: the input, the class to turn it into, and how far to go."""

    run: Path | None = option(None, "Run folder (default: the domain's shipped run).", exists=True)
    input: Path | None = option(None, "File or folder of examples to edit, in the domain's format.", exists=True)
    to: str | None = option(None, "Target class name or index.")
    source: str | None = option(None, "Source class name or index (default: the reader's labels, else inferred "
                                      "by the model).", flags=("--from",))
    out: Path | None = option(None, "Folder for the edited samples (default: a new samples/<domain>/NNN).")
    method: str = option("invert", "invert: regenerate from the input's inverted noise; sdedit: from a noised copy.",
                         choices=("invert", "sdedit"))
    strength: float = option(1.0, "Fraction of the sampling grid to redo (1: from the highest noise level).",
                             min=0.0, max=1.0)
    steps: int | None = option(None, "Sampling steps (default: the run's).", min=1)
    sampler: str | None = option(None, "Sampler for invert (a deterministic one: euler, ddim, heun, dpmpp_2m; default: "
                                       "the run's when deterministic, else heun) or sdedit (default: the run's).")
    guidance_scale: float | None = option(None, "Classifier-free guidance scale (default: the run's).", min=0.0)
    refine: int = option(2, "Fixed-point corrections per inversion step (0: plain DDIM-style inversion).", min=0)
    seed: int = option(0, "Seed (sdedit's noise, the classifier's draws).")
    overwrite: bool = option(False, "Replace samples written earlier into --out.")
