"""Harmonic/percussive separation by median filtering (FitzGerald, DAFx 2010).

Harmonic sounds are smooth along time, percussive ones along frequency: a median filter
across frames enhances the first, one across bins the second, and soft masks
(Wiener-like, power 2, as librosa's ``hpss``) split the mixture between ``drums`` and
``other``.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter

from .base import MaskingMethod


class HPSS(MaskingMethod):
    """Median-filtering HPSS. Stems: ``drums`` (percussive), ``other`` (harmonic).

    Args:
        kernel_time: median length across frames, in frames (harmonic enhancement).
        kernel_freq: median length across bins (percussive enhancement).
        power: mask exponent (2: Wiener-like soft masks).
    """

    sources = ("drums", "other")

    def __init__(
        self,
        sample_rate: int = 44100,
        n_fft: int = 2048,
        hop_length: int = 512,
        kernel_time: int = 31,
        kernel_freq: int = 31,
        power: float = 2.0,
    ) -> None:
        super().__init__(n_fft, hop_length)
        self.sample_rate = sample_rate
        self.kernel_time, self.kernel_freq, self.power = kernel_time, kernel_freq, power

    def masks(self, spec: np.ndarray) -> np.ndarray:
        mag = np.abs(spec).mean(axis=0)  # one mask for all channels keeps the stereo image
        harmonic = median_filter(mag, size=(1, self.kernel_time), mode="reflect")
        percussive = median_filter(mag, size=(self.kernel_freq, 1), mode="reflect")
        h, p = harmonic**self.power, percussive**self.power
        total = h + p
        m_perc = np.where(total > 1e-20, p / np.maximum(total, 1e-20), 0.5)
        return np.stack([m_perc, 1.0 - m_perc])[:, None]
