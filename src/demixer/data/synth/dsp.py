"""Small signal helpers for synthesis: pitch estimate and shift, fades, panning, coloured noise."""

from __future__ import annotations

import numpy as np

from ...audio import resample


def estimate_f0(x: np.ndarray, sample_rate: int, fmin: float = 70.0, fmax: float = 500.0) -> float | None:
    """Median fundamental frequency of the voiced frames (autocorrelation), or None if unvoiced."""
    frame, hop = int(0.04 * sample_rate), int(0.01 * sample_rate)
    lo, hi = int(sample_rate / fmax), int(sample_rate / fmin)
    f0s = []
    energy = np.sqrt(np.mean(x**2)) + 1e-9
    for s in range(0, len(x) - frame, hop):
        w = x[s : s + frame] * np.hanning(frame)
        if np.sqrt(np.mean(w**2)) < 0.3 * energy:
            continue
        ac = np.fft.irfft(np.abs(np.fft.rfft(w, 2 * frame)) ** 2)[: hi + 1]
        if ac[0] <= 0:
            continue
        lag = lo + int(np.argmax(ac[lo : hi + 1]))
        if ac[lag] / ac[0] > 0.5:
            f0s.append(sample_rate / lag)
    return float(np.median(f0s)) if len(f0s) >= 3 else None


def shift_pitch(x: np.ndarray, ratio: float) -> np.ndarray:
    """Raise pitch by ``ratio`` by resampling (duration shrinks by the same ratio, like a tape)."""
    if abs(ratio - 1) < 1e-3:
        return x
    rate = 48000
    return resample(x[None].astype(np.float32), int(round(rate * ratio)), rate)[0]


def fade(x: np.ndarray, sample_rate: int, ms: float = 10.0) -> np.ndarray:
    n = min(len(x) // 2, int(ms * sample_rate / 1000))
    if n:
        ramp = np.linspace(0, 1, n, dtype=np.float32)
        x = x.copy()
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def pan(mono: np.ndarray, position: float) -> np.ndarray:
    """Constant-power pan, ``position`` in [-1, 1]. Shape: ``[T]`` -> ``[2, T]``."""
    angle = (position + 1) * np.pi / 4
    return np.stack([mono * np.cos(angle), mono * np.sin(angle)]).astype(np.float32)


COLOURS = {"white": 0.0, "pink": -1.0, "brown": -2.0, "blue": 1.0, "violet": 2.0}


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with power spectrum ~ f^k (k from :data:`COLOURS`), unit RMS. Shape: ``[n]``."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    spec *= f ** (COLOURS[colour] / 2)
    spec[0] = 0
    x = np.fft.irfft(spec, n)
    return (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)


def to_level(x: np.ndarray, db: float) -> np.ndarray:
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12
    return (x * (10 ** (db / 20) / rms)).astype(np.float32)
