"""The toy domain as a polydiff plugin: the reference for third-party domain authors.

It registers one ``Domain`` through ``polydiff_register_domains``: config sections, option sets and class labels are
declared, and polydiff builds ``train``, ``sample``, ``evaluate``, ``export`` and ``info`` from them (``--class``,
``--guidance-scale`` and ``--guidance`` included). Its ``sample`` adds the core's other guidance methods (classifier
guidance, DPS, inpainting, composition, SDEdit) as guidance methods of its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.core import guidance
from polydiff.core.mixtures import energy_distance
from polydiff.domains.common.embeddings import NULL_LABEL, drop_labels
from polydiff.plugins import hookimpl
from polydiff.plugins.domain import (Batch, Classes, Count, DataSource, Domain, EvaluateRequest, SampleRequest,
                                     Samples)
from polydiff.plugins.errors import OptionError
from polydiff.plugins.options import option

from . import data
from .network import ToyMLP
from .preview import scatter_png

SHIPPED = Path(__file__).parent / "checkpoints" / "moons"


@dataclass
class Data:
    """The ``data`` section: which 2D set, and how many points to draw for training and testing."""

    dataset: str = "moons"
    n_train: int = 20000
    n_test: int = 5000


@dataclass
class Network:
    """The ``network`` section: the MLP's width and number of hidden layers."""

    width: int = 128
    depth: int = 3


def _pair(text: str) -> tuple[float, float]:
    values = tuple(float(v) for v in str(text).split(","))
    if len(values) != 2:
        raise ValueError(f"expected 'X,Y', got {text!r}")
    return values


def _pairs(text: str) -> str:
    try:
        [(int(a), float(b)) for a, b in (item.split(":") for item in str(text).split(","))]
    except ValueError:
        raise ValueError(f"expected 'label:weight,label:weight', got {text!r}") from None
    return str(text)


@dataclass
class SampleOptions:
    """What the toy ``sample`` takes beyond the shared options: the inputs of its own guidance methods."""

    observe_x: float | None = option(None, "dps/inpaint: the observed x coordinate.")
    toward: str | None = option(None, "classifier: target point 'X,Y'.", parse=lambda t: ",".join(map(str, _pair(t))))
    compose: str | None = option(None, "compose: 'label:weight,...' (negative weight = avoid).", parse=_pairs)
    init: Path | None = option(None, "sdedit: .npy of points [n, 2] to edit.", exists=True)
    strength: float = option(0.5, "sdedit: fraction of the grid to run.", min=0.0, max=1.0)


GUIDANCE = {"classifier": "toward a point (--toward X,Y)", "dps": "posterior sampling of x = --observe-x",
            "inpaint": "x fixed to --observe-x", "compose": "weighted classes (--compose)",
            "sdedit": "edit --init points"}


def _presets() -> dict[str, dict[str, Any]]:
    base = {
        "data": {"dataset": "moons", "n_train": 20000, "n_test": 5000},
        "network": {"width": 128, "depth": 3},
        "diffusion": {"parameterization": "edm", "sigma_data": 1.0, "schedule": "edm", "weighting": "edm",
                      "cond_dropout": 0.1},
        "train": {"steps": 1500, "batch_size": 256, "lr": 2e-3, "ema_decay": 0.995, "log_every": 50,
                  "ckpt_every": 500, "warmup": 50},
        "sample": {"sampler": "heun", "steps": 20, "grid": "karras", "sigma_min": 0.002, "sigma_max": 20.0},
    }
    full = {**base, "network": {"width": 256, "depth": 4},
            "train": {**base["train"], "steps": 10000, "batch_size": 512, "lr": 1e-3, "ema_decay": 0.999}}
    return {"quick": base, "full": full}


def build_dataset(cfg: dict[str, Any], split: str) -> torch.Tensor:
    n = cfg["n_train"] if split == "train" else cfg["n_test"]
    return data.make(cfg["dataset"], split, n)


def build_network(cfg: dict[str, Any]) -> ToyMLP:
    return ToyMLP(width=cfg["network"]["width"], depth=cfg["network"]["depth"],
                  num_classes=data.num_classes(cfg["data"]["dataset"]))


def collate(rows: torch.Tensor) -> Batch:
    return Batch(rows[:, :2], rows[:, 2].long())


def class_names(config: dict[str, Any]) -> list[str]:
    """Classes are numbered: the moon, the mode, the row parity ... of the run's data set."""
    return [str(i) for i in range(data.num_classes(config["data"]["dataset"]))]


def data_source(value: str) -> dict[str, Any]:
    """``--data NAME``: a built-in set or one a plugin registered for the toy domain."""
    sets = data.available()
    if value not in sets:
        raise ValueError(f"unknown toy data set {value!r}; choose from {', '.join(sets)}")
    return {"data": {"dataset": value}}


