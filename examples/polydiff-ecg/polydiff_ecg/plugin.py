"""The ECG domain's declaration: what polydiff needs to train, sample, evaluate and show ECG-like traces.

polydiff builds ``polydiff ecg train | sample | evaluate | export | info`` from this ``Domain``: the config sections
and presets, the options of each command (``--inpaint``/``--mask`` for sample, ``--n-train`` for train), the class
labels (``--class`` and classifier-free guidance), what ``-n`` means, and what ``--data`` accepts. There is no CLI
code here; the one hook at the bottom registers the domain through the entry-point group ``polydiff``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from polydiff.core import guidance
from polydiff.domains.common.embeddings import NULL_LABEL, drop_labels
from polydiff.plugins import hookimpl
from polydiff.plugins.domain import (Batch, Classes, Count, DataSource, Domain, EvaluateRequest, SampleRequest,
                                     Samples)
from polydiff.plugins.errors import OptionError
from polydiff.plugins.options import option

from . import data
from .metrics import FeatureSpace, frechet_distance
from .network import ECGNet
from .preview import traces_png
from .signals import DURATION, FS, LENGTH

if TYPE_CHECKING:
    from polydiff.plugins.runs import Run


@dataclass
class Data:
    """The ``data`` section: where traces come from, and how many synthetic traces the splits hold."""

    source: str = data.SYNTHETIC
    """``synthetic`` (procedural rhythms) or a .npy [N, 256] / .npz (signals, labels, names) file of traces."""
    n_train: int = 4000
    n_test: int = 1000


@dataclass
class Network:
    """The ``network`` section: width, depth, embedding size and patch size of ``ECGNet``."""

    channels: int = 96
    blocks: int = 6
    emb_dim: int = 128
    patch: int = 8
    attention: bool = True
    """One self-attention block (with patch positions) in the middle of the residual blocks."""

    def __post_init__(self) -> None:
        if LENGTH % self.patch:
            raise ValueError(f"patch must divide the trace length {LENGTH}, got {self.patch}")
        if self.channels % 8:
            raise ValueError(f"channels must be a multiple of 8 (norm groups, attention heads), got {self.channels}")


def parse_span(text: str) -> str:
    """``START:END`` in seconds within the trace, normalised to ``'start:end'``; ValueError when malformed."""
    try:
        start, end = (float(v) for v in str(text).split(":"))
    except ValueError:
        raise ValueError(f"expected START:END in seconds, e.g. 1.5:2.5, got {text!r}") from None
    if not 0 <= start < end <= DURATION:
        raise ValueError(f"need 0 <= START < END <= {DURATION:g} s, got {text!r}")
    return f"{start:g}:{end:g}"


@dataclass
class TrainOptions:
    """What ``ecg train`` takes beyond the shared options."""

    n_train: int | None = option(None, "Synthetic training traces (sets data.n_train).", min=64, config="data.n_train")


@dataclass
class SampleOptions:
    """What ``ecg sample`` takes beyond the shared options: traces to complete and the span to regenerate."""

    inpaint: Path | None = option(None, "Traces to complete: .npy [m, 256] or [256] (sample i completes trace i mod "
                                  "m); needs --mask.", exists=True)
    mask: str | None = option(None, "With --inpaint: START:END seconds of each trace to regenerate, e.g. 1.5:2.5.",
                              parse=parse_span)


def presets() -> dict[str, dict[str, Any]]:
    """``quick`` (a couple of minutes on one CPU thread) and ``full`` (a longer run, better on a GPU)."""
    quick = {
        "data": {"source": data.SYNTHETIC, "n_train": 4000, "n_test": 1000},
        "network": {"channels": 96, "blocks": 6, "emb_dim": 128, "patch": 8, "attention": True},
        "diffusion": {"parameterization": "edm", "sigma_data": 1.0, "schedule": "edm", "weighting": "edm",
                      "schedule_args": {"P_mean": -0.4, "P_std": 1.4}, "cond_dropout": 0.1},
        "train": {"steps": 600, "batch_size": 64, "lr": 2e-3, "warmup": 50, "lr_decay": "cosine", "decay_from": 300,
                  "ema_decay": 0.99, "log_every": 25, "ckpt_every": 200},
        "sample": {"sampler": "heun", "steps": 18, "grid": "karras", "sigma_min": 0.002, "sigma_max": 40.0,
                   "guidance_scale": 2.0},
    }
    full = {**quick, "data": {**quick["data"], "n_train": 20000},
            "network": {"channels": 128, "blocks": 10, "emb_dim": 256, "patch": 4, "attention": True},
            "train": {**quick["train"], "steps": 20000, "batch_size": 128, "lr": 1e-3, "decay_from": 12000,
                      "ema_decay": 0.999, "log_every": 100, "ckpt_every": 2000}}
    return {"quick": quick, "full": full}


def facts(config: dict[str, Any]) -> dict[str, Any]:
    """The run's fitted facts (class names, normalisation), fitted again for a config that lacks them."""
    return config.get("fitted") or data.fit(config["data"])


