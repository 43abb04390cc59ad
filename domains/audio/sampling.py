"""Drawing audio clips (class-conditional, guided, inpainted) through a vocoder, writing them as WAVs, and the SC09
metrics."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from polydiff.core import guidance
from polydiff.domains.common.embeddings import NULL_LABEL
from polydiff.plugins.domain import Batch, EvaluateRequest, SampleRequest, Samples
from polydiff.plugins.errors import OptionError

from . import vocoder_runs
from .clips import SAMPLE_RATE, fit_length, load_audio, resample
from .data import prepare, sampling_spec
from .evaluation import get_judge, real_and_floor, reanalyse, score
from .features import LogMel
from .inpainting import inpaint_mask, parse_span
from .plugin import SampleOptions
from .previews import save_clips
from .vocoding import GRIFFIN_LIM, GriffinLim, is_vocoder, resolve_vocoder


def clip_mel(p, path: str | Path) -> torch.Tensor:
    """A clip's normalised log-mel [1, n_mels, frames]: resampled, centre-padded/cropped and peak-normalised like the
    training clips."""
    cfg = p.normalizer.config
    wave, sr = load_audio(path)
    wave = fit_length(resample(wave, sr, cfg.sample_rate), cfg.clip_samples)
    peak = wave.abs().max()
    if peak <= 1e-6:
        raise ValueError(f"{path}: the clip is silent")
    return p.normalizer.normalize(LogMel(cfg)(wave * (0.9 / peak)))


def read_instances(path: Path, config: dict) -> Batch:
    """``personalize --instances`` / ``edit --input``: an audio file or a folder of them as normalised log-mels
    [n, 1, n_mels, frames]; a clip carries its class (``edit``'s source class, ``personalize --per-class``) by its
    sub-folder's name or FSDD's file naming (``clip_label``)."""
    from polydiff.plugins.errors import UsageError

    p, path = sampling_spec(config), Path(path)
    files = sorted(f for f in path.rglob("*") if f.suffix.lower() in (".wav", ".flac", ".ogg")) if path.is_dir() \
        else [path]
    if not files:
        raise UsageError(f"{path} holds no .wav/.flac/.ogg clips")
    try:
        mels = torch.stack([clip_mel(p, f) for f in files])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    labels = [clip_label(f, path, list(p.class_names)) for f in files]
    return Batch(mels, {"label": torch.tensor(labels, dtype=torch.long)})


def clip_label(file: Path, root: Path, classes: list[str]) -> int:
    """The class a clip carries: its sub-folder's name when that names a class, else its digit in FSDD's
    ``{digit}_{speaker}_{take}.wav`` convention when the run's classes are the ten digits; else ``NULL_LABEL``."""
    from .digits import DIGITS
    from .fsdd import parse_name

    if file.parent != root and file.parent.name in classes:
        return classes.index(file.parent.name)
    parsed = parse_name(file.name)
    if parsed is not None and classes in (list(DIGITS), [str(d) for d in range(10)]):
        return parsed[0]
    return NULL_LABEL


def known_from_clip(p, path: str | Path, span: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(known, mask) normalised mels [1, 1, n_mels, frames] from an audio file and ``START:END`` seconds to redo.

    The clip is resampled to the run's rate, centre-padded/cropped to 1 s and peak-normalised like the training clips.
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
    """Draw clips: mels from the model (``request.labels``, else unconditional), then the ``--vocoder``. ``--inpaint``
    with ``--mask`` regenerates that span of the clip and keeps the rest. A vocoder run re-synthesises held-out
    clips."""
    if is_vocoder(run.config):
        return vocoder_runs.generate(run, request)
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
    vocoder = resolve_vocoder(opts.vocoder if opts is not None else None, run, gl)
    waves, again = reanalyse(p, x, vocoder)
    classes = run.class_names()
    names = [classes[i] if i >= 0 else "any" for i in labels.tolist()]
    return Samples({"x": x, "reanalysed": again, "log_mels": p.normalizer.denormalize(x[:, 0]), "waves": waves,
                    "labels": labels.tolist(), "class_names": classes, "sample_rate": p.normalizer.config.sample_rate},
                   {"normalizer": p.normalizer.to_dict(), "vocoder": vocoder.name,
                    **({"gl_iters": gl} if vocoder.name == GRIFFIN_LIM else {}), "classes": names})


def save_samples(samples: Samples, out: Path) -> list[Path]:
    """One WAV per clip (at the run's rate), ``spectrograms.png`` titled by class, and ``normalizer.json``."""
    files = save_clips(out, samples["waves"], samples["log_mels"], samples["labels"], samples["class_names"],
                       int(samples.data.get("sample_rate", SAMPLE_RATE)))
    norm = out / "normalizer.json"
    norm.write_text(json.dumps(samples.meta["normalizer"], indent=2))
    return files + [norm]


def evaluate(run, request: EvaluateRequest) -> dict[str, float]:
    """SC09 metrics of n generated clips (requested digits cycle through the classes) through the ``--vocoder``, with
    the real test clips and their Griffin-Lim floor (and the learned vocoder's floor when one is used) alongside; FID
    and NDB are against the training clips' classifier features. A vocoder run is scored by its floor."""
    if is_vocoder(run.config):
        return vocoder_runs.evaluate(run, request)
    opts = request.options
    p = prepare(run.config["data"])
    judge = get_judge(p, epochs=opts.classifier_epochs)
    n = request.n or len(p.test)
    gl = opts.gl_iters or int(run.config["sample"]["gl_iters"])
    vocoder = resolve_vocoder(opts.vocoder, run, gl)
    labels = torch.arange(n) % p.train.num_classes if p.conditional else None
    t0 = time.perf_counter()
    gen = generate(run, request.sample(n, labels, SampleOptions(gl_iters=gl, vocoder=opts.vocoder)))
    seconds = time.perf_counter() - t0
    result = {"classifier_test_accuracy": judge.test_accuracy, **score(judge, gen["reanalysed"], labels)}
    result["sample_seconds_per_clip"] = seconds / n
    if opts.floor:
        floors = {"floor_": GriffinLim(p.normalizer.config, gl)}
        if vocoder.name != GRIFFIN_LIM:
            floors["vocoder_floor_"] = vocoder
        result.update(real_and_floor(p, judge, floors))
    return result
