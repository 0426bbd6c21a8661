"""The one STFT/iSTFT pair every model and method uses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import require


class STFT(nn.Module):
    """Short-time Fourier transform with a periodic Hann window and its exact inverse.

    Frames are centred with zero padding (not reflection), so any length, even one sample,
    works and :meth:`inverse` restores the input to float precision.

    Args:
        n_fft: FFT size (``n_fft // 2 + 1`` frequency bins).
        hop_length: frame step in samples; defaults to ``n_fft // 4``.
        pad_mode: how frames are centred at the edges, ``constant`` (zeros) or ``reflect``.
        normalized: scale both directions by ``n_fft ** -0.5`` (torch's ``normalized=True``, as Demucs).

    Shape:
        - ``forward``: ``[..., T]`` -> complex ``[..., F, N]`` with ``N = T // hop + 1``.
        - ``inverse``: complex ``[..., F, N]`` -> ``[..., length]``.

    Examples:
        >>> stft = STFT(2048, 512)
        >>> x = torch.randn(2, 44100)
        >>> torch.allclose(stft.inverse(stft(x), x.shape[-1]), x, atol=1e-5)
        True
    """

    window: Tensor  # buffer: the periodic Hann window

    def __init__(
        self, n_fft: int = 2048, hop_length: int | None = None, pad_mode: str = "constant", normalized: bool = False
    ) -> None:
        super().__init__()
        self.normalized = normalized
        require(pad_mode in ("constant", "reflect"), f"pad_mode is 'constant' or 'reflect', got {pad_mode!r}")
        self.pad_mode = pad_mode
        require(n_fft >= 2 and n_fft % 2 == 0, f"n_fft must be an even number >= 2, got {n_fft}")
        self.n_fft = n_fft
        self.hop_length = hop_length or n_fft // 4
        require(0 < self.hop_length <= n_fft, f"hop_length must be in (0, n_fft], got {self.hop_length}")
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
            x.reshape(-1, shape[-1]),
            self.n_fft,
            self.hop_length,
            window=self.window.to(x.dtype),
            center=True,
            pad_mode=mode,
            normalized=self.normalized,
            return_complex=True,
        )
        return spec.reshape(*shape[:-1], *spec.shape[-2:])

    def pad(self, x: Tensor) -> Tensor:
        """The signal as :meth:`forward` centres it (``n_fft // 2`` on each side): input of :meth:`frames_at`."""
        half = self.n_fft // 2
        mode = self.pad_mode if x.shape[-1] > half else "constant"
        flat = x.reshape(-1, 1, x.shape[-1])
        return F.pad(flat, (half, half), mode=mode).reshape(*x.shape[:-1], x.shape[-1] + 2 * half)

    def frames_at(self, padded: Tensor, first: int, n: int) -> Tensor:
        """Frames ``first .. first + n - 1`` of :meth:`forward`'s output, from :meth:`pad`'s signal.

        Shape: ``[..., T + n_fft]`` -> complex ``[..., F, n]``.
        """
        shape = padded.shape
        seg = padded[..., first * self.hop_length : (first + n - 1) * self.hop_length + self.n_fft]
        spec = torch.stft(
            seg.reshape(-1, seg.shape[-1]),
            self.n_fft,
            self.hop_length,
            window=self.window.to(padded.dtype),
            center=False,
            normalized=self.normalized,
            return_complex=True,
        )
        return spec.reshape(*shape[:-1], *spec.shape[-2:])

    def inverse(self, spec: Tensor, length: int) -> Tensor:
        shape = spec.shape
        x = torch.istft(
            spec.reshape(-1, *shape[-2:]),
            self.n_fft,
            self.hop_length,
            window=self.window.to(spec.real.dtype),
            center=True,
            normalized=self.normalized,
            length=length,
        )
        return x.reshape(*shape[:-2], length)

    def synthesis(self, like: Tensor, length: int) -> OverlapAddSynthesis:
        """An inverse STFT fed a few frames at a time (see :class:`OverlapAddSynthesis`).

        ``like``: a tensor shaped as the output without its last axis (``[..., length]``), for
        batch shape, dtype and device.
        """
        require(not self.normalized, "synthesis() is written for unnormalised transforms")
        return OverlapAddSynthesis(self, like.shape[:-1], length, like.dtype, like.device)


class OverlapAddSynthesis:
    """:meth:`STFT.inverse` computed from consecutive groups of frames, so the whole complex
    spectrogram never has to exist at once. Equal to the one-call inverse to float precision.

    Shape:
        ``add(spec, first)``: complex ``[..., F, n]`` holding frames ``first .. first + n - 1``;
        ``finish()`` -> ``[..., length]``.
    """

    def __init__(self, stft: STFT, batch: torch.Size, length: int, dtype: torch.dtype, device: torch.device) -> None:
        self.stft, self.length = stft, length
        n_fft, hop = stft.n_fft, stft.hop_length
        padded = n_fft + hop * (stft.frames(length) - 1)
        self.acc = torch.zeros(*batch, padded, dtype=dtype, device=device)
        self.env = torch.zeros(padded, dtype=dtype, device=device)

    def _overlap_add(self, frames: Tensor, at: int, into: Tensor) -> None:
        """Add ``[B, n, n_fft]`` frames spaced by the hop into ``into [B, L]`` from sample ``at``."""
        n_fft, hop = self.stft.n_fft, self.stft.hop_length
        n = frames.shape[1]
        if n_fft % hop == 0:  # the frame is k whole hops: k shifted block additions
            k = n_fft // hop
            blocks = into[:, at : at + hop * (n + k - 1)].view(into.shape[0], n + k - 1, hop)
            parts = frames.view(frames.shape[0], n, k, hop)
            for j in range(k):
                blocks[:, j : j + n] += parts[:, :, j]
        else:
            span = n_fft + hop * (n - 1)
            into[:, at : at + span] += F.fold(frames.transpose(1, 2), (1, span), (1, n_fft), stride=(1, hop))[:, 0, 0]

    def add(self, spec: Tensor, first: int, item: int | None = None) -> None:
        """Add frames ``first .. first + n - 1`` (``item``: of that batch element only; then every
        element must be given the same frames)."""
        n_fft, hop = self.stft.n_fft, self.stft.hop_length
        window = self.stft.window.to(self.acc.dtype)
        n = spec.shape[-1]
        acc = self.acc if item is None else self.acc[item]
        flat_spec = spec.reshape(-1, *spec.shape[-2:])
        flat_acc = acc.reshape(-1, acc.shape[-1])
        for k in range(flat_spec.shape[0]):  # one signal at a time: a small transient
            frames = (
                torch.fft.irfft(flat_spec[k].transpose(0, 1), n=n_fft, dim=-1).to(self.acc.dtype).mul_(window)
            )  # [n, n_fft]
            self._overlap_add(frames[None], first * hop, flat_acc[k : k + 1])
        if item in (None, 0):
            self._overlap_add((window**2).expand(1, n, n_fft), first * hop, self.env[None])

    def finish(self) -> Tensor:
        half = self.stft.n_fft // 2
        env = self.env[half : half + self.length]
        if not (env > 1e-11).all():
            raise RuntimeError("overlap-add synthesis: some samples got no frame (not every frame was added)")
        return self.acc[..., half : half + self.length].div_(env)  # in place: the result is a view of the buffer
