"""The one STFT/iSTFT pair every model and method uses."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class STFT(nn.Module):
    """Short-time Fourier transform with a periodic Hann window and its exact inverse.

    Frames are centred with zero padding (not reflection), so any length, even one sample,
    works and :meth:`inverse` restores the input to float precision.

    Args:
        n_fft: FFT size (``n_fft // 2 + 1`` frequency bins).
        hop_length: frame step in samples; defaults to ``n_fft // 4``.
        pad_mode: how frames are centred at the edges, ``constant`` (zeros) or ``reflect``.

    Shape:
        - ``forward``: ``[..., T]`` -> complex ``[..., F, N]`` with ``N = T // hop + 1``.
        - ``inverse``: complex ``[..., F, N]`` -> ``[..., length]``.

    Examples:
        >>> stft = STFT(2048, 512)
        >>> x = torch.randn(2, 44100)
        >>> torch.allclose(stft.inverse(stft(x), x.shape[-1]), x, atol=1e-5)
        True
    """

    def __init__(self, n_fft: int = 2048, hop_length: int | None = None, pad_mode: str = "constant") -> None:
        super().__init__()
        assert pad_mode in ("constant", "reflect"), f"pad_mode is 'constant' or 'reflect', got {pad_mode!r}"
        self.pad_mode = pad_mode
        assert n_fft >= 2 and n_fft % 2 == 0, f"n_fft must be an even number >= 2, got {n_fft}"
        self.n_fft = n_fft
        self.hop_length = hop_length or n_fft // 4
        assert 0 < self.hop_length <= n_fft, f"hop_length must be in (0, n_fft], got {self.hop_length}"
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def frames(self, length: int) -> int:
        return length // self.hop_length + 1

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        # reflection (torch.stft's default, which some published models were trained with) needs
        # more samples than half a frame; shorter inputs are zero-padded instead
        mode = self.pad_mode if shape[-1] > self.n_fft // 2 else "constant"
        spec = torch.stft(
            x.reshape(-1, shape[-1]), self.n_fft, self.hop_length, window=self.window.to(x.dtype),
            center=True, pad_mode=mode, return_complex=True,
        )
        return spec.reshape(*shape[:-1], *spec.shape[-2:])

    def inverse(self, spec: Tensor, length: int) -> Tensor:
        shape = spec.shape
        x = torch.istft(
            spec.reshape(-1, *shape[-2:]), self.n_fft, self.hop_length, window=self.window.to(spec.real.dtype),
            center=True, length=length,
        )
        return x.reshape(*shape[:-2], length)
