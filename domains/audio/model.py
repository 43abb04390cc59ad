"""The audio domain's networks (mel U-Net or vocoder), class names and ``--data`` sources."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from polydiff.plugins.errors import ConfigError

from .data import data_config, mel_config, sampling_spec
from .fsdd import follows_convention, locate
from .network import MelUNet, NetConfig
from .plugin import FSDD_RATE
from .vocoder_net import DiffWave, MelGenerator, MelToLinear


VOCODER_KEYS = ("kind", "channels", "layers", "cycle", "mel_noise")


def build_network(cfg: dict[str, Any]) -> nn.Module:
    """The network of a run: the mel U-Net of a ``mels`` run (class-conditional when the data are labelled and
    conditional), or the vocoder ``network.kind`` names for a ``waves`` run."""
    d, n = data_config(cfg["data"]), cfg["network"]
    kind = n.get("kind", "unet")
    if (kind == "unet") != (d["target"] == "mels"):
        raise ConfigError(f"network.kind {kind!r} does not fit data.target {d['target']!r}: a 'mels' run uses the "
                          "'unet', a 'waves' run (a vocoder, `train-vocoder`) 'mel2linear', 'diffwave' or 'hifigan'")
    if kind != "unet":
        return build_vocoder(kind, cfg)
    return MelUNet(unet_config(cfg))


def unet_config(cfg: dict[str, Any]) -> NetConfig:
    """The mel U-Net's sizes in a ``mels`` run config: its ``network`` section, the classes and bands of its data."""
    d, n = data_config(cfg["data"]), cfg["network"]
    spec = sampling_spec(cfg)
    classes = len(spec.class_names) if spec.conditional else 0
    net = {k: tuple(v) if isinstance(v, list) else v for k, v in n.items() if k not in VOCODER_KEYS}
    return NetConfig(num_classes=classes, sigma_data=float(cfg["diffusion"].get("sigma_data", 1.0)),
                     n_mels=int(d["n_mels"]), **net)


def build_vocoder(kind: str, cfg: dict[str, Any]) -> nn.Module:
    """The ``mel2linear``, ``diffwave`` or ``hifigan`` vocoder of a config, for its data's log-mels."""
    n, mel = cfg["network"], mel_config(data_config(cfg["data"]))
    if kind == "mel2linear":
        norm = sampling_spec(cfg).normalizer
        return MelToLinear(mel, norm.mean, norm.std, int(n["channels"]), int(n["layers"]),
                           int(cfg["sample"].get("gl_iters", 32)))
    if kind == "diffwave":
        return DiffWave(mel.n_mels, mel.hop, int(n["channels"]), int(n["layers"]), int(n["cycle"]))
    return MelGenerator(mel.n_mels, mel.hop, int(n["channels"]))


def data_source(value: str) -> dict[str, Any]:
    """``--data digits`` (the espeak set), ``fsdd`` (FSDD, found by ``fsdd.locate``), a folder of recordings named
    ``{digit}_{speaker}_{take}.wav`` (split by take like FSDD) or a folder of clips (``--folder`` is the older
    spelling). A missing FSDD folder is a UsageError saying where to put it."""
    if value == "digits":
        return {"data": {"source": "digits"}}
    if value == "fsdd":
        locate(None)
        return {"data": {"source": "fsdd", "path": None, "sample_rate": FSDD_RATE}}
    if not Path(value).is_dir():
        raise ValueError(f"{value} is neither 'digits', 'fsdd' nor a folder of .wav/.flac/.ogg clips")
    if follows_convention(value):
        return {"data": {"source": "fsdd", "path": str(Path(value).resolve()), "sample_rate": FSDD_RATE}}
    return {"data": {"source": "folder", "folder": str(value)}}


def class_names(config: dict[str, Any]) -> list[str]:
    """The run's digit (or folder class) names; [] for an unconditional run."""
    spec = sampling_spec(config)
    return list(spec.class_names) if spec.conditional else []
