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

Time-frequency signals are computed on at most ``max_seconds`` of audio (evenly spaced excerpts),
so their cost does not grow with the track.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy.ndimage import median_filter

from ..transforms import STFT

_EPS = 1e-12
PROFILES = ("vocals", "drums", "bass", "speech")


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
    """Mono power spectrogram with ~46 ms frames. Shape: ``[C, T]`` -> ``[F, N]``."""
    n_fft = 1 << int(np.round(np.log2(0.046 * sample_rate)))
    spec = STFT(n_fft, n_fft // 4)(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    return (spec.abs() ** 2).mean(0).numpy().astype(np.float64)


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
    mix = np.asarray(mixture.detach().cpu() if hasattr(mixture, "detach") else mixture, dtype=np.float64)
    arrays = {
        k: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=np.float64) for k, v in stems.items()
    }
    n = min([mix.shape[-1], *(a.shape[-1] for a in arrays.values())])
    mix = mix[..., :n]
    arrays = {k: a[..., :n] for k, a in arrays.items()}
    residual = mix - sum(arrays.values())
    consistency = 10 * np.log10((np.sum(mix**2) + _EPS) / (np.sum(residual**2) + _EPS))
    powers = {k: _power_spectrogram(_excerpt(a, sample_rate, max_seconds), sample_rate) for k, a in arrays.items()}
    mags = {k: np.sqrt(p) for k, p in powers.items()}
    norms = {k: np.sqrt((m**2).sum()) + _EPS for k, m in mags.items()}
    names = list(arrays)
    out_stems: dict[str, dict[str, Any]] = {}
    for k, a in arrays.items():
        others = [float((mags[k] * mags[o]).sum() / (norms[k] * norms[o])) for o in names if o != k]
        rms_db = _frame_rms_db(a, sample_rate)
        out_stems[k] = {
            "energy_db": round(float(10 * np.log10(np.mean(a**2) + _EPS)), 2),
            "silence_ratio": round(float(np.mean(rms_db < -60)), 4),
            "clipped": int(np.sum(np.abs(a) >= 0.999)),
            "peak": round(float(np.abs(a).max(initial=0.0)), 4),
            "leakage": round(max(others), 4) if others else 0.0,
            "artifacts": round(_flux_db(powers[k]), 3),
            "profile": None if (p := _profile(k, powers[k], sample_rate)) is None else round(p, 4),
        }
    stack = np.stack([mags[k] for k in names])  # [J, F, N]
    implied = stack / (stack.sum(0, keepdims=True) + _EPS)
    weight = _power_spectrogram(_excerpt(mix, sample_rate, max_seconds), sample_rate)
    top = implied.max(0)
    confidence = float((top * weight).sum() / (weight.sum() + _EPS))
    uncertain = float(weight[top < 0.6].sum() / (weight.sum() + _EPS))
    return {
        "consistency_db": round(float(min(consistency, 200.0)), 2),
        "mask_confidence": round(confidence, 4),
        "uncertain_share": round(uncertain, 4),
        "stems": out_stems,
    }
