"""The audio domain as a polydiff plugin: spoken digits (espeak-ng, FSDD recordings or a folder of clips) as normalised
log-mels, a class-conditional mel U-Net with classifier-free guidance, a vocoder to waveforms (Griffin-Lim or a learned
vocoder run, ``train-vocoder``), and DiffWave's SC09 metrics.

This module only declares (sections in ``sections.py``, options and presets here); the functions live in ``data.py``,
``model.py``, ``sampling.py`` and the vocoder modules and are named by lazy references, so ``polydiff --help`` imports
no torch."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polydiff.plugins import hookimpl
from polydiff.plugins.domain import Classes, Control, Count, DataSource, Domain, Verb
from polydiff.plugins.lazy import lazy
from polydiff.plugins.options import option

from .sections import Data, Network, SampleExtras

SHIPPED = Path(__file__).parent / "checkpoints" / "fsdd"
"""The default run: the real-speech model (FSDD, 8 kHz), which meets its goal on FSDD's test takes; the espeak-voiced
model ships beside it (``ESPEAK_SHIPPED``, pass ``--run``)."""
ESPEAK_SHIPPED = SHIPPED.with_name("digits")
"""The espeak-voiced digits model (16 kHz): the base of the shipped 4-step student and of the speaker benchmark."""
FSDD_RATE = 8000
"""The rate FSDD runs use: its native 8 kHz (the judge and Griffin-Lim both do better on it than on 16 kHz; see the
``fsdd`` preset)."""
VOCODER_HELP = ("Mel to waveform: 'griffin-lim' or a vocoder run folder (`train-vocoder --out`); default: the shipped "
                "vocoder where it fits the run's mel features, else griffin-lim.")


def _vocoder(value: str) -> str:
    from .vocoding import GRIFFIN_LIM

    if str(value) != GRIFFIN_LIM and not (Path(value) / "config.json").is_file():
        raise ValueError(f"{value!r} is neither {GRIFFIN_LIM!r} nor a vocoder run folder (the --out of train-vocoder)")
    return str(value)


def _span(text: str) -> str:
    from .inpainting import frame_span, parse_span

    start, end = parse_span(str(text))
    frame_span(start, end)
    return str(text)


@dataclass
class SampleOptions:
    """What audio's ``sample`` takes beyond the shared options."""

    gl_iters: int | None = option(None, "Griffin-Lim iterations (default from the run).", min=1)
    inpaint: Path | None = option(None, "Audio file whose --mask span is regenerated (the rest is kept).", exists=True)
    mask: str | None = option(None, "START:END in seconds of the 1 s clip to regenerate, e.g. 0.3:0.6.", parse=_span)
    vocoder: str | None = option(None, VOCODER_HELP, parse=_vocoder)


@dataclass
class EvaluateOptions:
    """What audio's ``evaluate`` takes beyond the shared options."""

    gl_iters: int | None = option(None, "Griffin-Lim iterations (default from the run).", min=1)
    classifier_epochs: int = option(20, "Epochs of the judge classifier (cached).", min=1)
    floor: bool = option(True, "Also score real test clips and their Griffin-Lim (and learned vocoder) floor.")
    vocoder: str | None = option(None, VOCODER_HELP, parse=_vocoder)


@dataclass
class TrainOptions:
    """What audio's ``train`` takes beyond the shared options (``train-vocoder`` fixes ``target``)."""

    target: str = option("mels", "What the run learns: mels (a mel diffusion model) or waves (a vocoder).",
                         choices=("mels", "waves"), config="data.target", hidden=True)


