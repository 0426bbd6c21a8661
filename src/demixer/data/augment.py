"""Augmentations of a stack of sources. Each keeps the example additive: the mixture is always
re-computed as the sum of the augmented sources, never augmented on its own."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..audio.resample import resample


@dataclass
class Augment:
    """Random transforms applied per source.

    Attributes:
        gain_db: per-source gain range in dB (``(0, 0)``: off).
        channel_swap: probability of swapping left/right of a source (stereo only).
        polarity: probability of flipping a source's sign.
        remix: probability that the sources of an example come from different tracks.
    """

    gain_db: tuple[float, float] = (-3.0, 3.0)
    channel_swap: float = 0.5
    polarity: float = 0.5
    remix: float = 0.5

    def __post_init__(self) -> None:
        lo, hi = self.gain_db
        if lo > hi:
            raise ValueError(f"gain_db range is reversed: {self.gain_db}")
        for name in ("channel_swap", "polarity", "remix"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")

    def __call__(self, sources: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Shape: ``[S, C, T]`` -> ``[S, C, T]``."""
        out = sources.copy()
        for s in range(out.shape[0]):
            gain = 10 ** (rng.uniform(*self.gain_db) / 20)
            if rng.random() < self.polarity:
                gain = -gain
            out[s] *= gain
            if out.shape[1] == 2 and rng.random() < self.channel_swap:
                out[s] = out[s, ::-1]
        return out


NO_AUGMENT = Augment(gain_db=(0.0, 0.0), channel_swap=0.0, polarity=0.0, remix=0.0)


def limit_peak(sources: np.ndarray, peak: float = 0.99) -> np.ndarray:
    """Scale all sources by one factor so their sum never clips. Shape: ``[S, C, T]``."""
    top = float(np.abs(sources.sum(0)).max(initial=0.0))
    return sources * (peak / top) if top > peak else sources


def speed_factor(speed: tuple[float, float], rng: np.random.Generator) -> float:
    """A playback-speed factor drawn uniformly from ``speed``; 1.0, with no draw, when the range is 1..1."""
    return 1.0 if speed == (1.0, 1.0) else float(rng.uniform(*speed))


def change_speed(audio: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """``audio`` played ``factor`` times as fast, pitch and tempo together (a resampling).

    Shape: ``[C, T]`` -> ``[C, ~T / factor]``.
    """
    return audio if factor == 1.0 else resample(audio, sample_rate * factor, sample_rate)


def rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def training_eq_db(eq_db: float, validation: bool) -> float:
    """A dataset's ``eq_db`` checked, and 0 for validation sets (never equalised)."""
    if not eq_db >= 0:
        raise ValueError(f"eq_db must be >= 0 dB, got {eq_db}")
    return 0.0 if validation else float(eq_db)


def random_eq(
    clip: np.ndarray, sample_rate: int, max_db: float, rng: np.random.Generator, points: int = 6, low_hz: float = 100.0
) -> np.ndarray:
    """``clip [T]`` through a random smooth equaliser: gains drawn uniformly in ``±max_db`` at ``points``
    log-spaced frequencies from ``low_hz`` to Nyquist, interpolated in log frequency (held flat below
    ``low_hz``) and applied in one FFT. A different microphone, room colour or vocal tract for the same
    voice; no draw at all when ``max_db`` is 0."""
    if max_db <= 0 or len(clip) < 2:
        return clip
    knots_hz = np.geomspace(low_hz, sample_rate / 2, points)
    knots_db = rng.uniform(-max_db, max_db, points)
    freqs = np.fft.rfftfreq(len(clip), 1 / sample_rate)
    gain_db = np.interp(np.log(np.maximum(freqs, low_hz)), np.log(knots_hz), knots_db)
    return np.fft.irfft(np.fft.rfft(clip) * 10 ** (gain_db / 20), n=len(clip)).astype(clip.dtype)
