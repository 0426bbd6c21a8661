"""Karaoke by stereo centre-channel extraction (after Avendano & Jot, "A frequency-domain
approach to multichannel upmix", JAES 2004).

A lead vocal is usually mixed to the centre: the same signal, in phase, in both channels.
Per time-frequency bin, the normalised inter-channel cross-correlation
``psi = 2 Re(<L R*>) / (<|L|^2> + <|R|^2>)`` (``<.>``: recursive smoothing over frames) is 1
for a centred source and drops for panned, wide or decorrelated ones. The centre component
``mask * (L + R) / 2`` with ``mask = max(psi, 0)^sharpness``, restricted to the vocal band
(bass and kick drums are centred too), is the ``vocals`` stem, put in both channels; the
rest of each channel is ``no_vocals``. Mono input has no side information: then every
in-band bin counts as centre.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from .base import MaskingMethod


class CenterExtraction(MaskingMethod):
    """Centre-channel karaoke. Stems: ``vocals``, ``no_vocals``. Needs stereo.

    Args:
        smoothing: seconds of the recursive averaging of the cross-spectra.
        sharpness: exponent on the similarity (higher: only tightly centred bins).
        band_hz: (low, high) edges of the vocal band, with half-octave soft edges.
    """

    sources = ("vocals", "no_vocals")
    audio_channels = 2

    def __init__(
        self,
        sample_rate: int = 44100,
        n_fft: int = 4096,
        hop_length: int = 1024,
        smoothing: float = 0.1,
        sharpness: float = 8.0,
        band_hz: tuple[float, float] = (150.0, 8000.0),
    ) -> None:
        super().__init__(n_fft, hop_length)
        self.sample_rate = sample_rate
        self.smoothing, self.sharpness, self.band_hz = smoothing, sharpness, band_hz

    def _smooth(self, x: np.ndarray) -> np.ndarray:
        frames = max(self.smoothing * self.sample_rate / self.stft.hop_length, 1e-6)
        a = float(np.exp(-1.0 / frames))
        return lfilter([1 - a], [1, -a], x, axis=-1)

    def band_weight(self) -> np.ndarray:
        f = np.maximum(self.bin_frequencies(), 1e-3)
        lo, hi = self.band_hz
        # smooth half-octave ramps in log frequency
        rise = np.clip((np.log2(f / lo) + 0.5), 0.0, 1.0)
        fall = np.clip((np.log2(hi / f) + 0.5), 0.0, 1.0)
        return np.sin(0.5 * np.pi * rise) ** 2 * np.sin(0.5 * np.pi * fall) ** 2

    def centre_weight(self, spec: np.ndarray) -> np.ndarray:
        """Per-bin weight of the centre component, in [0, 1]. Shape: ``[2, F, N]`` -> ``[F, N]``."""
        left, right = spec[0], spec[1]
        cross = self._smooth((left * np.conj(right)).real)
        power = self._smooth(np.abs(left) ** 2 + np.abs(right) ** 2)
        psi = np.where(power > 1e-20, 2.0 * cross / np.maximum(power, 1e-20), 0.0)
        return np.clip(psi, 0.0, 1.0) ** self.sharpness * self.band_weight()[:, None]

    def estimate(self, spec: np.ndarray) -> np.ndarray:
        vocal = self.centre_weight(spec) * 0.5 * (spec[0] + spec[1])
        return np.stack([np.stack([vocal, vocal]), spec - vocal[None]])
