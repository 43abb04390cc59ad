"""From log-mels to waveforms: Griffin-Lim or a learned vocoder run, as ``--vocoder griffin-lim|RUN`` chooses.

A vocoder run (``polydiff audio train-vocoder``) is a run like any other: its data target is ``waves`` and its denoiser
maps noise to a waveform given the clip's normalised log-mel (``{"mel": ...}``), drawn with the run's own sampler and
steps. It applies to any run whose log-mel analysis is the same as its own (same rate, window, hop and bands). The
default is the shipped vocoder where it fits the run's features (it ships only because it beats Griffin-Lim on FSDD
test takes; see its TRAINED_WITH.txt), else Griffin-Lim.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from polydiff.plugins.domain import SampleRequest, SampleSettings
from polydiff.plugins.errors import OptionError

from .data import sampling_spec
from .features import GriffinLimInverter, MelConfig, MelNormalizer

GRIFFIN_LIM = "griffin-lim"
SHIPPED_VOCODER = Path(__file__).parent / "checkpoints" / "vocoder"


class Vocoder(Protocol):
    """Log-mels [B, n_mels, frames] -> waveforms [B, clip_samples]; ``name`` is what samples.json records."""

    name: str

    def __call__(self, log_mels: torch.Tensor) -> torch.Tensor: ...


@dataclass
class GriffinLim:
    """Least-squares inverse mel scale, then ``n_iter`` Griffin-Lim iterations (seeded: equal mels, equal waves)."""

    config: MelConfig
    n_iter: int = 32
    name: str = GRIFFIN_LIM

    def __call__(self, log_mels: torch.Tensor) -> torch.Tensor:
        return GriffinLimInverter(self.config, n_iter=self.n_iter)(log_mels)


@dataclass
class Learned:
    """A vocoder run: normalises the log-mels with its own normaliser and draws waveforms with ``settings`` (default:
    its run's sampler and steps) and ``generator`` (default: seeded with 0)."""

    run: Any
    settings: SampleSettings | None = None
    generator: torch.Generator | None = None
    name: str = ""
    normalizer: MelNormalizer = field(init=False)

    def __post_init__(self) -> None:
        self.normalizer = sampling_spec(self.run.config).normalizer
        self.name = self.name or str(self.run.path)
        self.settings = self.settings or self.run.settings()
        self.generator = self.generator or self.run.generator(0)

    @torch.no_grad()
    def __call__(self, log_mels: torch.Tensor) -> torch.Tensor:
        cfg, run = self.normalizer.config, self.run
        mel = self.normalizer.normalize(log_mels.float()).to(run.device)
        request = SampleRequest(len(mel), self.settings, self.generator)
        blank = torch.empty(len(mel), 1, cfg.clip_samples)
        waves = run.draw(blank, request, cond={"mel": mel}, denoiser=run.denoiser)
        return waves[:, 0].float().clamp(-1, 1).cpu()


def is_vocoder(config: dict[str, Any]) -> bool:
    """Whether a run config is a vocoder's (its data target is waveforms)."""
    return config.get("data", {}).get("target", "mels") == "waves"


def mel_of(config: dict[str, Any]) -> dict[str, Any]:
    """A run's log-mel analysis settings (from its fitted normaliser) as a dict, for comparing runs."""
    return asdict(sampling_spec(config).normalizer.config)


def load_vocoder(domain: Any, folder: Path, device: Any, mel: MelConfig) -> Learned:
    """The vocoder run in ``folder``, checked to be a vocoder for the log-mels of ``mel``; OptionError otherwise."""
    from polydiff.plugins.runs import load_run

    if not (Path(folder) / "config.json").is_file():
        raise OptionError("--vocoder", f"{folder} is neither 'griffin-lim' nor a vocoder run folder "
                                       "(the --out of `polydiff audio train-vocoder`)")
    run = load_run(domain, Path(folder), device)
    if not is_vocoder(run.config):
        raise OptionError("--vocoder", f"{folder} is a mel model, not a vocoder run (train one with "
                                       "`polydiff audio train-vocoder`)")
    if mel_of(run.config) != asdict(mel):
        raise OptionError("--vocoder", f"{folder} inverts log-mels at {mel_of(run.config)['sample_rate']} Hz with "
                                       f"other settings than this run's ({mel.sample_rate} Hz); use a vocoder "
                                       "trained on the same features, or griffin-lim")
    return Learned(run, name=str(folder))


def shipped_fits(mel: MelConfig) -> bool:
    """Whether the shipped vocoder exists and inverts log-mels of exactly ``mel``'s analysis."""
    path = SHIPPED_VOCODER / "config.json"
    return path.is_file() and mel_of(json.loads(path.read_text())) == asdict(mel)


def resolve_vocoder(value: str | Path | None, run: Any, gl_iters: int) -> Vocoder:
    """The vocoder of ``--vocoder``: ``griffin-lim``, a vocoder run folder, or None for the default (the shipped
    vocoder where it fits the run's log-mels, else Griffin-Lim)."""
    mel = sampling_spec(run.config).normalizer.config
    if value is None:
        if shipped_fits(mel):
            return load_vocoder(run.domain, SHIPPED_VOCODER, run.device, mel)
        return GriffinLim(mel, gl_iters)
    if str(value) == GRIFFIN_LIM:
        return GriffinLim(mel, gl_iters)
    return load_vocoder(run.domain, Path(value), run.device, mel)
