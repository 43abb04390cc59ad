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
    per_class: bool = option(False, "Bind NAME to each class the instances carry (their sub-folders or the domain's "
                                    "file naming): new classes NAME:CLASS, each starting from CLASS's row, e.g. a new "
                                    "speaker saying each digit (`sample --class NAME:seven`).")
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


EDIT_METHODS = ("invert", "sdedit", "ddpm")


@dataclass
class EditOptions:
    """What ``edit`` takes: the input, the class to turn it into, and how far to go."""

    run: Path | None = option(None, "Run folder (default: the domain's shipped run).", exists=True)
    input: Path | None = option(None, "File or folder of examples to edit, in the domain's format.", exists=True)
    to: str | None = option(None, "Target class name or index.")
    source: str | None = option(None, "Source class name or index (default: the reader's labels, else inferred "
                                      "by the model).", flags=("--from",))
    out: Path | None = option(None, "Folder for the edited samples (default: a new samples/<domain>/NNN).")
    method: str = option("invert", "invert: regenerate from the input's inverted noise (ODE); sdedit: from a noised "
                                   "copy; ddpm: replay edit-friendly DDPM noise maps (euler_ancestral).",
                         choices=EDIT_METHODS)
    strength: float = option(1.0, "Fraction of the sampling grid to redo (1: from the highest noise level).",
                             min=0.0, max=1.0)
    steps: int | None = option(None, "Sampling steps (default: the run's).", min=1)
    sampler: str | None = option(None, "Sampler for invert (a deterministic one: euler, ddim, heun, dpmpp_2m; default: "
                                       "the run's when deterministic, else heun) or sdedit (default: the run's); ddpm "
                                       "uses euler_ancestral.")
    guidance_scale: float | None = option(None, "Classifier-free guidance scale (default: the run's).", min=0.0)
    refine: int = option(2, "Fixed-point corrections per inversion step (0: plain DDIM-style inversion).", min=0)
    seed: int = option(0, "Seed (sdedit's noise, the classifier's draws).")
    overwrite: bool = option(False, "Replace samples written earlier into --out.")


AUTOENCODER_NETWORKS = ("auto", "domain", "mlp", "conv")


@dataclass
class TrainAutoencoderOptions:
    """What ``train-autoencoder`` takes: where, the data and training of a preset, and the autoencoder's shape."""

    out: Path | None = option(None, "Autoencoder run folder to write (required; then `train --latent OUT`).")
    preset: str = option("quick", "Preset whose data and train sections the autoencoder uses.")
    config: Path | None = option(None, "TOML file with [data], [train] and [autoencoder] tables over the preset's.",
                                 exists=True)
    network: str = option("auto", "auto: the domain's own autoencoder if it declares one, else the generic one for "
                                  "the data's shape (mlp for vectors, conv for 1D/2D grids).",
                          choices=AUTOENCODER_NETWORKS)
    latent_dim: int | None = option(None, "Latent size of the MLP autoencoder (default 2).", min=1)
    latent_channels: int | None = option(None, "Latent channels of the convolutional autoencoder (default 4).", min=1)
    kl_weight: float | None = option(None, "Weight of the KL regulariser (default 1e-6, as in LDM).", min=0.0)
    steps: int | None = option(None, "Training steps (default: the preset's).", min=1)
    domain_metric: bool = option(True, "Also score decoded held-out examples with the domain's own metrics (the "
                                       "autoencoder's floor; can take as long as an evaluate).")
    resume: bool = option(False, "Continue the autoencoder run in --out.", flags=("--resume",))
    overwrite: bool = option(False, "Replace the run in --out.", flags=("--overwrite",))


@dataclass
class TrainControlOptions:
    """What ``train-control`` takes: the frozen base run, the domain's control kind, and the branch's training."""

    run: Path | None = option(None, "Base run folder (default: the domain's shipped run).", exists=True)
    control: str | None = option(None, "Kind of control signal, one the domain declares (required).")
    out: Path | None = option(None, "Control run folder to write (required).")
    steps: int | None = option(None, "Training steps of the control branch (default 1000; with --resume: the run's "
                                     "own, or a larger number to extend it).", min=1)
    lr: float | None = option(None, "Learning rate (default: the base run's).", min=0.0)
    batch_size: int | None = option(None, "Batch size (default: the base run's).", min=1)
    dropout: float = option(0.0, "Probability of dropping the control while training: > 0 learns a null control for "
                                 "guidance on the control; 0 uses the base model as the null control.",
                            min=0.0, max=0.99)
    guidance_scale: float = option(1.0, "Default guidance scale on the control recorded in the run (1: none; > 1 "
                                        "follows the control more closely).", min=0.0)
    seed: int = option(0, "Seed of the training noise and the controls' randomness.")
    config: Path | None = option(None, "TOML file with a [train] table and a [diffusion.schedule_args] table (the "
                                       "training noise levels, e.g. P_mean) for the branch's training.", exists=True)
    resume: bool = option(False, "Continue the control run in --out.", flags=("--resume",))
    overwrite: bool = option(False, "Replace the run in --out.", flags=("--overwrite",))


@dataclass
class ControlSampleOptions:
    """What ``sample`` and ``evaluate`` of a control run take besides the domain's own options."""

    control: Path | None = option(None, "Control signal file (the domain's format; default: a .npy/.pt array of "
                                        "controls, one row per sample or one for all). Control runs only.",
                                  exists=True)
    control_scale: float | None = option(None, "Guidance scale on the control: D_null + s (D_control - D_null) "
                                               "(default: the run's; 1: none).", min=0.0)
