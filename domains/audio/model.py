"""The audio domain's network, class names and ``--data`` sources."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .data import data_config, sampling_spec
from .network import MelUNet, NetConfig


def build_network(cfg: dict[str, Any]) -> MelUNet:
    """The mel U-Net of the ``network`` config, class-conditional when the data are labelled and conditional."""
    d, spec = data_config(cfg["data"]), sampling_spec(cfg)
    classes = len(spec.class_names) if spec.conditional else 0
    net = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["network"].items()}
    return MelUNet(NetConfig(num_classes=classes, sigma_data=float(cfg["diffusion"].get("sigma_data", 1.0)),
                             n_mels=int(d["n_mels"]), **net))


def data_source(value: str) -> dict[str, Any]:
    """``--data digits`` (the espeak set) or a folder of clips (``--folder`` is the older spelling)."""
    if value == "digits":
        return {"data": {"source": "digits"}}
    if not Path(value).is_dir():
        raise ValueError(f"{value} is neither 'digits' nor a folder of .wav/.flac/.ogg clips")
    return {"data": {"source": "folder", "folder": str(value)}}


def class_names(config: dict[str, Any]) -> list[str]:
    """The run's digit (or folder class) names; [] for an unconditional run."""
    spec = sampling_spec(config)
    return list(spec.class_names) if spec.conditional else []
