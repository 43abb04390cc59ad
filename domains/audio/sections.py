"""The audio domain's config sections: what a run's ``data``, ``network`` and ``sample`` tables may hold."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Data:
    """The ``data`` section: the clips (built-in espeak digits or a folder), their split and the log-mel features."""

    source: str = "digits"
    """``digits`` (spoken digits synthesised with espeak-ng) or ``folder``."""
    folder: str | None = None
    """With ``source = "folder"``: a folder of .wav/.flac/.ogg clips whose sub-folders name the classes."""
    n_voices: int = 10
    takes: int = 1
    seed: int = 0
    valid_fraction: float = 0.1
    test_fraction: float = 0.2
    conditional: bool = True
    n_mels: int = 64
    normalizer: dict | None = None
    """A fixed log-mel normaliser (``MelNormalizer.to_dict()``); None fits one on the training clips."""

    def __post_init__(self) -> None:
        if self.source not in ("digits", "folder"):
            raise ValueError(f"data.source must be 'digits' or 'folder', not {self.source!r}")
        if self.source == "folder" and not self.folder:
            raise ValueError("data.source 'folder' needs data.folder (a folder of .wav/.flac/.ogg files)")


@dataclass
class Network:
    """The ``network`` section: the mel U-Net (``network.py``'s ``NetConfig`` without what the data decide)."""

    layout: str = "2d"
    base: int = 32
    mults: tuple[int, ...] = (1, 2, 2)
    num_res: int = 1
    attn_levels: tuple[int, ...] = (2,)
    dropout: float = 0.0
    pos_channels: int = 0


@dataclass
class SampleExtras:
    """Audio's own keys of the ``sample`` section."""

    gl_iters: int = 32
    """Griffin-Lim iterations from mel to waveform."""
