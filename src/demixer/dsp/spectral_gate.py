"""Speech denoising by spectral gating with a noise profile estimated from the signal itself.

The noise power per bin is tracked by minimum statistics (Martin, IEEE TSAP 2001, in its
simple form): the minimum of the smoothed power over a sliding window of
``noise_window`` seconds, times a bias correction. The gain is a power-subtraction
(Wiener-like) rule ``1 - alpha * N / P``, floored at ``floor_db`` and smoothed across
time and frequency to avoid musical noise. ``speech`` takes the gain, ``noise`` the rest.
``--atten-lim`` then limits how much is removed.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import minimum_filter1d, uniform_filter, uniform_filter1d

from .base import MaskingMethod


class SpectralGate(MaskingMethod):
    """Spectral-gating denoiser. Stems: ``speech``, ``noise``.

    Args:
        noise_window: seconds over which the minimum tracks the noise floor.
        oversubtraction: alpha; above 1 removes more noise and more speech.
        floor_db: lowest gain, in dB.
        bias: minimum-statistics bias correction (the minimum underestimates the mean).
    """

    sources = ("speech", "noise")

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int = 128,
        noise_window: float = 1.5,
        oversubtraction: float = 1.5,
        floor_db: float = -30.0,
        bias: float = 1.8,
    ) -> None:
        super().__init__(n_fft, hop_length)
        self.sample_rate = sample_rate
        self.noise_window, self.oversubtraction, self.floor_db, self.bias = (
            noise_window,
            oversubtraction,
            floor_db,
            bias,
        )

    def masks(self, spec: np.ndarray) -> np.ndarray:
        power = (np.abs(spec) ** 2).mean(axis=0)  # [F, N]
        frames_per_s = self.sample_rate / self.stft.hop_length
        smooth = uniform_filter1d(power, size=max(1, int(0.05 * frames_per_s)), axis=1, mode="nearest")
        window = max(1, int(self.noise_window * frames_per_s))
        noise = self.bias * minimum_filter1d(smooth, size=window, axis=1, mode="nearest")
        gain = 1.0 - self.oversubtraction * noise / np.maximum(power, 1e-20)
        gain = np.clip(gain, 10 ** (self.floor_db / 20), 1.0)
        gain = uniform_filter(gain, size=(3, 5), mode="nearest")
        return np.stack([gain, 1.0 - gain])[:, None]