def _guide(run, request: SampleRequest, den, cond: torch.Tensor):
    """The toy's own guidance methods on top of ``den`` (the classifier-free guided denoiser)."""
    opts, method, n, dev = request.options, request.settings.guidance, request.n, run.device
    if method in ("dps", "inpaint") and opts.observe_x is None:
        raise OptionError("--observe-x", f"--guidance {method} needs the observed first coordinate")
    if method == "classifier":
        if opts.toward is None:
            raise OptionError("--toward", "--guidance classifier needs a target point X,Y")
        target = torch.tensor(_pair(opts.toward), device=dev, dtype=torch.float32)

        def log_prob(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            var = 0.25 + sigma**2  # an exact Gaussian "classifier" around the target, broadened by the noise
            return -((x - target) ** 2).sum(1) / (2 * var)

        return guidance.classifier_guidance(den, log_prob, 1.0)
    if method == "dps":
        return guidance.dps(den, lambda x0: x0[:, :1], torch.full((n, 1), opts.observe_x, device=dev), 1.0)
    if method == "inpaint":
        known, mask = torch.zeros(n, 2, device=dev), torch.zeros(n, 2, device=dev)
        known[:, 0], mask[:, 0] = opts.observe_x, 1
        return guidance.inpaint(den, known, mask)
    if method == "compose":
        if not opts.compose:
            raise OptionError("--compose", "--guidance compose needs 'label:weight,...'")
        pairs = [(int(a), float(b)) for a, b in (item.split(":") for item in opts.compose.split(","))]
        conds = [(torch.full((n,), c, device=dev, dtype=torch.long), w) for c, w in pairs]
        return guidance.compose(run.denoiser, conds, torch.full_like(cond, NULL_LABEL))
    return den


def generate(run, request: SampleRequest) -> Samples:
    """Draw points; without a class each sample gets a uniformly drawn one (the built-in sets are balanced), which
    samples the data distribution through the conditional model, sharper than the null class it learnt from 10% of
    the data. ``--guidance sdedit`` edits the ``--init`` points instead (one sample per point)."""
    opts, dev, g = request.options, run.device, request.generator
    init = None
    if request.settings.guidance == "sdedit":
        if opts.init is None:
            raise OptionError("--init", "--guidance sdedit needs a .npy of points to edit")
        init = np.load(opts.init, allow_pickle=False)
        if init.ndim != 2 or init.shape[1] != 2:
            raise OptionError("--init", f"expected an array of shape [n, 2], got {init.shape}")
        request.n = len(init)
    n, k = request.n, len(run.class_names())
    if request.labels is not None:
        cond = request.labels.to(dev)
    elif k > 0:
        cond = torch.randint(0, k, (n,), generator=g, device=g.device if g is not None else dev).to(dev)
    else:
        cond = torch.full((n,), NULL_LABEL, device=dev, dtype=torch.long)
    den = run.guided(cond, request.settings) if request.labels is not None else run.denoiser
    if init is not None:
        x0 = torch.as_tensor(init, dtype=torch.float32, device=dev)
        pts = guidance.sdedit(den, x0, run.sigmas(request.settings.steps), opts.strength,
                              run_sampler(run, request), cond=cond, generator=g)
    else:
        pts = run.draw(torch.empty(n, 2), request, cond=cond, denoiser=_guide(run, request, den, cond))
    title = f"toy {run.config['data']['dataset']}: {request.settings.sampler}, {request.settings.guidance}"
    return Samples({"points": pts.cpu().numpy(), "labels": cond.cpu().numpy()}, {"title": title})


def run_sampler(run, request: SampleRequest):
    """The request's sampler function (a plugin's or a built-in)."""
    from polydiff.plugins.manager import get_manager

    return get_manager().sampler(request.settings.sampler)


def save_samples(samples: Samples, out: Path) -> list[Path]:
    """``samples.npy`` [n, 2] and ``samples.png``, a scatter plot titled with the sampler and guidance."""
    npy = out / "samples.npy"
    np.save(npy, samples["points"])
    png = scatter_png(samples["points"], out / "samples.png", title=samples.meta.get("title", "polydiff toy samples"))
    return [npy, png]


def evaluate(run, request: EvaluateRequest) -> dict[str, float]:
    """Energy distance of n conditional samples (labels of held-out points) to n held-out points, next to the
    distance between two held-out halves (the floor that finite samples allow)."""
    n = request.n or 2000
    test = data.make(run.config["data"]["dataset"], "test", 2 * n)
    ref, ref2, labels = test[:n, :2], test[n:, :2], test[:n, 2].long().to(run.device)
    pts = run.draw(torch.empty(n, 2), request.sample(n), cond=labels, denoiser=run.denoiser)
    return {"energy_distance": float(energy_distance(pts.cpu(), ref)),
            "energy_distance_floor": float(energy_distance(ref2, ref))}


def make_domain() -> Domain:
    """The toy Domain: everything polydiff needs to train, sample, evaluate and show 2D point sets."""
    return Domain(
        name="toy",
        summary="2D point sets (moons, 8 Gaussians, checkerboard, swiss roll): the reference domain",
        presets=_presets(),
        build_dataset=build_dataset,
        build_network=build_network,
        generate=generate,
        save_samples=save_samples,
        evaluate=evaluate,
        primary_metric="energy_distance",
        sections={"data": Data, "network": Network},
        options={"sample": SampleOptions},
        counts={"sample": Count(2000, "Number of points."),
                "evaluate": Count(None, "Points compared with held-out ones (default 2000).")},
        classes=Classes(class_names),
        data_source=DataSource(data_source, "Data set: moons, 8gaussians, checkerboard, swissroll or a plugin's.",
                               ("--data", "--dataset")),
        guidance=GUIDANCE,
        collate=collate,
        drop_cond=lambda cond, p, g: drop_labels(cond, p, NULL_LABEL, g),
        null_cond=lambda cond: torch.full_like(cond, NULL_LABEL),
        shipped_run=SHIPPED,
    )


@hookimpl
def polydiff_register_domains(register) -> None:
    register(make_domain())
