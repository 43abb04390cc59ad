"""The point-cloud domain as a polydiff plugin: meshes -> surface point sets -> set diffusion -> PLY files.

Data: ``source`` is ``shapes`` (the labelled procedural set of ``shapes.py``), ``random_urdfs`` (pybullet's 1,000
objects) or a folder of meshes. Clouds are normalised (``global`` as in PointFlow, or per ``shape``), and the
normalisation is written next to every output. Samples, metrics and the held-out reference live in that normalised
frame; PLY files are written in the data frame when the normalisation can be inverted (``global``).
"""
from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.domains.common.datasets import LabelledTensors, SubsetRows, collate_labelled
from polydiff.domains.common.embeddings import NULL_LABEL, drop_label_cond, null_label_cond
from polydiff.plugins import hookimpl
from polydiff.plugins.domain import Domain

from .anchored import anchored, default_context
from .completion import complete
from .data import MeshLoad, Normalization, PointSet, load_folder, load_set, sample_clouds, write_json
from .files import preview_grid, write_clouds
from .metrics import evaluate_sets
from .network import PointSetTransformer

Tensor = torch.Tensor

DEFAULT_DATA = {"source": "shapes", "n_points": 2048, "n_per_class": 100, "normalization": "global",
                "held_out": 0.2, "conditional": True, "seed": 0, "limit": None, "train_points": None}


SHIPPED = Path(__file__).parent / "checkpoints" / "shapes"


def presets() -> dict[str, dict[str, Any]]:
    """``quick``: a few CPU minutes on 512-point clouds of the procedural set; ``cpu``: the shipped checkpoint's recipe
    (2048-point clouds, trained on fresh 256-point subsets, about an hour on one CPU core); ``full``: GPU-sized."""
    quick = {
        "data": {**DEFAULT_DATA, "n_points": 512, "n_per_class": 40},
        "network": {"dim": 64, "depth": 3, "latents": 32, "heads": 4, "mlp_ratio": 2, "fourier": 16,
                    "fourier_scale": 1.0},
        "diffusion": {"parameterization": "edm", "sigma_data": 1.0, "schedule": "edm", "weighting": "edm",
                      "cond_dropout": 0.1},
        "train": {"steps": 200, "batch_size": 16, "lr": 1e-3, "ema_decay": 0.99, "warmup": 20, "log_every": 10,
                  "ckpt_every": 100, "weight_decay": 0.0},
        "sample": {"sampler": "heun", "steps": 18, "grid": "karras", "sigma_min": 0.002, "sigma_max": 80.0,
                   "guidance_scale": 1.0, "anchored": True},
    }
    cpu = {
        **quick,
        "data": {**DEFAULT_DATA, "n_points": 2048, "n_per_class": 100, "train_points": 256},
        "network": {"dim": 128, "depth": 4, "latents": 64, "heads": 4, "mlp_ratio": 2, "fourier": 32,
                    "fourier_scale": 1.0},
        "train": {"steps": 2500, "batch_size": 32, "lr": 5e-4, "ema_decay": 0.999, "warmup": 200, "log_every": 50,
                  "ckpt_every": 500, "weight_decay": 0.0},
        "sample": {**quick["sample"], "steps": 25},
    }
    full = {
        **quick,
        "data": {**DEFAULT_DATA, "n_points": 2048, "n_per_class": 500},
        "network": {"dim": 256, "depth": 8, "latents": 128, "heads": 8, "mlp_ratio": 4, "fourier": 64,
                    "fourier_scale": 1.0},
        "train": {"steps": 200_000, "batch_size": 32, "lr": 2e-4, "ema_decay": 0.9999, "warmup": 2000,
                  "log_every": 100, "ckpt_every": 5000, "weight_decay": 0.0},
        "sample": {**quick["sample"], "steps": 25},
    }
    return {"quick": quick, "cpu": cpu, "full": full}


# ---- data -----------------------------------------------------------------------------------------------------

@dataclass
class Prepared:
    """The train and held-out parts of a set, already normalised, with the normalisation fitted on train."""

    train: PointSet
    test: PointSet
    normalization: Normalization
    train_points: np.ndarray
    test_points: np.ndarray

    @property
    def conditional(self) -> bool:
        return len(self.train.classes) > 0


