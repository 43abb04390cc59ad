"""The audio domain's config sections: what a run's ``data``, ``network`` and ``sample`` tables may hold."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Data:
    """The ``data`` section: the clips (built-in espeak digits, FSDD recordings or a folder), their split and the log-mel
    features."""

    source: str = "digits"
    """``digits`` (spoken digits synthesised with espeak-ng), ``fsdd`` (real recordings named
    ``{digit}_{speaker}_{take}.wav``, split by take) or ``folder``."""
    folder: str | None = None
    """With ``source = "folder"``: a folder of .wav/.flac/.ogg clips whose sub-folders name the classes."""
    path: str | None = None
    """With ``source = "fsdd"``: the recordings' folder; None finds it from $POLYDIFF_FSDD or ../shared/data/fsdd."""
    sample_rate: int = 16000
    """The clips' rate (Hz); the log-mel window and hop scale with it so a 1 s clip always has 64 frames."""
    valid_takes: int = 5
    """With ``source = "fsdd"``: takes 5 .. 4 + valid_takes are held out of training as the validation part."""
    n_voices: int = 10
    takes: int = 1
    seed: int = 0
    valid_fraction: float = 0.1
    test_fraction: float = 0.2
    conditional: bool = True
    n_mels: int = 64
    normalizer: dict | None = None
    """A fixed log-mel normaliser (``MelNormalizer.to_dict()``); None fits one on the training clips."""
    target: str = "mels"
    """What the run learns: ``mels`` (a mel diffusion model) or ``waves`` (a vocoder: waveforms given their mels)."""
    segment_frames: int = 32
    """With ``target = "waves"``: mel frames per training segment (a vocoder trains on random aligned segments)."""

    def __post_init__(self) -> None:
        if self.source not in ("digits", "fsdd", "folder"):
            raise ValueError(f"data.source must be 'digits', 'fsdd' or 'folder', not {self.source!r}")
        if self.source == "digits" and self.sample_rate != 16000:
            raise ValueError("data.source 'digits' is made at 16000 Hz; data.sample_rate must be 16000")
        if self.sample_rate < 4000 or self.sample_rate % 250:
            raise ValueError(f"data.sample_rate must be a multiple of 250 Hz from 4000 (8000, 16000, ...), "
                             f"not {self.sample_rate}")
        if self.target not in ("mels", "waves"):
            raise ValueError(f"data.target must be 'mels' or 'waves', not {self.target!r}")
        if self.segment_frames < 1:
            raise ValueError(f"data.segment_frames must be >= 1, not {self.segment_frames}")
        if self.valid_takes < 0:
            raise ValueError(f"data.valid_takes must be >= 0, not {self.valid_takes}")
        if self.source == "folder" and not self.folder:
            raise ValueError("data.source 'folder' needs data.folder (a folder of .wav/.flac/.ogg files)")


@dataclass
class Network:
    """The ``network`` section: the mel U-Net (``network.py``'s ``NetConfig`` without what the data decide) or a
    vocoder (``vocoder_net.py``)."""

    kind: str = "unet"
    """``unet`` (the mel U-Net of a ``mels`` run), or a vocoder of a ``waves`` run: ``mel2linear`` (a learned inverse
    mel scale, Griffin-Lim for the phase), ``diffwave`` (a mel-conditioned waveform denoiser) or ``hifigan`` (a
    one-step generator trained with spectral losses)."""
    channels: int = 64
    """Vocoders: DiffWave's residual channels, the generator's channels at frame rate (halved per upsampling), or
    mel2linear's channels."""
    layers: int = 20
    """DiffWave's residual layers, or mel2linear's residual convolutions."""
    cycle: int = 10
    """DiffWave: dilations 1, 2, ..., 2^(cycle-1), repeated."""
    mel_noise: float = 0.0
    """mel2linear: in training, Gaussian noise of std uniform in [0, mel_noise] (normalised units) is added to each
    input mel, so the vocoder stays robust to a model's imperfect mels."""
    layout: str = "2d"
    base: int = 32
    mults: tuple[int, ...] = (1, 2, 2)
    num_res: int = 1
    attn_levels: tuple[int, ...] = (2,)
    dropout: float = 0.0
    pos_channels: int = 0

    def __post_init__(self) -> None:
        if self.mel_noise < 0:
            raise ValueError(f"network.mel_noise must be >= 0, not {self.mel_noise}")
        if self.kind not in ("unet", "mel2linear", "diffwave", "hifigan"):
            raise ValueError(f"network.kind must be 'unet', 'mel2linear', 'diffwave' or 'hifigan', not {self.kind!r}")


@dataclass
class SampleExtras:
    """Audio's own keys of the ``sample`` section."""

    gl_iters: int = 32
    """Griffin-Lim iterations from mel to waveform."""
