"""The point-cloud domain as a polydiff plugin: meshes -> surface point sets -> set diffusion -> PLY files.

Data: ``source`` is ``shapes`` (the labelled procedural set of ``shapes.py``), ``random_urdfs`` (pybullet's 1,000
objects) or a folder of meshes. Clouds are normalised (``global`` as in PointFlow, or per ``shape``), and the
normalisation is written next to every output. Samples, metrics and the held-out reference live in that normalised
frame; PLY files are written in the data frame when the normalisation can be inverted (``global``).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.domains.common.cache import by_config
from polydiff.domains.common.datasets import LabelledTensors, SubsetRows, collate_labelled
from polydiff.domains.common.embeddings import NULL_LABEL, drop_label_cond, null_label_cond
from polydiff.plugins import hookimpl
from polydiff.plugins.config import fitted
from polydiff.plugins.domain import Classes, Count, DataSource, Domain, EvaluateRequest, SampleRequest, Samples
from polydiff.plugins.errors import OptionError
from polydiff.plugins.options import option

from .anchored import anchored, default_context
from .completion import complete
from .data import MeshLoad, Normalization, PointSet, load_folder, load_set, sample_clouds, write_json
from .files import preview_grid, write_clouds
from .metrics import evaluate_sets
from .network import PointSetTransformer

Tensor = torch.Tensor


@dataclass
class Data:
    """The ``data`` section: which meshes, how many surface points per cloud, the split and the normalisation."""

    source: str = "shapes"
    """``shapes`` (labelled procedural set), ``random_urdfs`` (pybullet's objects) or a folder of meshes."""
    n_points: int = 2048
    n_per_class: int = 100
    normalization: str = "global"
    """``global`` (one mean and std over all train points, PointFlow) or ``shape`` (each cloud in the unit sphere)."""
    held_out: float = 0.2
    conditional: bool = True
    seed: int = 0
    limit: int | None = None
    train_points: int | None = None
    """Train on a fresh random subset of this many points of each cloud per access (None: all points)."""


@dataclass
class Network:
    """The ``network`` section: the set transformer's sizes (``network.PointSetTransformer``)."""

    dim: int = 128
    depth: int = 4
    latents: int = 32
    heads: int = 4
    mlp_ratio: int = 2
    fourier: int = 32
    fourier_scale: float = 1.0


@dataclass
class SampleExtras:
    """Points' own keys of the ``sample`` section."""

    anchored: bool = True
    """Denoise clouds larger than ``data.train_points`` in anchored sets of the training size."""
    anchor_context: int | None = None
    """Anchor points each chunk reads (None: three quarters of the set)."""


DEFAULT_DATA = asdict(Data())


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
    return asdict(Data(**cfg))


@by_config()
def _prepare(c: dict[str, Any]) -> Prepared:
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
    return _prepare(_data_cfg(data_cfg))


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
    f = fitted(run_config, fit_data)
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

def generate(run, request: SampleRequest) -> Samples:
    """Draw clouds of ``--points`` (default: the run's) in the normalised frame for ``request.labels`` (else
    unconditional). ``--complete``/``--upsample`` keep a given cloud's points fixed and generate the rest. A run trained
    on ``train_points``-point subsets denoises larger clouds in anchored sets of that size (``anchored.py``) when the
    run's ``sample.anchored`` is true; ``sample.anchor_context`` sets how many anchor points each chunk reads."""
    p, opts, n = sampling_spec(run.config), request.options, request.n
    n_points = int(run.config["data"]["n_points"]) if opts is None or opts.points is None else int(opts.points)
    partial = given_cloud(opts, n_points) if opts is not None else None
    labels = request.labels if request.labels is not None else torch.full((n,), NULL_LABEL, dtype=torch.long)
    if bool((labels >= 0).any()) and not p.conditional:
        raise OptionError("--class", "this run was trained on an unlabelled set: sample without --class")
    labels = labels.to(run.device)
    set_size = run.config["data"]["train_points"]
    s = run.config["sample"]
    sets = int(set_size) if s["anchored"] and set_size and n_points > int(set_size) else None
    context = s["anchor_context"]
    sigmas = request.sigmas if request.sigmas is not None else run.sigmas(request.settings.steps)
    method = run_sampler(request)
    out = []
    for start in range(0, n, 64):
        lab = labels[start:start + 64]
        b = len(lab)
        cond = {"label": lab} if p.conditional else None
        base = run.denoiser if sets is None else anchored(run.denoiser, sets, context, generator=request.generator)
        den = run.guided(cond, request.settings, base) if p.conditional and bool((lab >= 0).any()) else base
        if partial is not None:
            known = torch.as_tensor(p.normalization.apply(np.asarray(partial, dtype=np.float32)[None])[0]
                                    if p.normalization.mode == "global" else partial, dtype=torch.float32)
            pts = complete(den, known.to(run.device).expand(b, -1, -1), n_points, sigmas, method, cond=cond,
                           generator=request.generator)
        else:
            pts = run.draw(torch.empty(b, n_points, 3), request, cond=cond, denoiser=den, sigmas=sigmas)
        out.append(pts.float().cpu())
    classes = list(p.classes)
    names = [classes[int(lab)] if classes and lab >= 0 else "any" for lab in labels.tolist()]
    return Samples({"points": torch.cat(out).numpy(), "labels": labels.cpu().numpy(), "classes": classes},
                   {"normalization": p.normalization.to_dict(), "n_points": n_points, "labels": names,
                    "anchored_set_size": sets,
                    "anchor_context": (default_context(sets) if context is None else context) if sets else None})


def run_sampler(request: SampleRequest):
    """The request's sampler function (a plugin's or a built-in)."""
    from polydiff.plugins.manager import get_manager

    return get_manager().sampler(request.settings.sampler)


def given_cloud(opts: Any, n_points: int) -> np.ndarray | None:
    """The fixed points of ``--complete`` or ``--upsample`` (None when neither is given), checked against n_points."""
    from .files import read_cloud

    if opts.complete is not None and opts.upsample is not None:
        raise OptionError("--upsample", "give one of --complete and --upsample")
    given, flag = (opts.complete, "--complete") if opts.complete is not None else (opts.upsample, "--upsample")
    if given is None:
        return None
    try:
        known = read_cloud(given, n_points=opts.partial_points)
    except ValueError as exc:
        raise OptionError(flag, str(exc).replace("give n_points", "give --partial-points")) from None
    if len(known) >= n_points:
        raise OptionError("--points", f"{given} has {len(known)} points; ask for more with --points (now {n_points})")
    return known


def save_samples(samples: Samples, out: Path) -> list[Path]:
    """One PLY per cloud (data frame when the normalisation inverts), a PNG grid and ``clouds.json`` (normalisation,
    frame, classes, settings)."""
    norm = Normalization.from_dict(samples.meta["normalization"])
    frame = "data" if norm.mode == "global" else "normalised (per-shape: centred, unit bounding sphere)"
    pts = norm.invert(samples["points"])
    files = write_clouds(out, pts)
    titles = [name if name != "any" else f"#{i}" for i, name in enumerate(samples.meta["labels"])]
    files.append(preview_grid(samples["points"][:16], out / "preview.png", titles[:16]))
    settings = samples.settings.as_dict() if samples.settings else None
    meta = {"n_clouds": int(len(pts)), "ply_frame": frame, **samples.meta, "settings": settings}
    write_json(out / "clouds.json", json.loads(json.dumps(meta, default=str)))
    return files + [out / "clouds.json"]


# ---- evaluation -----------------------------------------------------------------------------------------------

def reference_clouds(run, folder: str | Path, seed: int = 0) -> tuple[np.ndarray, MeshLoad]:
    """Surface samples of every mesh under ``folder`` ([M, n_points, 3], in the run's normalised frame) and the load
    report (broken or faceless files are skipped, with the reason)."""
    loaded = load_folder(folder)
    clouds = sample_clouds(loaded.meshes, int(run.config["data"]["n_points"]), seed)
    return sampling_spec(run.config).normalization.apply(clouds), loaded


def _metric_names(text: str) -> str:
    names = [m.strip() for m in str(text).split(",") if m.strip()]
    bad = [m for m in names if m not in ("cd", "emd")]
    if bad or not names:
        raise ValueError(f"unknown metric(s) {', '.join(bad) or '(none)'}; use cd and/or emd")
    return ",".join(names)


@dataclass
class SampleOptions:
    """What points' ``sample`` takes beyond the shared options."""

    points: int | None = option(None, "Points per cloud (default: the run's, 2048 for the shipped models).", min=1)
    complete: Path | None = option(None, "Shape completion: this partial cloud/mesh file's points stay fixed, the rest "
                                   "is generated.", flags=("--complete", "--partial"), exists=True)
    upsample: Path | None = option(None, "Upsampling: this sparse cloud's points stay fixed and --points are filled "
                                   "in.", exists=True)
    partial_points: int | None = option(None, "Points taken from --complete/--upsample (needed for a mesh; default: "
                                        "all points of a cloud).", min=1)


@dataclass
class EvaluateOptions:
    """What points' ``evaluate`` takes beyond the shared options."""

    emd_points: int = option(256, "Points per cloud for the exact EMD (CPU cost ~ n^3).", min=2)
    metrics: str = option("cd,emd", "Comma-separated distances: cd, emd.", parse=_metric_names)
    reference: Path | None = option(None, "Folder of meshes to compare with (default: the run's held-out set).",
                                    exists=True)
    oracle: bool = option(False, "Also score training clouds against the same references (the train-vs-held-out "
                          "figures a perfect model would get).", flags=("--oracle",))


def evaluate(run, request: EvaluateRequest) -> dict[str, float]:
    """MMD, COV and 1-NNA (CD and EMD, the latter exact on --emd-points subsamples) of generated clouds against at
    most n references: the held-out set (generated clouds copy its labels when the model is conditional) or the
    meshes of --reference (unconditional samples); --oracle adds the same metrics for training clouds."""
    opts = request.options
    p = prepare(run.config["data"])
    reference = None
    if opts.reference is not None:
        reference, loaded = reference_clouds(run, opts.reference, request.settings.seed or 0)
        print(f"reference {opts.reference}: {loaded.report()}", file=sys.stderr)
    pool, pool_labels = (p.test_points, p.test.labels) if reference is None else (reference, None)
    m = len(pool) if request.n is None else min(request.n, len(pool))
    pick = np.random.default_rng(0).permutation(len(pool))[:m]
    ref = torch.from_numpy(np.ascontiguousarray(pool[pick], dtype=np.float32))
    labels = torch.from_numpy(pool_labels[pick]) if p.conditional and pool_labels is not None else None
    metrics = tuple(opts.metrics.split(","))
    t0 = time.perf_counter()
    gen = generate(run, request.sample(m, labels, SampleOptions()))["points"]
    seconds = time.perf_counter() - t0
    result = evaluate_sets(torch.from_numpy(gen), ref, metrics, opts.emd_points)
    result["n_reference"] = float(m)
    result["sample_seconds_per_shape"] = seconds / m
    if opts.oracle:
        train_pick = np.random.default_rng(1).permutation(len(p.train))[:m]
        orc = evaluate_sets(torch.from_numpy(p.train_points[train_pick]), ref, metrics, opts.emd_points)
        result.update({f"oracle_{k}": v for k, v in orc.items() if k != "emd_points"})
    return result


def data_source(value: str) -> dict[str, Any]:
    """``--data shapes``, ``--data random_urdfs`` or a folder of meshes."""
    if value not in ("shapes", "random_urdfs") and not Path(value).is_dir():
        raise ValueError(f"{value} is neither shapes, random_urdfs nor a folder of meshes")
    return {"data": {"source": value}}


def class_names(config: dict[str, Any]) -> list[str]:
    """The run's class names; [] for an unconditional run."""
    spec = sampling_spec(config)
    return list(spec.classes) if spec.conditional else []


def make_domain() -> Domain:
    """The points Domain."""
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
        sections={"data": Data, "network": Network, "sample": SampleExtras},
        options={"sample": SampleOptions, "evaluate": EvaluateOptions},
        counts={"sample": Count(16, "Number of clouds."),
                "evaluate": Count(None, "Held-out clouds to compare (default all).")},
        classes=Classes(class_names, help="Class name or index (labelled sets only), or 'all'."),
        data_source=DataSource(data_source, "shapes, random_urdfs or a folder of meshes (OBJ, PLY, STL, OFF, GLB)."),
        collate=collate_labelled,
        drop_cond=drop_label_cond,
        null_cond=null_label_cond,
    )


@hookimpl
def polydiff_register_domains(register) -> None:
    register(make_domain())
