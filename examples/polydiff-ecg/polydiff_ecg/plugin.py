"""The ECG domain's declaration: what polydiff needs to train, sample, evaluate and show ECG-like traces.

polydiff builds ``polydiff ecg train | sample | evaluate | export | info`` from this ``Domain``: the config sections
and presets, the options of each command (``--inpaint``/``--mask`` for sample, ``--n-train`` for train), the class
labels (``--class`` and classifier-free guidance), what ``-n`` means, and what ``--data`` accepts. There is no CLI
code here; the one hook at the bottom registers the domain through the entry-point group ``polydiff``. The functions
live in ``model.py`` and ``sampling.py`` and are named by ``lazy("module:function")`` references: this module imports
no torch, so ``polydiff --help`` stays fast with the plugin installed.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polydiff.plugins import hookimpl
from polydiff.plugins.domain import Classes, Count, DataSource, Domain
from polydiff.plugins.lazy import lazy
from polydiff.plugins.options import option

from .shape import DURATION, LENGTH, SYNTHETIC


@dataclass
class Data:
    """The ``data`` section: where traces come from, and how many synthetic traces the splits hold."""

    source: str = SYNTHETIC
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
        "data": {"source": SYNTHETIC, "n_train": 4000, "n_test": 1000},
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


def make_domain() -> Domain:
    """The ECG Domain: one declaration from which polydiff builds every command."""
    return Domain(
        name="ecg",
        summary="ECG-like rhythm strips (4 s at 64 Hz): normal, tachycardia, bradycardia, atrial fibrillation",
        presets=presets(),
        build_dataset=lazy("polydiff_ecg.data:dataset"),
        build_network=lazy("polydiff_ecg.model:build_network"),
        generate=lazy("polydiff_ecg.sampling:generate"),
        save_samples=lazy("polydiff_ecg.sampling:save_samples"),
        evaluate=lazy("polydiff_ecg.sampling:evaluate"),
        primary_metric="feature_fd",
        sections={"data": Data, "network": Network},
        options={"train": TrainOptions, "sample": SampleOptions},
        counts={"sample": Count(16, "Number of traces."),
                "evaluate": Count(None, "Traces generated and compared with held-out ones (default 500).")},
        classes=Classes(lazy("polydiff_ecg.model:class_names")),
        data_source=DataSource(lazy("polydiff_ecg.model:to_config"), "'synthetic' or a .npy [N, 256] / .npz (signals, labels, names) file."),
        collate=lazy("polydiff_ecg.model:collate"),
        drop_cond=lazy("polydiff.domains.common.embeddings:drop_label_tensor"),
        null_cond=lazy("polydiff.domains.common.embeddings:null_labels"),
        fit_data=lazy("polydiff_ecg.data:fit"),
        demo={"n": 8, "label": "all"},
    )


@hookimpl
def polydiff_register_domains(register: Callable[[Domain], None]) -> None:
    """Register the ECG domain (found through the entry point ``ecg = "polydiff_ecg.plugin"``)."""
    register(make_domain())
