"""The audio domain as a polydiff plugin: spoken digits (or a folder of clips) as normalised log-mels, a class-
conditional mel U-Net with classifier-free guidance, Griffin-Lim to waveforms, and DiffWave's SC09 metrics."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from polydiff.core import guidance
from polydiff.domains.common.datasets import collate_labelled
from polydiff.domains.common.embeddings import NULL_LABEL, drop_label_cond, null_label_cond
from polydiff.plugins import hookimpl
from polydiff.plugins.domain import Domain

from .clips import fit_length, load_audio, resample
from .data import build_dataset, data_config, fit_data, prepare, sampling_spec
from .evaluation import get_judge, real_and_floor, reanalyse, score
from .features import LogMel
from .inpainting import inpaint_mask, parse_span
from .network import MelUNet, NetConfig
from .previews import save_clips


SHIPPED = Path(__file__).parent / "checkpoints" / "digits"


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


def class_labels(p, label: int | str | None, n: int) -> torch.Tensor:
    """Labels [n] for ``label``: a class index or name, ``all`` (cycle through the classes) or None (unconditional)."""
    if label is None:
        return torch.full((n,), NULL_LABEL, dtype=torch.long)
    names = p.class_names
    if not p.conditional:
        raise ValueError("this run is unconditional: sample without --class")
    if label == "all":
        return torch.arange(n) % len(names)
    if isinstance(label, str) and not label.lstrip("-").isdigit():
        if label not in names:
            raise ValueError(f"unknown class {label!r}; classes: {', '.join(names)} (or 'all')")
        return torch.full((n,), names.index(label), dtype=torch.long)
    idx = int(label)
    if not 0 <= idx < len(names):
        raise ValueError(f"--class must be in 0..{len(names) - 1} ({', '.join(names)}) or 'all'")
    return torch.full((n,), idx, dtype=torch.long)


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


def generate(run, n: int, *, sampler: str | None = None, steps: int | None = None,
             generator: torch.Generator | None = None, label: int | str | None = None,
             labels: torch.Tensor | None = None, guidance_scale: float | None = None, inpaint: str | Path | None = None,
             mask: str | None = None, gl_iters: int | None = None, batch_size: int = 32, sigmas: torch.Tensor | None = None,
             progress: bool = False) -> dict[str, Any]:
    """Draw n clips: mels from the model (``label``: index/name/'all'/None, or ``labels`` [n]), then Griffin-Lim.

    ``inpaint`` (an audio file) with ``mask`` (``START:END`` s) regenerates that span of the clip and keeps the rest.
    """
    p = sampling_spec(run.config)
    labels = class_labels(p, label, n) if labels is None else labels.long()
    if (inpaint is None) != (mask is None):
        raise ValueError("inpainting needs both --inpaint FILE and --mask START:END")
    known = known_from_clip(p, inpaint, mask) if inpaint is not None else None
    method = sampler or run.config["sample"]["sampler"]
    sigmas = run.sigmas(steps) if sigmas is None else sigmas.to(run.device)
    shape = (1, p.normalizer.config.n_mels, p.normalizer.config.frames)
    out = []
    for start in range(0, n, batch_size):
        lab = labels[start:start + batch_size].to(run.device)
        b = len(lab)
        cond = {"label": lab} if p.conditional else None
        den = run.guided(cond, guidance_scale) if cond is not None and bool((lab >= 0).any()) else run.denoiser
        if known is not None:
            den = guidance.inpaint(den, known[0].to(run.device).expand(b, *shape),
                                   known[1].to(run.device).expand(b, *shape))
        x = run.sample(torch.empty(b, *shape), cond=cond, sampler=method, sigmas=sigmas, generator=generator,
                       denoiser=den, progress=progress)
        out.append(x.float().cpu())
    x = torch.cat(out)
    waves, again = reanalyse(p, x, gl_iters or int(run.config["sample"].get("gl_iters", 32)))
    return {"x": x, "reanalysed": again, "log_mels": p.normalizer.denormalize(x[:, 0]), "waves": waves,
            "labels": labels.tolist(),
            "class_names": list(p.class_names), "normalizer": p.normalizer.to_dict()}


def save_samples(samples: dict[str, Any], out: Path, info: dict[str, Any]) -> list[Path]:
    """One 16 kHz WAV per clip, ``spectrograms.png`` titled by class, and ``normalizer.json``."""
    out = Path(out)
    files = save_clips(out, samples["waves"], samples["log_mels"], samples["labels"], samples["class_names"])
    norm = out / "normalizer.json"
    norm.write_text(json.dumps(samples["normalizer"], indent=2))
    info["normalizer"] = samples["normalizer"]
    return files + [norm]


def evaluate(run, *, sampler: str | None = None, steps: int | None = None, n: int | None = None,
             generator: torch.Generator | None = None, guidance_scale: float | None = None,
             gl_iters: int | None = None, classifier_epochs: int = 20, floor: bool = True) -> dict[str, float]:
    """SC09 metrics of n generated clips (requested digits cycle through the classes) with the real test clips and
    their Griffin-Lim floor alongside; FID and NDB are against the training clips' classifier features."""
    p = prepare(run.config["data"])
    judge = get_judge(p, epochs=classifier_epochs)
    n = n or len(p.test)
    gl = gl_iters or int(run.config["sample"].get("gl_iters", 32))
    labels = torch.arange(n) % p.train.num_classes if p.conditional else None
    t0 = time.perf_counter()
    gen = generate(run, n, sampler=sampler, steps=steps, generator=generator, labels=labels,
                   guidance_scale=guidance_scale, gl_iters=gl)
    seconds = time.perf_counter() - t0
    result = {"classifier_test_accuracy": judge.test_accuracy, **score(judge, gen["reanalysed"], labels)}
    result["sample_seconds_per_clip"] = seconds / n
    if floor:
        result.update(real_and_floor(p, judge, gl))
    return result


def make_domain() -> Domain:
    """The audio Domain."""
    from .cli import add_commands

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
        collate=collate_labelled,
        drop_cond=drop_label_cond,
        null_cond=null_label_cond,
        cli=add_commands,
        extras={"prepare": prepare, "score": score, "get_judge": get_judge},
    )


@hookimpl
def polydiff_register_domains(register) -> None:
    register(make_domain())
