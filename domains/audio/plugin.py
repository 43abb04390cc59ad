"""The audio domain as a polydiff plugin: spoken digits (or a folder of clips) as normalised log-mels, a class-
conditional mel U-Net with classifier-free guidance, Griffin-Lim to waveforms, and DiffWave's SC09 metrics.

This module only declares (sections in ``sections.py``, options and presets here); the functions live in ``data.py``,
``model.py`` and ``sampling.py`` and are named by lazy references, so ``polydiff --help`` imports no torch."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polydiff.plugins import hookimpl
from polydiff.plugins.domain import Classes, Count, DataSource, Domain
from polydiff.plugins.lazy import lazy
from polydiff.plugins.options import option

from .sections import Data, Network, SampleExtras

SHIPPED = Path(__file__).parent / "checkpoints" / "digits"


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


@dataclass
class EvaluateOptions:
    """What audio's ``evaluate`` takes beyond the shared options."""

    gl_iters: int | None = option(None, "Griffin-Lim iterations (default from the run).", min=1)
    classifier_epochs: int = option(20, "Epochs of the judge classifier (cached).", min=1)
    floor: bool = option(True, "Also score real test clips and their Griffin-Lim floor.")


def presets() -> dict[str, dict[str, Any]]:
    """``quick``: 10 voices x 10 digits, a small 1D U-Net (minutes on a CPU); ``cpu``: the whole digit set (416 voices x
    2 takes), the shipped checkpoint's recipe (18000 steps, the last 8000 annealed by a cosine; about 75 min on 2 idle
    CPU cores), sampled by 50 Euler-Maruyama steps at guidance 1.5; ``full``: a larger 1D U-Net for a GPU."""
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
    return {"quick": quick, "cpu": cpu, "full": full}


def make_domain() -> Domain:
    """The audio Domain."""
    return Domain(
        name="audio",
        summary="spoken digits (espeak-ng, SC09-like) or your clips as log-mels; Griffin-Lim to WAV; SC09 metrics",
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
        options={"sample": SampleOptions, "evaluate": EvaluateOptions},
        counts={"sample": Count(10, "Number of clips."),
                "evaluate": Count(None, "Generated clips (default: as many as test clips).")},
        classes=Classes(lazy("polydiff.domains.audio.model:class_names"), ("--digit", "--class"),
                        "Digit/class name or index, or 'all' (default: unconditional)."),
        data_source=DataSource(lazy("polydiff.domains.audio.model:data_source"), "digits (espeak-ng voices) or a folder of .wav/.flac/.ogg clips whose "
                               "sub-folders name the classes.", ("--data", "--folder")),
        collate=lazy("polydiff.domains.common.datasets:collate_labelled"),
        read_instances=lazy("polydiff.domains.audio.sampling:read_instances"),
        label_cond=lambda labels: {"label": labels},
        drop_cond=lazy("polydiff.domains.common.embeddings:drop_label_cond"),
        null_cond=lazy("polydiff.domains.common.embeddings:null_label_cond"),
    )


@hookimpl
def polydiff_register_domains(register) -> None:
    register(make_domain())
