"""The point-cloud domain as a polydiff plugin: meshes -> surface point sets -> set diffusion -> PLY files.

Data: ``source`` is ``shapes`` (the labelled procedural set of ``shapes.py``), ``random_urdfs`` (pybullet's 1,000
objects) or a folder of meshes. Clouds are normalised (``global`` as in PointFlow, or per ``shape``), and the
normalisation is written next to every output. Samples, metrics and the held-out reference live in that normalised
frame; PLY files are written in the data frame when the normalisation can be inverted (``global``).

This module only declares (sections in ``sections.py``, options and presets here); the functions live in
``prepared.py``, ``sampling.py`` and ``evaluation.py`` and are named by lazy references, so ``polydiff --help``
imports no torch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from polydiff.plugins import hookimpl
from polydiff.plugins.domain import Classes, Control, Count, DataSource, Domain
from polydiff.plugins.lazy import lazy
from polydiff.plugins.options import option

from .sections import Data, Network, SampleExtras

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
                   "guidance_scale": 1.0, "anchored": True, "precision": "bf16"},
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


def make_domain() -> Domain:
    """The points Domain."""
    return Domain(
        name="points",
        summary="point clouds from meshes (procedural shapes, pybullet random_urdfs, your folder): PLY out",
        presets=presets(),
        shipped_run=SHIPPED,
        build_dataset=lazy("polydiff.domains.points.prepared:build_dataset"),
        build_network=lazy("polydiff.domains.points.prepared:build_network"),
        fit_data=lazy("polydiff.domains.points.prepared:fit_data"),
        generate=lazy("polydiff.domains.points.sampling:generate"),
        save_samples=lazy("polydiff.domains.points.sampling:save_samples"),
        evaluate=lazy("polydiff.domains.points.evaluation:evaluate"),
        primary_metric="1nna_cd",
        lower_is_better=True,
        sections={"data": Data, "network": Network, "sample": SampleExtras},
        options={"sample": SampleOptions, "evaluate": EvaluateOptions},
        counts={"sample": Count(16, "Number of clouds."),
                "evaluate": Count(None, "Held-out clouds to compare (default all).")},
        read_instances=lazy("polydiff.domains.points.sampling:read_instances"),
        train_view=lazy("polydiff.domains.points.prepared:train_view"),
        label_cond=lambda labels: {"label": labels},
        classes=Classes(lazy("polydiff.domains.points.prepared:class_names"), help="Class name or index (labelled sets only), or 'all'."),
        data_source=DataSource(lazy("polydiff.domains.points.prepared:data_source"), "shapes, random_urdfs or a folder of meshes (OBJ, PLY, STL, OFF, GLB)."),
        collate=lazy("polydiff.domains.common.datasets:collate_labelled"),
        drop_cond=lazy("polydiff.domains.common.embeddings:drop_label_cond"),
        null_cond=lazy("polydiff.domains.common.embeddings:null_label_cond"),
        controls={"partial": Control(
            lazy("polydiff.domains.points.partial:compute"),
            "A partial scan: the points a depth camera sees from one random viewpoint (256 of them, in the run's "
            "frame): the sample completes the shape; --control: a partial cloud (PLY/OBJ/XYZ), a partial mesh, or "
            "a .npy of clouds [m, K, 3].",
            read=lazy("polydiff.domains.points.partial:read"))},
    )


@hookimpl
def polydiff_register_domains(register) -> None:
    register(make_domain())
