"""The audio domain as a polydiff plugin: spoken digits (or a folder of clips) as normalised log-mels, a class-
conditional mel U-Net with classifier-free guidance, Griffin-Lim to waveforms, and DiffWave's SC09 metrics."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from polydiff.core import guidance
from polydiff.domains.common.datasets import collate_labelled
from polydiff.domains.common.embeddings import NULL_LABEL, drop_label_cond, null_label_cond
from polydiff.plugins import hookimpl
from polydiff.plugins.domain import Classes, Count, DataSource, Domain, EvaluateRequest, SampleRequest, Samples
from polydiff.plugins.errors import OptionError
from polydiff.plugins.options import option

from .clips import fit_length, load_audio, resample
from .data import Data, build_dataset, data_config, fit_data, prepare, sampling_spec
from .evaluation import get_judge, real_and_floor, reanalyse, score
from .features import LogMel
from .inpainting import frame_span, inpaint_mask, parse_span
from .network import MelUNet, NetConfig
from .previews import save_clips


SHIPPED = Path(__file__).parent / "checkpoints" / "digits"


@dataclass
class Network:
    """The ``network`` section: the mel U-Net (``network.py``'s ``NetConfig`` without what the data decide)."""

    layout: str = "2d"
    base: int = 32
    mults: tuple[int, ...] = (1, 2, 2)
    num_res: int = 1
    attn_levels: tuple[int, ...] = (2,)
    dropout: float = 0.0
    pos_channels: int = 0


@dataclass
class SampleExtras:
    """Audio's own keys of the ``sample`` section."""

    gl_iters: int = 32
    """Griffin-Lim iterations from mel to waveform."""


def _span(text: str) -> str:
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


def build_network(cfg: dict[str, Any]) -> MelUNet:
    """The mel U-Net of the ``network`` config, class-conditional when the data are labelled and conditional."""
    d, spec = data_config(cfg["data"]), sampling_spec(cfg)
    classes = len(spec.class_names) if spec.conditional else 0
    net = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["network"].items()}
    return MelUNet(NetConfig(num_classes=classes, sigma_data=float(cfg["diffusion"].get("sigma_data", 1.0)),
                             n_mels=int(d["n_mels"]), **net))


