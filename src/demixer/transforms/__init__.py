"""Spectral transforms shared by all models and methods: STFT pair, masks, Wiener filtering."""

from .masks import apply_mask, binary_mask, complex_mask, ratio_mask
from .mel import mel_filterbank
from .stft import STFT
from .wiener import wiener

__all__ = ["STFT", "apply_mask", "binary_mask", "complex_mask", "mel_filterbank", "ratio_mask", "wiener"]
