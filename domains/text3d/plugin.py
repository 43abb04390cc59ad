"""The text-to-3D domain as a polydiff plugin.

``train-prior`` (or the generic ``train``) fits the text-conditioned 2D prior on multi-view renders of the procedural
shapes; ``generate PROMPT`` distils a 3D object from it (mesh GLB/OBJ, turntable GIF, loss curve) and
``sample-prior PROMPT`` writes prior images (``sample --prompt`` / ``sample --images`` are the older spellings);
``evaluate`` reports R-precision of generated objects next to its ceiling (ground truth) and floor (untrained field).

This module only declares (sections in ``sections.py``, options, presets and verbs here); the functions live in
``sampling.py`` and ``evaluation.py`` and are named by lazy references, so ``polydiff --help`` imports no torch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polydiff.plugins import hookimpl
from polydiff.plugins.domain import Count, Domain, Verb
from polydiff.plugins.lazy import lazy
from polydiff.plugins.options import option

from .sections import DistillConfig, Evaluation, Network, RenderSetConfig

SHIPPED = Path(__file__).parent / "checkpoints" / "prior"
METHODS = ("sds", "sjc")
FIELDS = ("voxel", "mlp")


def _prompt(text: str) -> str:
    if not str(text).strip():
        raise ValueError("empty prompt: say what to make, e.g. 'a red mug'")
    return str(text).strip()


@dataclass
class SampleOptions:
    """What text3d's ``sample`` (and its verbs ``generate`` and ``sample-prior``) take."""

    prompt: str = option("a red mug", "What to make, e.g. 'a red mug'.", parse=_prompt)
    images: bool = option(False, "Sample 2D prior images of the prompt instead of distilling objects.",
                          flags=("--images",))
    method: str = option("sds", "Distillation loss.", choices=METHODS)
    preset: str | None = option(None, "Distillation settings of this domain preset (quick or full; default: the "
                                "run's own).", choices=("quick", "full"))
    iters: int | None = option(None, "Distillation steps (default from the distill settings).", min=1)
    field: str | None = option(None, "Field (default from the distill settings).", choices=FIELDS)
    mesh_cleanup: bool = option(True, "Clean the exported mesh (blurred density, largest parts, small holes filled, "
                                "outward normals, smoothing); off: marching cubes' raw mesh.")
    mesh_blur: float = option(1.0, "Gaussian blur of the density before marching cubes, in grid cells (0: none).",
                              min=0.0)
    mesh_components: int = option(1, "Mesh parts to keep, largest first: closed parts by enclosed volume, then open "
                                  "ones by area (0: all).", min=0)
    mesh_holes: int = option(100, "Fill mesh holes bounded by at most this many edges (0: none).", min=0)
    mesh_smooth: int = option(10, "Taubin smoothing iterations of the mesh (0: none).", min=0)
    preview_size: int = option(128, "Pixel size of the turntable GIF's frames and the preview.", min=16)


@dataclass
class EvaluateOptions:
    """What text3d's ``evaluate`` takes beyond the shared options."""

    prompts: str | None = option(None, "';'-separated prompts (default: the fixed list).")
    iters: int | None = option(None, "Distillation steps (default from the distill settings).", min=1)
    method: str = option("sds", "Distillation loss.", choices=METHODS)
    prior: bool = option(False, "Score the 2D prior's images (with --sampler, --steps) instead of distilled objects.",
                         flags=("--prior",))
    views: Path | None = option(None, "New folder to write each prompt's judged views into (PNG strips at "
                                "--views-size px, objects beside their ground truth).")
    views_size: int = option(128, "Pixel size of the views written to --views.", min=16)