def known_from_clip(p, path: str | Path, span: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(known, mask) normalised mels [1, 1, n_mels, frames] from an audio file and ``START:END`` seconds to redo.

    The clip is resampled to 16 kHz, centre-padded/cropped to 1 s and peak-normalised like the training clips.
    """
    cfg = p.normalizer.config
    wave, sr = load_audio(path)
    wave = fit_length(resample(wave, sr, cfg.sample_rate), cfg.clip_samples)
    peak = wave.abs().max()
    if peak <= 1e-6:
        raise ValueError(f"{path}: the clip is silent; nothing to inpaint around")
    known = p.normalizer.normalize(LogMel(cfg)(wave * (0.9 / peak)))[:, None]
    return inpaint_mask(known, *parse_span(span), cfg)


def generate(run, request: SampleRequest) -> Samples:
    """Draw clips: mels from the model (``request.labels``, else unconditional), then Griffin-Lim. ``--inpaint`` with
    ``--mask`` regenerates that span of the clip and keeps the rest."""
    p, opts = sampling_spec(run.config), request.options
    inpaint, mask = (opts.inpaint, opts.mask) if opts is not None else (None, None)
    if (inpaint is None) != (mask is None):
        raise OptionError("--mask" if mask is None else "--inpaint", "inpainting needs both --inpaint FILE and --mask START:END")
    known = known_from_clip(p, inpaint, mask) if inpaint is not None else None
    n = request.n
    labels = request.labels if request.labels is not None else torch.full((n,), NULL_LABEL, dtype=torch.long)
    if bool((labels >= 0).any()) and not p.conditional:
        raise OptionError("--digit", "this run is unconditional: sample without a class")
    shape = (1, p.normalizer.config.n_mels, p.normalizer.config.frames)
    sigmas = request.sigmas if request.sigmas is not None else run.sigmas(request.settings.steps)
    out = []
    for start in range(0, n, 32):
        lab = labels[start:start + 32].to(run.device)
        b = len(lab)
        cond = {"label": lab} if p.conditional else None
        den = run.guided(cond, request.settings) if cond is not None and bool((lab >= 0).any()) else run.denoiser
        if known is not None:
            den = guidance.inpaint(den, known[0].to(run.device).expand(b, *shape),
                                   known[1].to(run.device).expand(b, *shape))
        out.append(run.draw(torch.empty(b, *shape), request, cond=cond, denoiser=den, sigmas=sigmas).float().cpu())
    x = torch.cat(out)
    gl = (opts.gl_iters if opts is not None else None) or int(run.config["sample"]["gl_iters"])
    waves, again = reanalyse(p, x, gl)
    names = [p.class_names[i] if i >= 0 else "any" for i in labels.tolist()]
    return Samples({"x": x, "reanalysed": again, "log_mels": p.normalizer.denormalize(x[:, 0]), "waves": waves,
                    "labels": labels.tolist(), "class_names": list(p.class_names)},
                   {"normalizer": p.normalizer.to_dict(), "gl_iters": gl, "classes": names})


def save_samples(samples: Samples, out: Path) -> list[Path]:
    """One 16 kHz WAV per clip, ``spectrograms.png`` titled by class, and ``normalizer.json``."""
    files = save_clips(out, samples["waves"], samples["log_mels"], samples["labels"], samples["class_names"])
    norm = out / "normalizer.json"
    norm.write_text(json.dumps(samples.meta["normalizer"], indent=2))
    return files + [norm]


def evaluate(run, request: EvaluateRequest) -> dict[str, float]:
    """SC09 metrics of n generated clips (requested digits cycle through the classes) with the real test clips and
    their Griffin-Lim floor alongside; FID and NDB are against the training clips' classifier features."""
    opts = request.options
    p = prepare(run.config["data"])
    judge = get_judge(p, epochs=opts.classifier_epochs)
    n = request.n or len(p.test)
    gl = opts.gl_iters or int(run.config["sample"]["gl_iters"])
    labels = torch.arange(n) % p.train.num_classes if p.conditional else None
    t0 = time.perf_counter()
    gen = generate(run, request.sample(n, labels, SampleOptions(gl_iters=gl)))
    seconds = time.perf_counter() - t0
    result = {"classifier_test_accuracy": judge.test_accuracy, **score(judge, gen["reanalysed"], labels)}
    result["sample_seconds_per_clip"] = seconds / n
    if opts.floor:
        result.update(real_and_floor(p, judge, gl))
    return result


def data_source(value: str) -> dict[str, Any]:
    """``--data digits`` (the espeak set) or a folder of clips (``--folder`` is the older spelling)."""
    if value == "digits":
        return {"data": {"source": "digits"}}
    if not Path(value).is_dir():
        raise ValueError(f"{value} is neither 'digits' nor a folder of .wav/.flac/.ogg clips")
    return {"data": {"source": "folder", "folder": str(value)}}


def class_names(config: dict[str, Any]) -> list[str]:
    """The run's digit (or folder class) names; [] for an unconditional run."""
    spec = sampling_spec(config)
    return list(spec.class_names) if spec.conditional else []


def make_domain() -> Domain:
    """The audio Domain."""
    return Domain(
        name="audio",
        summary="spoken digits (espeak-ng, SC09-like) or your clips as log-mels; Griffin-Lim to WAV; SC09 metrics",
        presets=presets(),
        shipped_run=SHIPPED,
        build_dataset=build_dataset,
        build_network=build_network,
        fit_data=fit_data,
        generate=generate,
        save_samples=save_samples,
        evaluate=evaluate,
        primary_metric="fid",
        lower_is_better=True,
        sections={"data": Data, "network": Network, "sample": SampleExtras},
        options={"sample": SampleOptions, "evaluate": EvaluateOptions},
        counts={"sample": Count(10, "Number of clips."),
                "evaluate": Count(None, "Generated clips (default: as many as test clips).")},
        classes=Classes(class_names, ("--digit", "--class"),
                        "Digit/class name or index, or 'all' (default: unconditional)."),
        data_source=DataSource(data_source, "digits (espeak-ng voices) or a folder of .wav/.flac/.ogg clips whose "
                               "sub-folders name the classes.", ("--data", "--folder")),
        collate=collate_labelled,
        drop_cond=drop_label_cond,
        null_cond=null_label_cond,
    )


@hookimpl
def polydiff_register_domains(register) -> None:
    register(make_domain())
