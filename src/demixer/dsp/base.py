"""Shared frame of the training-free methods: STFT -> per-source spectra (usually masks) -> iSTFT."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..models.base import SeparationModel
from ..transforms import STFT


class MaskingMethod(SeparationModel):
    """A signal-processing separator that computes one mask per source on the STFT.

    Subclasses implement :meth:`masks` on numpy spectra (scipy does the filtering), or
    :meth:`estimate` when a source is not a mask of each channel; this class owns the
    transform pair, so every method reconstructs exactly and sums to the mixture when its
    estimates do.

    Shape:
        - ``forward``: ``[B, C, T]`` -> ``[B, S, C, T]``.
        - ``masks``: complex ``[C, F, N]`` -> ``[S, C or 1, F, N]`` (values in [0, 1]).
        - ``estimate``: complex ``[C, F, N]`` -> complex ``[S, C, F, N]``.
    """

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.stft = STFT(n_fft, hop_length)
        self.time_quantum = hop_length

    def masks(self, spec: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def estimate(self, spec: np.ndarray) -> np.ndarray:
        return self.masks(spec).astype(np.float32) * spec[None]

    def forward(self, mix: Tensor) -> Tensor:
        spec = self.stft(mix.float())  # [B, C, F, N]
        est = np.stack([self.estimate(s) for s in spec.cpu().numpy()])  # [B, S, C, F, N]
        return self.stft.inverse(torch.from_numpy(est.astype(np.complex64)).to(spec.device), mix.shape[-1])

    def bin_frequencies(self) -> np.ndarray:
        return np.arange(self.stft.bins) * self.sample_rate / self.stft.n_fft