def _presets() -> dict[str, dict[str, Any]]:
    quick = {
        "data": {"n_per_class": 48, "views_per_shape": 8, "size": 64, "voxel_resolution": 64, "n_samples": 64, "seed": 0,
                 "attributes": ["small", "tall", "wide"], "holdout": ["green chair", "purple mug", "orange table"],
                 "ambient": [0.2, 0.5]},
        "network": {"base": 32, "mults": [1, 2, 2], "num_res": 1, "attn_levels": [1, 2], "dropout": 0.0,
                    "tokens": True, "patch": 2},
        "diffusion": {"parameterization": "edm", "sigma_data": 0.5, "schedule": "edm", "weighting": "edm",
                      "cond_dropout": 0.1, "schedule_args": {"P_mean": -0.5, "P_std": 1.2}},
        "train": {"steps": 3000, "batch_size": 32, "lr": 1e-3, "ema_decay": 0.995, "warmup": 100, "log_every": 50,
                  "ckpt_every": 500},
        "sample": {"sampler": "heun", "steps": 18, "grid": "karras", "sigma_min": 0.002, "sigma_max": 80.0,
                   "guidance_scale": 3.0},
        "distill": {**dataclasses.asdict(DistillConfig()), "size": 64},
        "evaluate": {"n_views": 8, "classifier_steps": 600, "mesh_resolution": 64, "mesh_threshold": 5.0},
    }
    full = {
        **quick,
        "data": {**quick["data"], "n_per_class": 120, "views_per_shape": 12, "n_samples": 96},
        "network": {"base": 64, "mults": [1, 2, 2, 2], "num_res": 2, "attn_levels": [2, 3], "dropout": 0.1,
                    "tokens": True, "patch": 1},
        "train": {**quick["train"], "steps": 40000, "batch_size": 64, "lr": 2e-4, "ema_decay": 0.9995,
                  "warmup": 1000, "ckpt_every": 2000},
        "distill": {**dataclasses.asdict(DistillConfig()), "steps": 2500, "size": 64, "n_samples": 96,
                    "resolution": 64, "batch": 4, "lr": 0.03},
        "evaluate": {**quick["evaluate"], "classifier_steps": 2000, "mesh_resolution": 96},
    }
    return {"quick": quick, "full": full}


def make_domain() -> Domain:
    """The text3d Domain."""
    return Domain(
        name="text3d",
        summary="text-to-3D: a text-conditioned render prior, score distillation into a radiance field, GLB/GIF export",
        presets=_presets(),
        shipped_run=SHIPPED,
        build_dataset=lazy("polydiff.domains.text3d.sampling:build_dataset"),
        build_network=lazy("polydiff.domains.text3d.sampling:build_network"),
        generate=lazy("polydiff.domains.text3d.sampling:generate"),
        save_samples=lazy("polydiff.domains.text3d.sampling:save_samples"),
        evaluate=lazy("polydiff.domains.text3d.evaluation:evaluate"),
        primary_metric="rprecision_shape",
        lower_is_better=False,
        sections={"data": RenderSetConfig, "network": Network, "distill": DistillConfig, "evaluate": Evaluation},
        options={"sample": SampleOptions, "evaluate": EvaluateOptions},
        counts={"sample": Count(1, "Objects to distil (or prior images with --images)."),
                "evaluate": Count(None, "Prompts: the first n of the list (default: all).")},
        verbs={"train-prior": Verb("train", "Train the text-conditioned 2D prior on renders of the shapes."),
               "generate": Verb("sample", "Text to 3D: distil an object for PROMPT (GLB + OBJ mesh, turntable GIF, "
                                "loss curve, field).", fixed={"images": False}, argument="prompt"),
               "sample-prior": Verb("sample", "Images of PROMPT from the 2D prior (random views): one PNG each and a "
                                    "strip.", fixed={"images": True}, defaults={"n": 4}, argument="prompt")},
        collate=lazy("polydiff.domains.text3d.prior:collate_renders"),
        drop_cond=lazy("polydiff.domains.text3d.prior:drop_embeddings"),
        null_cond=lazy("polydiff.domains.text3d.prior:null_condition"),
        demo={"n": 1, "iters": 100},
        sweep={"prior": True},
    )


@hookimpl
def polydiff_register_domains(register) -> None:
    register(make_domain())