def build_network(config: dict[str, Any]) -> ECGNet:
    """``ECGNet`` sized by the ``network`` section, with one class embedding per class of the data."""
    net = config["network"]
    return ECGNet(net["channels"], net["blocks"], net["emb_dim"], len(facts(config)["classes"]), net["patch"],
                  net["attention"])


def collate(rows: torch.Tensor) -> Batch:
    """Rows of (trace, label) into a batch: traces [B, 256] and labels [B] (-1 = unlabelled, the null class)."""
    return Batch(rows[:, :LENGTH], rows[:, LENGTH].long())


def to_config(value: str) -> dict[str, Any]:
    """``train --data``: ``synthetic`` or a file of traces, checked now so a bad file fails before training."""
    if value == data.SYNTHETIC:
        return {"data": {"source": value}}
    data.read_file(value)
    return {"data": {"source": str(Path(value).resolve())}}


def class_labels(run: "Run", request: SampleRequest) -> tuple[torch.Tensor | None, bool]:
    """The class of each sample and whether the command chose them: without ``--class`` each sample gets a
    uniformly drawn class (the synthetic set is balanced), which the conditional model renders more sharply than
    the null class it saw on 10% of the steps. None for an unconditional run."""
    if request.labels is not None:
        return request.labels.to(run.device), True
    k, g = len(run.class_names()), request.generator
    if k == 0:
        return None, False
    labels = torch.randint(0, k, (request.n,), generator=g, device=g.device if g is not None else run.device)
    return labels.to(run.device), False


def inpainting(run: "Run", request: SampleRequest, den: Any, fitted: dict[str, Any]) -> tuple[Any, list[float] | None]:
    """``den`` made to keep each ``--inpaint`` trace outside the ``--mask`` span (core.guidance.inpaint)."""
    opts = request.options
    if opts.inpaint is None and opts.mask is None:
        return den, None
    if opts.inpaint is None or opts.mask is None:
        raise OptionError("--mask" if opts.mask is None else "--inpaint", "--inpaint and --mask go together")
    given = np.load(opts.inpaint, allow_pickle=False)
    given = given[None] if given.ndim == 1 else given
    if given.ndim != 2 or given.shape[1] != LENGTH or len(given) == 0:
        raise OptionError("--inpaint", f"expected traces of shape [m, {LENGTH}] or [{LENGTH}], got {list(given.shape)}")
    known = (torch.as_tensor(given, dtype=torch.float32) - fitted["mean"]) / fitted["std"]
    known = known[torch.arange(request.n) % len(known)].to(run.device)
    start, end = (float(v) for v in opts.mask.split(":"))
    t = torch.arange(LENGTH, device=run.device) / FS
    keep = ((t < start) | (t >= end)).float().expand(request.n, LENGTH)
    return guidance.inpaint(den, known, keep), [start, end]