def _data_cfg(cfg: dict[str, Any]) -> dict[str, Any]:
    unknown = set(cfg) - set(DEFAULT_DATA)
    if unknown:
        raise ValueError(f"unknown points data setting(s): {', '.join(sorted(unknown))}; known: {', '.join(DEFAULT_DATA)}")
    return {**DEFAULT_DATA, **cfg}


@functools.lru_cache(maxsize=4)
def _prepare(key: str) -> Prepared:
    c = json.loads(key)
    full = load_set(str(c["source"]), int(c["n_points"]), seed=int(c["seed"]), n_per_class=int(c["n_per_class"]),
                    limit=c["limit"])
    if not c["conditional"]:
        full = PointSet(full.points, full.names, np.full(len(full), -1, dtype=np.int64), (), full.source, full.skipped)
    train, test = full.split("train", c["held_out"]), full.split("test", c["held_out"])
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"the set {c['source']} ({len(full)} items) leaves an empty train or held-out part; "
                         "use more meshes or change data.held_out")
    norm = Normalization.fit(c["normalization"], train.points)
    return Prepared(train, test, norm, norm.apply(train.points), norm.apply(test.points))


def prepare(data_cfg: dict[str, Any]) -> Prepared:
    """Load (cached) and split the configured set and fit the normalisation on its train part."""
    return _prepare(json.dumps(_data_cfg(data_cfg), sort_keys=True))


@dataclass
class Spec:
    """What sampling needs to know of the training set: its normalisation, class names and whether labels condition."""

    normalization: Normalization
    classes: list[str]
    conditional: bool


def fit_data(data_cfg: dict[str, Any]) -> dict[str, Any]:
    """The facts a run stores in its config's ``fitted`` section before training (JSON-ready)."""
    p = prepare(data_cfg)
    return {"normalization": p.normalization.to_dict(), "classes": list(p.train.classes), "conditional": p.conditional}


def sampling_spec(run_config: dict[str, Any]) -> Spec:
    """The run's ``Spec`` from its ``fitted`` section, without building the set (older runs: from the set)."""
    f = run_config.get("fitted") or fit_data(run_config["data"])
    return Spec(Normalization.from_dict(f["normalization"]), list(f["classes"]), bool(f["conditional"]))


def _clouds(points: np.ndarray, labels: np.ndarray, conditional: bool, k: int | None = None) -> LabelledTensors:
    x, y = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)), torch.from_numpy(labels.astype(np.int64))
    return LabelledTensors(x, y, conditional) if k is None else SubsetRows(x, y, conditional, int(k))


def build_dataset(cfg: dict[str, Any], split: str) -> LabelledTensors:
    """``train`` clouds (a fresh random ``train_points`` of each cloud's ``n_points`` per access when set), or the
    held-out ones for ``val``/``test``. The set network's attention averages over points, so a model trained on
    subsets samples full-size clouds."""
    p = prepare(cfg)
    if split == "train":
        return _clouds(p.train_points, p.train.labels, p.conditional, _data_cfg(cfg)["train_points"])
    if split in ("val", "test"):
        return _clouds(p.test_points, p.test.labels, p.conditional)
    raise ValueError(f"unknown split {split!r}; choose train, val or test")


def build_network(cfg: dict[str, Any]) -> PointSetTransformer:
    """The set transformer of the ``network`` config, class-conditional when the set has labels."""
    spec = sampling_spec(cfg)
    return PointSetTransformer(num_classes=len(spec.classes) if spec.conditional else 0, **cfg["network"])


# ---- sampling -------------------------------------------------------------------------------------------------

def class_index(run, label: int | str | None) -> int | None:
    """A class given by index or name -> index (None stays None), with a clear error for the run's set."""
    if label is None:
        return None
    classes = sampling_spec(run.config).classes
    if not classes:
        raise ValueError("this run was trained on an unlabelled set: it cannot sample a given class")
    if isinstance(label, str) and not label.lstrip("-").isdigit():
        if label not in classes:
            raise ValueError(f"unknown class {label!r}; classes: {', '.join(classes)}")
        return classes.index(label)
    idx = int(label)
    if not 0 <= idx < len(classes):
        raise ValueError(f"class index must be in 0..{len(classes) - 1} ({', '.join(classes)})")
    return idx