def presets() -> dict[str, dict[str, Any]]:
    """``quick``: 10 voices x 10 digits, a small 1D U-Net (minutes on a CPU); ``cpu``: the whole digit set (416 voices x
    2 takes), the shipped checkpoint's recipe (18000 steps, the last 8000 annealed by a cosine; about 75 min on 2 idle
    CPU cores), sampled by 50 Euler-Maruyama steps at guidance 1.5; ``full``: a larger 1D U-Net for a GPU; ``fsdd``:
    the ``cpu`` recipe on FSDD's training takes at 8 kHz; ``fsdd-latent``: the shipped ``fsdd-latent`` run's recipe
    (``train --latent AE`` over an autoencoder of ``train-autoencoder --preset fsdd``): the U-Net at base 64 over the
    autoencoder's 16 latent frames, 20000 steps annealed from 12000; ``mel2linear``: the shipped vocoder's recipe (a
    learned inverse mel scale with Griffin-Lim phase, noise on its input mels, 3000 steps of 32 whole clips, annealed
    from 1500; 11 min on one core);
    ``hifigan`` (spectral losses, one step) and ``diffwave`` (denoising, 8 Heun steps): the vocoders it was measured
    against."""
    quick = {
        "data": {"source": "digits", "n_voices": 10, "takes": 1},
        "network": {"layout": "1d", "base": 64, "mults": [1, 2, 2], "num_res": 1, "attn_levels": [2], "dropout": 0.0,
                    "pos_channels": 8},
        "diffusion": {"parameterization": "edm", "sigma_data": 1.0, "schedule": "edm", "weighting": "edm",
                      "cond_dropout": 0.1},
        "train": {"steps": 400, "batch_size": 16, "lr": 1e-3, "warmup": 50, "ema_decay": 0.99, "log_every": 20,
                  "ckpt_every": 200},
        "sample": {"sampler": "dpmpp_2m", "steps": 25, "grid": "karras", "sigma_min": 0.002, "sigma_max": 80.0,
                   "guidance_scale": 2.0, "gl_iters": 32},
    }
    cpu = {
        **quick,
        "data": {"source": "digits", "n_voices": 416, "takes": 2},
        "network": {"layout": "1d", "base": 96, "mults": [1, 2, 2], "num_res": 1, "attn_levels": [2], "dropout": 0.0,
                    "pos_channels": 8},
        "train": {"steps": 18000, "batch_size": 32, "lr": 6e-4, "warmup": 200, "lr_decay": "cosine",
                  "decay_from": 10000, "ema_decay": 0.999, "log_every": 50, "ckpt_every": 500},
        "sample": {**quick["sample"], "sampler": "euler_maruyama", "steps": 50, "guidance_scale": 1.5},
    }
    full = {
        **cpu,
        "network": {"layout": "1d", "base": 128, "mults": [1, 2, 2], "num_res": 2, "attn_levels": [1, 2],
                    "dropout": 0.1, "pos_channels": 8},
        "train": {"steps": 60000, "batch_size": 64, "lr": 2e-4, "warmup": 1000, "ema_decay": 0.9995,
                  "log_every": 100, "ckpt_every": 5000},
        "sample": {**cpu["sample"], "gl_iters": 64},
    }
    fsdd = {
        **cpu,
        "data": {"source": "fsdd", "sample_rate": FSDD_RATE, "valid_takes": 5},
    }
    fsdd_latent = {
        **fsdd,
        "network": {**cpu["network"], "base": 64},
        "train": {**cpu["train"], "steps": 20000, "decay_from": 12000},
    }
    mel2linear = {
        "data": {"source": "fsdd", "sample_rate": FSDD_RATE, "valid_takes": 5, "target": "waves",
                 "segment_frames": 64},
        "network": {"kind": "mel2linear", "channels": 192, "layers": 6, "mel_noise": 0.3},
        "diffusion": {"parameterization": "x0", "sigma_data": 0.1, "schedule": "edm", "cond_dropout": 0.0},
        "train": {"steps": 3000, "batch_size": 32, "lr": 1e-3, "betas": [0.9, 0.99], "warmup": 100,
                  "lr_decay": "cosine", "decay_from": 1500, "ema_decay": 0.999, "log_every": 50, "ckpt_every": 500},
        "sample": {"sampler": "euler", "steps": 1, "grid": "karras", "sigma_min": 0.002, "sigma_max": 1.0,
                   "guidance_scale": 1.0, "gl_iters": 32},
    }
    hifigan = {
        **mel2linear,
        "data": {**mel2linear["data"], "segment_frames": 32},
        "network": {"kind": "hifigan", "channels": 128},
        "train": {"steps": 6000, "batch_size": 16, "lr": 1e-3, "betas": [0.8, 0.99], "warmup": 100,
                  "lr_decay": "cosine", "decay_from": 3000, "ema_decay": 0.999, "log_every": 50, "ckpt_every": 500},
    }
    diffwave = {
        **hifigan,
        "network": {"kind": "diffwave", "channels": 48, "layers": 20, "cycle": 10},
        "diffusion": {"parameterization": "edm", "sigma_data": 0.1, "schedule": "edm",
                      "schedule_args": {"P_mean": -2.8, "P_std": 1.4}, "weighting": "edm", "cond_dropout": 0.0},
        "sample": {"sampler": "heun", "steps": 8, "grid": "karras", "sigma_min": 0.0005, "sigma_max": 2.0,
                   "guidance_scale": 1.0},
    }
    return {"quick": quick, "cpu": cpu, "full": full, "fsdd": fsdd, "fsdd-latent": fsdd_latent,
            "mel2linear": mel2linear, "hifigan": hifigan, "diffwave": diffwave}


