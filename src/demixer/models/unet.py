"""Spectrogram U-Net predicting one ratio mask per source (after Spleeter, Hennequin et al. 2020).

One network serves all sources: the encoder sees the magnitude spectrogram of every input
channel, the decoder ends with ``sources x channels`` sigmoid masks. The masks either scale
the mixture's complex spectrogram directly or, with ``wiener_iterations > 0``, drive a
multichannel Wiener filter (as Spleeter + MWF and Open-Unmix do).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..errors import require
from ..transforms import STFT
from .base import SeparationModel


@dataclass
class UNetConfig:
    """Constructor settings of :class:`UNet`.

    Attributes:
        sources: output stems, in order.
        sample_rate, audio_channels: the audio the model works on.
        n_fft, hop_length: STFT; the network sees the lowest ``max_bin`` bins (the masks of
            the bins above repeat the top one).
        channels: feature channels of the first encoder level, doubled at each level.
        depth: encoder levels (each halves frequency and time).
        kernel: convolution kernel size (odd).
        dropout: dropout in the three deepest decoder levels (Spleeter uses 0.5).
        wiener_iterations: EM iterations of the multichannel Wiener post-filter at inference (0: off).
        freq_coords: add the bin's position (-1 at DC .. 1 at ``max_bin``) as an input channel, so that
            the convolutions, which look the same at every frequency, can tell a bass line from a lead an
            octave or two higher (CoordConv, Liu et al. 2018).
    """

    sources: tuple[str, ...] = ("vocals", "drums", "bass", "other")
    sample_rate: int = 44100
    audio_channels: int = 2
    n_fft: int = 2048
    hop_length: int = 512
    max_bin: int = 1024
    channels: int = 16
    depth: int = 5
    kernel: int = 5
    dropout: float = 0.2
    wiener_iterations: int = 0
    freq_coords: bool = False


class _Down(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=2, padding=kernel // 2)
        self.norm = nn.BatchNorm2d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(self.norm(self.conv(x)), 0.2)


class _Up(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(c_in, c_out, kernel, stride=2, padding=kernel // 2, output_padding=1)
        self.norm = nn.BatchNorm2d(c_out)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(F.relu(self.norm(self.conv(x))))


class UNet(SeparationModel):
    """Spectrogram U-Net ratio-mask separator.

    Shape:
        ``forward``: ``[B, C, T]`` -> ``[B, S, C, T]``; ``masks``: ``[B, C, T]`` -> ``[B, S, C, F, N]``.

    Examples:
        >>> model = UNet(UNetConfig(sources=("vocals", "accompaniment"), channels=4, depth=2, max_bin=64))
        >>> model.eval()(torch.randn(1, 2, 44100)).shape
        torch.Size([1, 2, 2, 44100])
    """

    # No fast mode (benchmarks/fast_mode.py on demixer-4stem): it has no Linear layers, bf16 convolutions were 1.1x,
    # and overlap 0.1 was 1.34x for 0.04 dB of SDR but moved the output to 17.9 dB SNR, under FIDELITY_FLOOR_DB.

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or UNetConfig()
        require(cfg.kernel % 2 == 1, f"kernel must be odd, got {cfg.kernel}")
        require(cfg.depth >= 1 and cfg.channels >= 1, "depth and channels must be >= 1")
        require(
            0 < cfg.max_bin <= cfg.n_fft // 2 + 1, f"max_bin must be in (0, {cfg.n_fft // 2 + 1}], got {cfg.max_bin}"
        )
        require(
            cfg.max_bin % (1 << cfg.depth) == 0,
            f"max_bin ({cfg.max_bin}) must be a multiple of 2**depth ({1 << cfg.depth})",
        )
        self._adopt(cfg, cfg.hop_length)
        self.stft = STFT(cfg.n_fft, cfg.hop_length)
        widths = [cfg.channels << i for i in range(cfg.depth)]
        self.input_norm = nn.BatchNorm2d(cfg.audio_channels)
        first = cfg.audio_channels + int(cfg.freq_coords)
        self.down = nn.ModuleList(_Down(c_in, c_out, cfg.kernel) for c_in, c_out in zip([first] + widths[:-1], widths))
        ups = []
        for level in reversed(range(cfg.depth)):
            c_in = widths[level] * (1 if level == cfg.depth - 1 else 2)
            c_out = widths[level - 1] if level else widths[0]
            ups.append(_Up(c_in, c_out, cfg.kernel, cfg.dropout if level >= cfg.depth - 3 else 0.0))
        self.up = nn.ModuleList(ups)
        self.head = nn.Conv2d(widths[0], len(self.sources) * cfg.audio_channels, 1)

    def masks(self, spec: Tensor) -> Tensor:
        """Sigmoid masks from the mixture's complex spectrogram.

        Shape: ``[B, C, F, N]`` complex -> ``[B, S, C, F, N]`` in [0, 1].
        """
        cfg = self.config
        frames = spec.shape[-1]
        quantum = 1 << cfg.depth
        x = torch.log1p(spec[:, :, : cfg.max_bin].abs())
        x = F.pad(x, (0, (-frames) % quantum))
        x = self.input_norm(x)
        if cfg.freq_coords:
            coords = torch.linspace(-1.0, 1.0, cfg.max_bin, device=x.device, dtype=x.dtype)
            x = torch.cat([x, coords[:, None].expand(x.shape[0], 1, cfg.max_bin, x.shape[-1])], dim=1)
        skips = []
        for down in self.down:
            x = down(x)
            skips.append(x)
        skips.pop()
        for up in self.up:
            x = up(x)
            if skips:
                x = torch.cat([x, skips.pop()], dim=1)
        m = torch.sigmoid(self.head(x))[..., :frames]
        m = rearrange(m, "b (n c) f t -> b n c f t", n=len(self.sources))
        rest = spec.shape[-2] - cfg.max_bin
        if rest:
            m = torch.cat([m, m[..., -1:, :].expand(*m.shape[:-2], rest, frames)], dim=-2)
        return m

    def forward(self, mix: Tensor) -> Tensor:
        # b batch, c audio channel, n stems, f freq, t frames
        spec = self.stft(mix)
        masks = self.masks(spec)
        if self.config.wiener_iterations > 0 and not self.training:
            from ..transforms.wiener import wiener

            out = []
            for b in range(spec.shape[0]):
                mags = rearrange(masks[b] * spec[b].abs()[None], "n c f t -> f t c n")
                est = wiener(mags, rearrange(spec[b], "c f t -> f t c"), iterations=self.config.wiener_iterations)
                out.append(rearrange(est, "f t c n -> n c f t"))
            est_spec = torch.stack(out).to(spec.dtype)
        else:
            est_spec = spec[:, None] * masks
        return self.stft.inverse(est_spec, mix.shape[-1])