def generate(run, n: int, *, sampler: str | None = None, steps: int | None = None,
             generator: torch.Generator | None = None, label: int | str | None = None,
             labels: Tensor | None = None, guidance_scale: float | None = None, partial: np.ndarray | None = None,
             sigmas: Tensor | None = None, batch_size: int = 64, progress: bool = False,
             n_points: int | None = None, anchor: bool | None = None) -> dict[str, Any]:
    """Draw n clouds of ``n_points`` (default: the run's) in the normalised frame; ``label`` (name or index) or
    ``labels`` [n] picks classes, ``partial`` [K, 3] is completed (known points fixed, the rest generated: completion
    or upsampling). ``partial`` is in the data frame under ``global`` normalisation and must already be normalised
    under ``shape`` (its own bounding sphere is not the full shape's). A run trained on ``train_points``-point subsets
    denoises larger clouds in anchored sets of that size (``anchored.py``) when ``anchor`` (default: the run's
    ``sample.anchored``, true if unset) is true; ``sample.anchor_context`` sets how many anchor points each chunk
    reads (default three quarters of the set)."""
    p = sampling_spec(run.config)
    n_points = int(run.config["data"]["n_points"]) if n_points is None else int(n_points)
    if n_points < 1:
        raise ValueError(f"the number of points per cloud must be positive, got {n_points}")
    idx = class_index(run, label)
    set_size = run.config["data"].get("train_points")
    anchor = bool(run.config["sample"].get("anchored", True)) if anchor is None else anchor
    sets = int(set_size) if anchor and set_size and n_points > int(set_size) else None
    context = run.config["sample"].get("anchor_context")
    context = int(context) if context is not None else None
    if labels is None:
        labels = torch.full((n,), NULL_LABEL if idx is None else idx, dtype=torch.long)
    labels = labels.to(run.device)
    sigmas = run.sigmas(steps) if sigmas is None else sigmas.to(run.device)
    method = sampler or run.config["sample"]["sampler"]
    out = []
    for start in range(0, n, batch_size):
        lab = labels[start:start + batch_size]
        b = len(lab)
        cond = {"label": lab} if p.conditional else None
        base = run.denoiser if sets is None else anchored(run.denoiser, sets, context, generator=generator)
        den = run.guided(cond, guidance_scale, base) if p.conditional and bool((lab >= 0).any()) else base
        if partial is not None:
            known = torch.as_tensor(p.normalization.apply(np.asarray(partial, dtype=np.float32)[None])[0]
                                    if p.normalization.mode == "global" else partial, dtype=torch.float32)
            pts = complete(den, known.to(run.device).expand(b, -1, -1), n_points, sigmas, method, cond=cond,
                           generator=generator)
        else:
            pts = run.sample(torch.empty(b, n_points, 3), cond=cond, sampler=method, sigmas=sigmas,
                             generator=generator, denoiser=den, progress=progress)
        out.append(pts.float().cpu())
    points = torch.cat(out).numpy()
    classes = list(p.classes)
    return {"points": points, "labels": labels.cpu().numpy(), "classes": classes,
            "normalization": p.normalization.to_dict(), "anchored_set_size": sets,
            "anchor_context": (default_context(sets) if context is None else context) if sets else None}