def make_domain() -> Domain:
    """The audio Domain."""
    return Domain(
        name="audio",
        summary="spoken digits (espeak-ng, FSDD) or your clips as log-mels; a vocoder to WAV; SC09 metrics",
        presets=presets(),
        shipped_run=SHIPPED,
        build_dataset=lazy("polydiff.domains.audio.data:build_dataset"),
        build_network=lazy("polydiff.domains.audio.model:build_network"),
        fit_data=lazy("polydiff.domains.audio.data:fit_data"),
        generate=lazy("polydiff.domains.audio.sampling:generate"),
        save_samples=lazy("polydiff.domains.audio.sampling:save_samples"),
        evaluate=lazy("polydiff.domains.audio.sampling:evaluate"),
        primary_metric="fid",
        lower_is_better=True,
        sections={"data": Data, "network": Network, "sample": SampleExtras},
        options={"train": TrainOptions, "sample": SampleOptions, "evaluate": EvaluateOptions},
        counts={"sample": Count(10, "Number of clips."),
                "evaluate": Count(None, "Generated clips (default: as many as test clips).")},
        classes=Classes(lazy("polydiff.domains.audio.model:class_names"), ("--digit", "--class"),
                        "Digit/class name or index, or 'all' (default: unconditional)."),
        data_source=DataSource(lazy("polydiff.domains.audio.model:data_source"),
                               "digits (espeak-ng voices), fsdd (Free Spoken Digit Dataset: $POLYDIFF_FSDD or "
                               "../shared/data/fsdd), a folder of {digit}_{speaker}_{take}.wav recordings (split by "
                               "take like FSDD), or a folder of .wav/.flac/.ogg clips whose sub-folders name the classes.",
                               ("--data", "--folder")),
        verbs={"train-vocoder": Verb("train", "Train a vocoder run (mel -> waveform; preset mel2linear on FSDD) to use "
                                              "with sample/evaluate --vocoder RUN.",
                                     fixed={"target": "waves"},
                                     defaults={"preset": "mel2linear", "out": Path("runs") / "audio-vocoder"})},
        collate=lazy("polydiff.domains.audio.vocoder_data:collate"),
        loss=lazy("polydiff.domains.audio.spectral_loss:loss"),
        read_instances=lazy("polydiff.domains.audio.sampling:read_instances"),
        controls={"envelope": Control(
            lazy("polydiff.domains.audio.control:envelope_control"),
            "The loudness envelope of a clip (mean log-mel per frame, scaled to [0, 1]): the sample follows its "
            "rhythm; --control: a .wav/.flac/.ogg clip or a folder of them, or a .npy of envelopes [n, 1, frames].",
            read=lazy("polydiff.domains.audio.control:read_envelopes"))},
        autoencoder=lazy("polydiff.domains.audio.latent:build_autoencoder"),
        latent_network=lazy("polydiff.domains.audio.latent:build_latent_network"),
        label_cond=lambda labels: {"label": labels},
        drop_cond=lazy("polydiff.domains.common.embeddings:drop_label_cond"),
        null_cond=lazy("polydiff.domains.common.embeddings:null_label_cond"),
    )


@hookimpl
def polydiff_register_domains(register) -> None:
    register(make_domain())
