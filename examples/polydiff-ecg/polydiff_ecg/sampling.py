"""Drawing ECG traces (class-conditional with classifier-free guidance, or completing given traces), writing them,
and scoring them against held-out traces."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from polydiff.core import guidance
from polydiff.plugins.domain import EvaluateRequest, SampleRequest, Samples
from polydiff.plugins.errors import OptionError

from . import data
from .metrics import FeatureSpace, frechet_distance
from .preview import traces_png
from .signals import FS, LENGTH

if TYPE_CHECKING:
    from polydiff.plugins.runs import Run


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
