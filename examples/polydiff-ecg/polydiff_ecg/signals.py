"""Procedural ECG-like traces with rhythm classes, after the wave morphology of McSharry et al.'s ECGSYN (2003).

Each beat is a sum of five Gaussian waves (P, Q, R, S, T) placed around its R peak, as ECGSYN's phase model yields
in closed form; P and T move with the RR interval (Bazett-like QT scaling). The classes differ the way rhythm
strips do: heart rate (normal, tachycardia, bradycardia) or irregular RR intervals with no P wave and fibrillatory
baseline waves (atrial fibrillation). Gain, T-wave size, baseline wander and noise are random per trace. Traces are
``LENGTH`` samples at ``FS`` Hz in millivolt-like units; a seed fixes a set, so train and test use different seeds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .shape import DURATION, FS, LENGTH


WAVES = {  # name: (offset from R at RR = 1 s in s, width in s, amplitude in mV, moves with RR)
    "P": (-0.19, 0.035, 0.15, True),
    "Q": (-0.035, 0.014, -0.12, False),
    "R": (0.0, 0.018, 1.0, False),
    "S": (0.035, 0.014, -0.30, False),
    "T": (0.28, 0.065, 0.30, True),
}


@dataclass(frozen=True)
class Rhythm:
    """A rhythm class: its range of mean heart rate, beat-to-beat RR spread, and atrial activity."""

    heart_rate: tuple[float, float]
    """Mean heart rate range in beats per minute."""
    rr_spread: float
    """Relative standard deviation of successive RR intervals."""
    p_wave: bool
    """Whether beats have a P wave (sinus rhythm) or fibrillatory waves instead (atrial fibrillation)."""


RHYTHMS = {
    "normal": Rhythm((60.0, 95.0), 0.03, True),
    "tachycardia": Rhythm((110.0, 160.0), 0.02, True),
    "bradycardia": Rhythm((38.0, 55.0), 0.03, True),
    "afib": Rhythm((80.0, 130.0), 0.22, False),
}
CLASSES = tuple(RHYTHMS)


def beat_times(rhythm: Rhythm, rng: np.random.Generator) -> np.ndarray:
    """R-peak times in seconds covering the window and one beat either side, starting at a random phase."""
    rr_mean = 60.0 / rng.uniform(*rhythm.heart_rate)
    times = [-rng.uniform(0.0, rr_mean)]
    while times[-1] < DURATION + rr_mean:
        rr = rr_mean * float(np.clip(1.0 + rhythm.rr_spread * rng.standard_normal(), 0.55, 1.6))
        times.append(times[-1] + rr)
    return np.asarray(times)


def trace(rhythm: Rhythm, rng: np.random.Generator) -> np.ndarray:
    """One trace [LENGTH] of ``rhythm``: its beats, baseline wander, atrial activity and noise."""
    t = np.arange(LENGTH) / FS
    beats = beat_times(rhythm, rng)
    rr = np.diff(beats, prepend=beats[0] - (beats[1] - beats[0]))
    gain, t_size = rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.3)
    x = np.zeros(LENGTH)
    for name, (offset, width, amplitude, moves) in WAVES.items():
        if name == "P" and not rhythm.p_wave:
            continue
        scale = np.sqrt(rr)[:, None] if moves else np.ones((len(beats), 1))
        centres = beats[:, None] + offset * scale
        size = amplitude * (t_size if name == "T" else 1.0)
        x += size * np.exp(-0.5 * ((t[None, :] - centres) / (width * scale)) ** 2).sum(0)
    if not rhythm.p_wave:
        f = rng.uniform(5.0, 8.0)
        x += rng.uniform(0.03, 0.08) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    wander = rng.uniform(0.0, 0.2) * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 2 * np.pi))
    noise = rng.uniform(0.005, 0.03) * rng.standard_normal(LENGTH)
    return gain * x + wander + noise


def synthesize(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` traces [n, LENGTH] (float32) and their class indices [n], balanced over ``CLASSES``, fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASSES))
    rhythms = [RHYTHMS[c] for c in CLASSES]
    signals = np.stack([trace(rhythms[k], rng) for k in labels]) if n else np.zeros((0, LENGTH))
    return signals.astype(np.float32), labels.astype(np.int64)