def save_samples(samples: dict[str, Any], out: Path, info: dict[str, Any]) -> list[Path]:
    """One PLY per cloud (data frame when the normalisation inverts), a PNG grid and ``clouds.json`` (normalisation,
    frame, classes); ``info`` gains the normalisation so the CLI's samples.json states it too."""
    norm = Normalization.from_dict(samples["normalization"])
    frame = "data" if norm.mode == "global" else "normalised (per-shape: centred, unit bounding sphere)"
    pts = norm.invert(samples["points"])
    out = Path(out)
    files = write_clouds(out, pts)
    classes = samples.get("classes") or []
    titles = [classes[int(lab)] if classes and lab >= 0 else f"#{i}" for i, lab in enumerate(samples["labels"])]
    files.append(preview_grid(samples["points"][:16], out / "preview.png", titles[:16]))
    meta = {"n_clouds": int(len(pts)), "n_points": int(pts.shape[1]), "ply_frame": frame,
            "normalization": samples["normalization"], "labels": [titles[i] for i in range(len(pts))],
            "anchored_set_size": samples.get("anchored_set_size"), "anchor_context": samples.get("anchor_context"),
            **info}
    info["normalization"] = samples["normalization"]
    info["ply_frame"] = frame
    write_json(out / "clouds.json", json.loads(json.dumps(meta, default=str)))
    files.append(out / "clouds.json")
    return files


# ---- evaluation -----------------------------------------------------------------------------------------------

def reference_clouds(run, folder: str | Path, seed: int = 0) -> tuple[np.ndarray, MeshLoad]:
    """Surface samples of every mesh under ``folder`` ([M, n_points, 3], in the run's normalised frame) and the load
    report (broken or faceless files are skipped, with the reason)."""
    loaded = load_folder(folder)
    clouds = sample_clouds(loaded.meshes, int(run.config["data"]["n_points"]), seed)
    return sampling_spec(run.config).normalization.apply(clouds), loaded


def evaluate(run, *, sampler: str | None = None, steps: int | None = None, n: int | None = None,
             generator: torch.Generator | None = None, metrics: tuple[str, ...] = ("cd", "emd"),
             emd_points: int = 256, guidance_scale: float | None = None, oracle: bool = True,
             reference: np.ndarray | None = None) -> dict[str, float]:
    """MMD, COV and 1-NNA (CD and EMD) of generated clouds against at most ``n`` references: the held-out set (the
    generated clouds copy its labels when the model is conditional) or ``reference`` clouds [M, N, 3] in the run's
    normalised frame (unconditional samples). ``oracle`` adds the same metrics for training clouds in their place."""
    p = prepare(run.config["data"])
    pool, pool_labels = (p.test_points, p.test.labels) if reference is None else (reference, None)
    m = len(pool) if n is None else min(n, len(pool))
    pick = np.random.default_rng(0).permutation(len(pool))[:m]
    ref = torch.from_numpy(np.ascontiguousarray(pool[pick], dtype=np.float32))
    labels = torch.from_numpy(pool_labels[pick]) if p.conditional and pool_labels is not None else None
    t0 = time.perf_counter()
    gen = generate(run, m, sampler=sampler, steps=steps, generator=generator, labels=labels,
                   guidance_scale=guidance_scale)["points"]
    seconds = time.perf_counter() - t0
    result = evaluate_sets(torch.from_numpy(gen), ref, metrics, emd_points)
    result["n_reference"] = float(m)
    result["sample_seconds_per_shape"] = seconds / m
    if oracle:
        train_pick = np.random.default_rng(1).permutation(len(p.train))[:m]
        orc = evaluate_sets(torch.from_numpy(p.train_points[train_pick]), ref, metrics, emd_points)
        result.update({f"oracle_{k}": v for k, v in orc.items() if k != "emd_points"})
    return result


def make_domain() -> Domain:
    """The points Domain."""
    from .cli import add_commands

    return Domain(
        name="points",
        summary="point clouds from meshes (procedural shapes, pybullet random_urdfs, your folder): PLY out",
        presets=presets(),
        shipped_run=SHIPPED,
        build_dataset=build_dataset,
        build_network=build_network,
        fit_data=fit_data,
        generate=generate,
        save_samples=save_samples,
        evaluate=evaluate,
        primary_metric="1nna_cd",
        lower_is_better=True,
        collate=collate_labelled,
        drop_cond=drop_label_cond,
        null_cond=null_label_cond,
        cli=add_commands,
        extras={"metrics": evaluate_sets, "prepare": prepare},
    )


@hookimpl
def polydiff_register_domains(register) -> None:
    register(make_domain())
