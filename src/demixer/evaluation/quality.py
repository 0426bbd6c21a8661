"""Reference-free quality signals of a separation: what can be checked in production, where no
reference exists.

For the stems of one mixture:

- ``consistency_db``: how well the stems add up to the mixture, ``10 log10(|x|² / |x - Σ s_j|²)``
  (high is good; a model that drops or invents energy scores low);
- per stem: ``energy_db`` (RMS, dBFS), ``silence_ratio`` (share of 100 ms frames under -60 dBFS),
  ``clipped`` (samples at full scale), ``peak``;
- ``leakage``: the largest cosine similarity between the stem's magnitude spectrogram and another
  stem's (0: disjoint time-frequency content, 1: the same content in both: under-separation);
- ``artifacts``: the energy-weighted frame-to-frame level change of the stem's spectrum in dB
  (flickering masks, "musical noise", raise it; percussive stems are high by nature, so compare
  a stem with the same stem of another separation, not with other stems);
- ``profile``: how much the stem looks like its name says, for known names (``vocals``,
  ``drums``, ``bass``, ``speech``; 0..1): low-frequency share for bass, percussiveness for drums,
  voice-band share for vocals/speech; swapped or mislabelled stems score low;
- ``mask_confidence``: from the ratio masks the stems imply, the mixture-energy-weighted mean of
  the largest mask per bin (1: every bin clearly belongs to one stem; 1/J: undecided), and
  ``uncertain_share``, the energy share of bins whose largest mask is under 0.6.

Time-frequency signals are computed on at most ``max_seconds`` of audio (evenly spaced excerpts)
at most at :data:`ANALYSIS_RATE` (higher rates are resampled for them), so their cost does not grow
with the track's length or rate; the per-sample signals are summed block by block.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.ndimage import median_filter

from ..audio.resample import resample
from ..transforms import STFT

_EPS = 1e-12
PROFILES = ("vocals", "drums", "bass", "speech")


ANALYSIS_RATE = 48000  # the highest rate the time-frequency signals look at


def _spectral_view(x: np.ndarray, sample_rate: int, max_seconds: float) -> tuple[np.ndarray, int]:
    """The excerpt the time-frequency signals read, at most at :data:`ANALYSIS_RATE`: ``(x' [C, T'], rate)``."""
    x = _excerpt(x, sample_rate, max_seconds)
    if sample_rate <= ANALYSIS_RATE:
        return x, sample_rate
    return np.stack([resample(c[None], sample_rate, ANALYSIS_RATE)[0] for c in np.atleast_2d(x)]), ANALYSIS_RATE


def _excerpt(x: np.ndarray, sample_rate: int, max_seconds: float, pieces: int = 6) -> np.ndarray:
    """At most ``max_seconds`` of ``x``, as ``pieces`` evenly spaced excerpts joined. Shape: ``[..., T]``."""
    total = x.shape[-1]
    keep = int(max_seconds * sample_rate)
    if total <= keep:
        return x
    size = keep // pieces
    starts = np.linspace(0, total - size, pieces).astype(int)
    return np.concatenate([x[..., s : s + size] for s in starts], axis=-1)


def _power_spectrogram(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono power spectrogram with ~46 ms frames: the mean of the channels' powers, one channel at a time
    (memory: one channel's spectrogram). Shape: ``[C, T]`` -> ``[F, N]``."""
    n_fft = 1 << int(np.round(np.log2(0.046 * sample_rate)))
    stft = STFT(n_fft, n_fft // 4)
    x = np.atleast_2d(x)
    total = None
    for channel in x:
        spec = stft(torch.from_numpy(np.ascontiguousarray(channel, dtype=np.float32)))
        power = (spec.real.square() + spec.imag.square()).numpy().astype(np.float64)
        total = power if total is None else total + power
    return total / x.shape[0]


@dataclass
class _StemStats:
    """What one stem's per-sample signals need, summed over the blocks of the track."""

    energy: float = 0.0
    clipped: int = 0
    peak: float = 0.0
    frames: list[np.ndarray] = field(default_factory=list)  # 100 ms frame levels (dB), block by block

    def mean_square(self, samples: int) -> float:
        return self.energy / max(1, samples)

    def levels(self, samples: int) -> np.ndarray:
        return (
            np.concatenate(self.frames) if self.frames else np.array([10 * np.log10(self.mean_square(samples) + _EPS)])
        )


def _sample_stats(
    mix: np.ndarray, stems: Mapping[str, np.ndarray], sample_rate: int, block_seconds: float = 10.0
) -> tuple[float, float, dict[str, _StemStats]]:
    """What needs every sample, in blocks of whole 100 ms frames (memory: one block, whatever the length):
    the mixture's and the residual's energy, and per stem its energy, frame levels, clipped samples and peak.

    Shape: ``mix [C, T]``, stems ``[C, T]`` (same length).
    """
    hop = max(1, int(0.1 * sample_rate))
    step = max(hop, int(block_seconds * sample_rate) // hop * hop)
    n = mix.shape[-1]
    mix_energy = residual_energy = 0.0
    stats = {k: _StemStats() for k in stems}
    for lo in range(0, n, step):
        m = np.asarray(mix[..., lo : lo + step], dtype=np.float64)
        residual = m.copy()
        for k, a in stems.items():
            block = np.asarray(a[..., lo : lo + step], dtype=np.float64)
            residual -= block
            s = stats[k]
            s.energy += float(np.sum(block**2))
            s.clipped += int(np.sum(np.abs(block) >= 0.999))
            s.peak = max(s.peak, float(np.abs(block).max(initial=0.0)))
            whole = block.shape[-1] // hop * hop  # whole frames only, cut as one pass over the track would
            if n >= hop and whole:
                s.frames.append(_frame_rms_db(block[..., :whole], sample_rate))
        mix_energy += float(np.sum(m**2))
        residual_energy += float(np.sum(residual**2))
    return mix_energy, residual_energy, stats


def _band_share(power: np.ndarray, sample_rate: int, lo: float, hi: float) -> float:
    freqs = np.linspace(0, sample_rate / 2, power.shape[0])
    band = (freqs >= lo) & (freqs < hi)
    return float(power[band].sum() / (power.sum() + _EPS))


def _percussive_share(power: np.ndarray) -> float:
    """Energy share of the percussive part of a median-filtering HPSS (FitzGerald 2010)."""
    mag = np.sqrt(power)
    harmonic = median_filter(mag, size=(1, 17), mode="nearest")
    percussive = median_filter(mag, size=(17, 1), mode="nearest")
    mask = percussive**2 / (percussive**2 + harmonic**2 + _EPS)
    return float((mask * power).sum() / (power.sum() + _EPS))


def _profile(name: str, power: np.ndarray, sample_rate: int) -> float | None:
    low = _band_share(power, sample_rate, 0, 250)
    if name == "bass":
        return low
    if name == "drums":
        return _percussive_share(power)
    if name in ("vocals", "speech"):
        return _band_share(power, sample_rate, 250, 4000) * (1 - _percussive_share(power))
    return None


def _flux_db(power: np.ndarray) -> float:
    """Energy-weighted mean frame-to-frame change of the log spectrum, in dB.

    Flickering masks ("musical noise") make a bin's level jump from frame to frame; each pair of
    frames is weighted by its weaker bin, so silence and onsets of loud notes weigh little.
    """
    level = 10 * np.log10(power + _EPS)
    jump = np.abs(np.diff(level, axis=1))
    weight = np.minimum(power[:, 1:], power[:, :-1])
    return float((jump * weight).sum() / (weight.sum() + _EPS))


def _frame_rms_db(x: np.ndarray, sample_rate: int) -> np.ndarray:
    hop = max(1, int(0.1 * sample_rate))
    n = x.shape[-1] // hop
    if n == 0:
        return np.array([10 * np.log10(np.mean(x**2) + _EPS)])
    frames = x[..., : n * hop].reshape(*x.shape[:-1], n, hop)
    return 10 * np.log10(np.mean(frames**2, axis=tuple(range(frames.ndim - 2)) + (-1,)) + _EPS)


def quality_signals(
    mixture: np.ndarray | torch.Tensor,
    stems: Mapping[str, np.ndarray | torch.Tensor],
    sample_rate: int,
    max_seconds: float = 60.0,
) -> dict[str, Any]:
    """Reference-free signals for one separation (see the module docstring).

    Shape: ``mixture [C, T]``, each stem ``[C, T]`` (same rate and length).

    Returns:
        ``{"consistency_db": float, "mask_confidence": float, "uncertain_share": float,
        "stems": {name: {"energy_db", "silence_ratio", "clipped", "peak", "leakage", "artifacts", "profile"}}}``.
    """
    mix = np.asarray(mixture.detach().cpu() if hasattr(mixture, "detach") else mixture)  # no copy of arrays
    arrays = {k: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v) for k, v in stems.items()}
    n = min([mix.shape[-1], *(a.shape[-1] for a in arrays.values())])
    mix = mix[..., :n]
    arrays = {k: a[..., :n] for k, a in arrays.items()}
    mix_energy, residual_energy, stats = _sample_stats(mix, arrays, sample_rate)
    consistency = 10 * np.log10((mix_energy + _EPS) / (residual_energy + _EPS))
    rate = min(sample_rate, ANALYSIS_RATE)
    powers = {k: _power_spectrogram(_spectral_view(a, sample_rate, max_seconds)[0], rate) for k, a in arrays.items()}
    mags = {k: np.sqrt(p) for k, p in powers.items()}
    norms = {k: np.sqrt((m**2).sum()) + _EPS for k, m in mags.items()}
    names = list(arrays)
    out_stems: dict[str, dict[str, Any]] = {}
    for k in arrays:
        others = [float((mags[k] * mags[o]).sum() / (norms[k] * norms[o])) for o in names if o != k]
        s, samples = stats[k], arrays[k].size
        out_stems[k] = {
            "energy_db": round(float(10 * np.log10(s.mean_square(samples) + _EPS)), 2),
            "silence_ratio": round(float(np.mean(s.levels(samples) < -60)), 4),
            "clipped": s.clipped,
            "peak": round(s.peak, 4),
            "leakage": round(max(others), 4) if others else 0.0,
            "artifacts": round(_flux_db(powers[k]), 3),
            "profile": None if (p := _profile(k, powers[k], rate)) is None else round(p, 4),
        }
    stack = np.stack([mags[k] for k in names])  # [J, F, N]
    implied = stack / (stack.sum(0, keepdims=True) + _EPS)
    weight = _power_spectrogram(_spectral_view(mix, sample_rate, max_seconds)[0], rate)
    top = implied.max(0)
    confidence = float((top * weight).sum() / (weight.sum() + _EPS))
    uncertain = float(weight[top < 0.6].sum() / (weight.sum() + _EPS))
    return {
        "consistency_db": round(float(min(consistency, 200.0)), 2),
        "mask_confidence": round(confidence, 4),
        "uncertain_share": round(uncertain, 4),
        "stems": out_stems,
    }
