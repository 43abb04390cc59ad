"""The ECG domain's own metric: a Frechet distance on hand-crafted rhythm features, and class accuracy.

Features are what a cardiologist reads off a rhythm strip: heart rate and RR-interval irregularity from detected R
peaks, R amplitude, P-wave prominence before each R, and the spectrum's relative band powers. They are standardised
with the training split's statistics; the Frechet distance compares their Gaussian fits between two sets (as FID does
with Inception features) and a softmax classifier, fitted on the training split, names each trace's class.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .signals import DURATION, FS

FEATURES = ("heart_rate", "rr_cv", "r_amplitude", "p_ratio",
            "band_0_1hz", "band_1_4hz", "band_4_10hz", "band_10_20hz", "band_20_32hz")
BANDS = ((0.0, 1.0), (1.0, 4.0), (4.0, 10.0), (10.0, 20.0), (20.0, FS / 2 + 1))
REFRACTORY = int(0.25 * FS)
P_WINDOW = (int(0.22 * FS), int(0.08 * FS))


def detrend(signals: np.ndarray, window: float = 0.6) -> np.ndarray:
    """Signals minus a moving median over ``window`` seconds (baseline wander removed, peaks kept)."""
    w = int(window * FS) | 1
    padded = np.pad(signals, ((0, 0), (w // 2, w // 2)), mode="edge")
    return signals - np.median(sliding_window_view(padded, w, axis=1), axis=-1)


def r_peaks(x: np.ndarray) -> np.ndarray:
    """Sample indices of R peaks in one detrended trace: local maxima above half its maximum, the tallest kept
    within each refractory period."""
    top = x.max()
    if top <= 0:
        return np.zeros(0, dtype=int)
    inner = x[1:-1]
    candidates = np.flatnonzero((inner >= x[:-2]) & (inner > x[2:]) & (inner > 0.5 * top)) + 1
    kept: list[int] = []
    for i in candidates[np.argsort(-x[candidates])]:
        if all(abs(i - j) >= REFRACTORY for j in kept):
            kept.append(int(i))
    return np.sort(np.asarray(kept, dtype=int))


def rhythm_features(x: np.ndarray) -> list[float]:
    """Heart rate (bpm), RR coefficient of variation, median R amplitude and P-to-R ratio of one detrended trace."""
    peaks = r_peaks(x)
    if len(peaks) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    rr = np.diff(peaks) / FS
    rate = 60.0 / rr.mean() if len(rr) else 60.0 / DURATION
    cv = rr.std() / rr.mean() if len(rr) > 1 else 0.0
    r_amp = float(np.median(x[peaks]))
    before, after = P_WINDOW
    p = [x[i - before:i - after].max() for i in peaks if i - before >= 0]
    p_ratio = float(np.median(p)) / r_amp if p and r_amp > 0 else 0.0
    return [float(rate), float(cv), r_amp, p_ratio]


def band_powers(signals: np.ndarray) -> np.ndarray:
    """Log relative spectral power [N, len(BANDS)] of each trace (mean removed, Hann window)."""
    x = (signals - signals.mean(1, keepdims=True)) * np.hanning(signals.shape[1])
    power = np.abs(np.fft.rfft(x, axis=1)) ** 2
    freqs = np.fft.rfftfreq(signals.shape[1], 1.0 / FS)
    bands = np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(1) for lo, hi in BANDS], 1)
    return np.log(bands / bands.sum(1, keepdims=True).clip(1e-12) + 1e-6)


def features(signals: np.ndarray) -> np.ndarray:
    """The feature matrix [N, len(FEATURES)] of traces [N, LENGTH] (in the data's own units)."""
    signals = np.asarray(signals, dtype=np.float64)
    flat = detrend(signals)
    rhythm = np.array([rhythm_features(x) for x in flat]).reshape(len(signals), 4)
    return np.concatenate([rhythm, band_powers(signals)], 1)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussian fits of two feature sets [N, F]:
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(w.clip(0))) @ v.T
    cross = np.linalg.eigvalsh(root_a @ s_b @ root_a).clip(0)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.sqrt(cross).sum())


@dataclass
class FeatureSpace:
    """Standardisation and a softmax (multinomial logistic) classifier fitted on the training split's features."""

    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    """[F + 1, classes] on standardised features plus a bias; no columns for unlabelled data."""

    @classmethod
    def fit(cls, signals: np.ndarray, labels: np.ndarray, iterations: int = 500, lr: float = 0.5,
            decay: float = 1e-3) -> "FeatureSpace":
        """Fit on training traces and labels (-1: unlabelled) by full-batch gradient descent."""
        f = features(signals)
        mean, std = f.mean(0), f.std(0) + 1e-6
        known = labels >= 0
        k = int(labels.max()) + 1 if known.any() else 0
        space = cls(mean, std, np.zeros((f.shape[1] + 1, k)))
        if k:
            z, target = with_bias((f[known] - mean) / std), np.eye(k)[labels[known]]
            for _ in range(iterations):
                grad = z.T @ (softmax(z @ space.weights) - target) / len(z)
                space.weights -= lr * (grad + decay * space.weights)
        return space

    def embed(self, signals: np.ndarray) -> np.ndarray:
        """Standardised features [N, F] of traces."""
        return (features(signals) - self.mean) / self.std

    def classify(self, z: np.ndarray) -> np.ndarray:
        """The most probable class of each standardised feature row."""
        return (with_bias(z) @ self.weights).argmax(1)

    def accuracy(self, z: np.ndarray, labels: np.ndarray) -> float:
        """Fraction of rows classified as their label."""
        return float((self.classify(z) == labels).mean())


def with_bias(z: np.ndarray) -> np.ndarray:
    """Feature rows with a constant 1 appended (the classifier's bias input)."""
    return np.concatenate([z, np.ones((len(z), 1))], 1)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax."""
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)
