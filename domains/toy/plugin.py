"""The toy domain as a polydiff plugin: the reference for third-party domain authors.

It registers one ``Domain`` through ``polydiff_register_domains``; everything else (train/sample/evaluate/info commands,
the training loop, checkpoints) comes from polydiff. Its ``sample`` command exposes every core sampler and guidance.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.core import guidance
from polydiff.core.mixtures import energy_distance
from polydiff.domains.common.embeddings import NULL_LABEL, drop_labels
from polydiff.plugins import hookimpl
from polydiff.plugins.domain import Batch, Domain

from . import data
from .network import ToyMLP
from .preview import scatter_png

SHIPPED = Path(__file__).parent / "checkpoints" / "moons"


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


def _parse_pairs(text: str) -> list[tuple[int, float]]:
    try:
        return [(int(a), float(b)) for a, b in (item.split(":") for item in text.split(","))]
    except ValueError:
        raise ValueError(f"--compose expects 'label:weight,label:weight', got {text!r}") from None


def generate(run, n: int, *, sampler: str | None = None, steps: int | None = None,
             generator: torch.Generator | None = None, label: int | None = None, guidance_scale: float | None = None,
             method: str = "cfg", observe_x: float | None = None, toward: tuple[float, float] | None = None,
             compose: str | None = None, init: np.ndarray | None = None, strength: float = 0.5,
             dps_scale: float = 1.0, classifier_scale: float = 1.0, progress: bool = False) -> dict[str, Any]:
    """Draw n points; ``method`` picks the guidance: cfg, classifier, dps, inpaint, compose or sdedit."""
    k = data.num_classes(run.config["data"]["dataset"])
    dev = run.device
    if label is not None and not 0 <= label < k:
        raise ValueError(f"--class must be in 0..{k - 1} for this data set")
    if label is None and k > 0:
        # no class asked for: draw one per sample (uniform, as the built-in sets are), which samples the data
        # distribution through the conditional model, sharper than the null class it learnt from 10% of the data
        cond = torch.randint(0, k, (n,), generator=generator, device=dev if generator is None else generator.device)
        cond = cond.to(dev)
    else:
        cond = torch.full((n,), NULL_LABEL if label is None else label, device=dev, dtype=torch.long)
    like = torch.empty(n, 2, device=dev)
    den = run.guided(cond, guidance_scale) if label is not None else run.denoiser
    if method in ("dps", "inpaint") and observe_x is None:
        raise ValueError(f"--guidance {method} needs --observe-x VALUE (the observed first coordinate)")
    if method == "classifier":
        if toward is None:
            raise ValueError("--guidance classifier needs --toward X,Y")
        target = torch.tensor(toward, device=dev, dtype=torch.float32)

        def log_prob(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            var = 0.25 + sigma**2  # an exact Gaussian "classifier" around the target, broadened by the noise
            return -((x - target) ** 2).sum(1) / (2 * var)

        den = guidance.classifier_guidance(den, log_prob, classifier_scale)
    elif method == "dps":
        y = torch.full((n, 1), observe_x, device=dev)
        den = guidance.dps(den, lambda x0: x0[:, :1], y, dps_scale)
    elif method == "inpaint":
        known = torch.zeros(n, 2, device=dev)
        known[:, 0] = observe_x
        mask = torch.zeros(n, 2, device=dev)
        mask[:, 0] = 1
        den = guidance.inpaint(den, known, mask)
    elif method == "compose":
        if not compose:
            raise ValueError("--guidance compose needs --compose 'label:weight,...'")
        conds = [(torch.full((n,), c, device=dev, dtype=torch.long), w) for c, w in _parse_pairs(compose)]
        den = guidance.compose(run.denoiser, conds, torch.full_like(cond, NULL_LABEL))
    elif method == "sdedit":
        if init is None:
            raise ValueError("--guidance sdedit needs --init FILE.npy (points to edit)")
        x0 = torch.as_tensor(init, dtype=torch.float32, device=dev)
        sig = run.sigmas(steps)
        pts = guidance.sdedit(den, x0, sig, strength, sampler or run.config["sample"]["sampler"], cond=cond,
                              generator=generator)
        return {"points": pts.cpu().numpy(), "labels": cond.cpu().numpy()}
    elif method != "cfg":
        raise ValueError(f"unknown guidance {method!r}; choose cfg, classifier, dps, inpaint, compose or sdedit")
    pts = run.sample(like, cond=cond, sampler=sampler, steps=steps, generator=generator, denoiser=den, progress=progress)
    return {"points": pts.cpu().numpy(), "labels": cond.cpu().numpy()}


def save_samples(samples: dict[str, Any], out: Path, info: dict[str, Any]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    npy = out / "samples.npy"
    np.save(npy, samples["points"])
    png = out / "samples.png"
    scatter_png(samples["points"], png, title=info.get("title", "polydiff toy samples"))
    return [npy, png]


def evaluate(run, *, sampler: str | None = None, steps: int | None = None, n: int = 2000,
             generator: torch.Generator | None = None) -> dict[str, float]:
    """Energy distance of n conditional samples (labels of held-out points) to n held-out points, next to the
    distance between two held-out halves (the floor that finite samples allow)."""
    cfg = run.config["data"]
    test = data.make(cfg["dataset"], "test", 2 * n)
    ref, ref2, labels = test[:n, :2], test[n:, :2], test[:n, 2].long().to(run.device)
    pts = run.sample(torch.empty(n, 2), cond=labels, sampler=sampler, steps=steps, generator=generator)
    return {"energy_distance": float(energy_distance(pts.cpu(), ref)),
            "energy_distance_floor": float(energy_distance(ref2, ref))}


def make_domain() -> Domain:
    """The toy Domain: everything polydiff needs to train, sample, evaluate and show 2D point sets."""
    from .cli import add_commands

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
        collate=collate,
        drop_cond=lambda cond, p, g: drop_labels(cond, p, NULL_LABEL, g),
        null_cond=lambda cond: torch.full_like(cond, NULL_LABEL),
        cli=add_commands,
        shipped_run=SHIPPED,
    )


@hookimpl
def polydiff_register_domains(register) -> None:
    register(make_domain())