def generate(run: "Run", request: SampleRequest) -> Samples:
    """Draw traces with the run's sampler (guided by ``--class`` at ``--guidance-scale``), in the data's units."""
    fitted, names = run.fitted, run.class_names()
    labels, chosen = class_labels(run, request)
    den = run.guided(labels, request.settings) if chosen else run.denoiser
    den, span = inpainting(run, request, den, fitted)
    x = run.draw(torch.empty(request.n, LENGTH), request, cond=labels, denoiser=den)
    signals = (x * fitted["std"] + fitted["mean"]).cpu().numpy()
    classes = [names[k] for k in labels.tolist()] if labels is not None else []
    s = request.settings
    title = f"ecg: {s.sampler}, {s.steps} steps, " + (f"guidance {s.guidance_scale:g}" if chosen else "no guidance")
    return Samples({"signals": signals}, {"labels": classes, "sample_rate_hz": FS, "span_s": span, "title": title})


def save_samples(samples: Samples, out: Path) -> list[Path]:
    """``samples.npy`` [n, 256] and ``preview.png``, a grid of the first 16 traces titled by class."""
    npy = out / "samples.npy"
    np.save(npy, samples["signals"].astype(np.float32))
    span = samples.meta.get("span_s")
    png = traces_png(samples["signals"], samples.meta.get("labels", []), out / "preview.png",
                     title=samples.meta.get("title", ""), span=tuple(span) if span else None)
    return [npy, png]


def evaluate(run: "Run", request: EvaluateRequest) -> dict[str, float]:
    """Feature Frechet distance of ``n`` samples (classes of held-out traces) to ``n`` held-out traces, next to the
    distance between the validation and test splits (the floor for ``n``); with labels, the accuracy with which a
    classifier fitted on the training split recovers the requested class, and its accuracy on held-out traces."""
    cfg = run.config["data"]
    n = request.n or 500
    train_x, train_y = data.split(cfg, "train")
    space = FeatureSpace.fit(train_x[:2000], train_y[:2000])
    test_x, test_y = data.split(cfg, "test")
    val_x, _ = data.split(cfg, "val")
    rows = np.arange(n) % len(test_x)
    labelled = bool(run.class_names()) and (test_y >= 0).all()
    labels = torch.as_tensor(test_y[rows]).to(run.device) if labelled else None
    x = run.draw(torch.empty(n, LENGTH), request.sample(n, labels), cond=labels)
    fitted = run.fitted
    z = space.embed((x * fitted["std"] + fitted["mean"]).cpu().numpy())
    z_test, z_val = space.embed(test_x[:n]), space.embed(val_x[:n])
    metrics = {"feature_fd": frechet_distance(z, z_test), "feature_fd_floor": frechet_distance(z_val, z_test)}
    if labelled:
        metrics["class_accuracy"] = space.accuracy(z, test_y[rows])
        metrics["class_accuracy_data"] = space.accuracy(z_test, test_y[:n])
    return metrics


def make_domain() -> Domain:
    """The ECG Domain: one declaration from which polydiff builds every command."""
    return Domain(
        name="ecg",
        summary="ECG-like rhythm strips (4 s at 64 Hz): normal, tachycardia, bradycardia, atrial fibrillation",
        presets=presets(),
        build_dataset=data.dataset,
        build_network=build_network,
        generate=generate,
        save_samples=save_samples,
        evaluate=evaluate,
        primary_metric="feature_fd",
        sections={"data": Data, "network": Network},
        options={"train": TrainOptions, "sample": SampleOptions},
        counts={"sample": Count(16, "Number of traces."),
                "evaluate": Count(None, "Traces generated and compared with held-out ones (default 500).")},
        classes=Classes(lambda config: list(facts(config)["classes"])),
        data_source=DataSource(to_config, "'synthetic' or a .npy [N, 256] / .npz (signals, labels, names) file."),
        collate=collate,
        drop_cond=lambda cond, p, g: drop_labels(cond, p, NULL_LABEL, g),
        null_cond=lambda cond: torch.full_like(cond, NULL_LABEL),
        fit_data=data.fit,
        demo={"n": 8, "label": "all"},
    )


@hookimpl
def polydiff_register_domains(register: Callable[[Domain], None]) -> None:
    """Register the ECG domain (found through the entry point ``ecg = "polydiff_ecg.plugin"``)."""
    register(make_domain())
