"""The toy domain as a polydiff plugin: the reference for third-party domain authors.

It registers one ``Domain`` through ``polydiff_register_domains``: config sections, option sets and class labels are
declared, and polydiff builds ``train``, ``sample``, ``evaluate``, ``export`` and ``info`` from them (``--class``,
``--guidance-scale`` and ``--guidance`` included). Its ``sample`` adds the core's other guidance methods (classifier
guidance, DPS, inpainting, composition, SDEdit) as guidance methods of its own. This module only declares: the
functions live in ``model.py`` (data, network) and ``sampling.py`` (draw, write, score) and are named by lazy
references, so reading the declaration (``polydiff --help``) imports no torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polydiff.plugins import hookimpl
from polydiff.plugins.domain import Classes, Control, Count, DataSource, Domain
from polydiff.plugins.lazy import lazy
from polydiff.plugins.options import option

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


def pair(text: str) -> tuple[float, float]:
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
    toward: str | None = option(None, "classifier: target point 'X,Y'.", parse=lambda t: ",".join(map(str, pair(t))))
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


def make_domain() -> Domain:
    """The toy Domain: everything polydiff needs to train, sample, evaluate and show 2D point sets."""
    return Domain(
        name="toy",
        summary="2D point sets (moons, 8 Gaussians, checkerboard, swiss roll): the reference domain",
        presets=_presets(),
        build_dataset=lazy("polydiff.domains.toy.model:build_dataset"),
        build_network=lazy("polydiff.domains.toy.model:build_network"),
        generate=lazy("polydiff.domains.toy.sampling:generate"),
        save_samples=lazy("polydiff.domains.toy.sampling:save_samples"),
        evaluate=lazy("polydiff.domains.toy.sampling:evaluate"),
        primary_metric="energy_distance",
        sections={"data": Data, "network": Network},
        options={"sample": SampleOptions},
        counts={"sample": Count(2000, "Number of points."),
                "evaluate": Count(None, "Points compared with held-out ones (default 2000).")},
        classes=Classes(lazy("polydiff.domains.toy.model:class_names")),
        data_source=DataSource(lazy("polydiff.domains.toy.model:data_source"), "Data set: moons, 8gaussians, checkerboard, swissroll or a plugin's.",
                               ("--data", "--dataset")),
        guidance=GUIDANCE,
        collate=lazy("polydiff.domains.toy.model:collate"),
        drop_cond=lazy("polydiff.domains.common.embeddings:drop_label_tensor"),
        null_cond=lazy("polydiff.domains.common.embeddings:null_labels"),
        shipped_run=SHIPPED,
        read_instances=lazy("polydiff.domains.toy.model:read_instances"),
        controls={"x": Control(lazy("polydiff.domains.toy.model:x_control"),
                               "The point's x coordinate (a one-dimensional partial observation); --control: a .npy "
                               "of x values [n, 1].")},
    )


@hookimpl
def polydiff_register_domains(register) -> None:
    register(make_domain())
