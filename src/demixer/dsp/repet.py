"""REPET-SIM: foreground/background separation by repeating-pattern similarity
(Rafii & Pardo, "Music/voice separation using the similarity matrix", ISMIR 2012).

The accompaniment repeats; the voice does not. For each frame, the frames most similar
to it (cosine similarity of magnitude spectra, local peaks at least ``min_distance``
apart) are found; their median is the repeating model. The background mask is
``min(model, V) / V``; the foreground (``vocals``) takes the rest. Bins below
``cutoff_hz`` go to the background, as in the paper.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import maximum_filter1d

from .base import MaskingMethod


class RepetSim(MaskingMethod):
    """REPET-SIM. Stems: ``vocals`` (non-repeating), ``no_vocals`` (repeating).

    Args:
        max_repeats: frames used in each median (k).
        min_distance: seconds between two selected similar frames.
        threshold: minimum cosine similarity of a selected frame.
        cutoff_hz: bins below this belong to the accompaniment.
    """

    sources = ("vocals", "no_vocals")
    default_segment = 30.0

    def __init__(
        self,
        sample_rate: int = 44100,
        n_fft: int = 2048,
        hop_length: int = 512,
        max_repeats: int = 10,
        min_distance: float = 1.0,
        threshold: float = 0.0,
        cutoff_hz: float = 100.0,
    ) -> None:
        super().__init__(n_fft, hop_length)
        self.sample_rate = sample_rate
        self.max_repeats, self.min_distance, self.threshold, self.cutoff_hz = (
            max_repeats,
            min_distance,
            threshold,
            cutoff_hz,
        )

    def similar_frames(self, mag: np.ndarray) -> np.ndarray:
        """Indices ``[N, k]`` of the frames most similar to each frame (the frame itself included); -1 where a
        frame has fewer than k similar frames (a short excerpt has few peaks ``min_distance`` apart)."""
        n = mag.shape[1]
        norms = np.linalg.norm(mag, axis=0)
        unit = mag / np.maximum(norms, 1e-12)
        sim = unit.T @ unit  # [N, N] cosine similarity
        dist = max(1, int(round(self.min_distance * self.sample_rate / self.stft.hop_length)))
        peaks = (sim >= maximum_filter1d(sim, size=2 * dist + 1, axis=1, mode="constant", cval=-np.inf)) & (
            sim >= self.threshold
        )
        np.fill_diagonal(peaks, True)
        scored = np.where(peaks, sim, -np.inf)
        k = min(self.max_repeats, n)
        idx = np.argpartition(-scored, k - 1, axis=1)[:, :k]
        valid = np.take_along_axis(scored, idx, axis=1) > -np.inf
        return np.where(valid, idx, -1)

    @staticmethod
    def repeating_model(mag: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """The median ``[C, F, N]`` of each frame's similar frames ``idx`` (``[N, k]``, -1: none), over those found:
        padding with the frame itself would pull the model towards the frame, and a short excerpt's voice would all
        go to the background. np.sort puts the NaNs of the missing frames last, so frame n's median sits in the
        middle of its first count[n] entries (several times faster than np.nanmedian)."""
        candidates = mag[:, :, np.maximum(idx, 0)]  # [C, F, N, k]
        candidates[..., idx < 0] = np.nan
        ordered = np.sort(candidates, axis=-1)
        count, frames = (idx >= 0).sum(axis=1), np.arange(idx.shape[0])
        return 0.5 * (ordered[:, :, frames, (count - 1) // 2] + ordered[:, :, frames, count // 2])

    def masks(self, spec: np.ndarray) -> np.ndarray:
        mag = np.abs(spec)  # [C, F, N]
        repeating = self.repeating_model(mag, self.similar_frames(mag.mean(axis=0)))
        background = np.where(mag > 1e-12, np.minimum(repeating, mag) / np.maximum(mag, 1e-12), 1.0)
        background[:, self.bin_frequencies() < self.cutoff_hz] = 1.0
        return np.stack([1.0 - background, background])
